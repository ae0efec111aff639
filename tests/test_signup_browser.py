"""The sign-up form (#11, item 1) in headless Chromium at phone (375 px) and desktop (800 px) widths: served by the
real app over HTTP, then laid out in a frame of the exact width (see tests/test_browser.py for why a frame).
Checks that nothing overflows horizontally, every control has a visible label inside the viewport, and the
honeypot is out of sight; saves screenshots under var/test-artifacts/."""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.db.models import SignupRequest
from newsletter.deliver import tokens
from newsletter.deliver.signup import SignupWorker
from tests.test_browser import ARTIFACTS, WIDTHS, chromium, requires_chromium
from tests.test_webapp import LiveServer

pytestmark = [pytest.mark.browser, requires_chromium]

PROBE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>html,body{{margin:0;padding:0;background:#888}}iframe{{display:block;border:0}}</style></head>
<body><iframe id="f" width="{width}" height="{height}" srcdoc="{srcdoc}"></iframe>
<script>
document.getElementById('f').addEventListener('load', function () {{
  var doc = this.contentDocument, win = this.contentWindow, de = doc.documentElement;
  var controls = Array.prototype.slice.call(doc.querySelectorAll('input, button'));
  var visible = controls.filter(function (el) {{ return !el.closest('.hp'); }});
  var problems = [], right = 0;
  visible.forEach(function (el) {{
    var r = el.getBoundingClientRect();
    right = Math.max(right, r.right);
    if (el.tagName === 'BUTTON') {{ if (!el.textContent.trim()) problems.push('button without text'); return; }}
    var label = el.labels && el.labels[0];
    var lr = label ? label.getBoundingClientRect() : null;
    if (!label || !label.textContent.trim() || lr.width === 0 || lr.height === 0) problems.push('no label: ' + el.name);
    else right = Math.max(right, lr.right);
  }});
  var hp = doc.querySelector('.hp input'), hr = hp ? hp.getBoundingClientRect() : null;
  var field = doc.getElementById('email'), email = field ? field.getBoundingClientRect() : {width: 0};
  var out = {{scrollWidth: de.scrollWidth, innerWidth: win.innerWidth, controls: visible.length, problems: problems,
             right: right, honeypotRight: hr ? hr.right : null, emailWidth: email.width,
             height: de.scrollHeight}};
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}});
</script></body></html>"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The form as GET /subscribe serves it, and as POST shows it again with an error."""
    root = tmp_path_factory.mktemp("signup")
    base = Settings(database_url=f"sqlite:///{root}/store.db")
    settings = replace(
        base,
        web=base.web.updated(archive_dir=str(root / "archive")),
        delivery=base.delivery.updated(outbox=str(root / "outbox")),
    )
    out = {}
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        out["form"] = client.get("/subscribe").text
        bad = {"email": "not an address", "name": "Ada", "language": "zh", "scope": "some", "topic": ["3DGS"]}
        out["error"] = client.post("/subscribe", data=bad).text
        good = {**bad, "email": "averyveryverylongaddressofsomebodywithoutbreaks@researchinstituteexample.org"}
        out["sent"] = client.post("/subscribe", data=good).text
        token = _confirm_token(settings.database_url)
        out["confirm"] = client.get("/confirm", params={"token": token}).text
        out["confirmed"] = client.post("/confirm", params={"token": token}).text
    assert "Confirm subscription" in out["confirm"] and "You are subscribed" in out["confirmed"]
    paths = {}
    for name, text in out.items():
        assert "<h1>" in text
        paths[name] = root / f"subscribe-{name}.html"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def _confirm_token(url: str) -> str:
    """The link of the one sign-up request, once the worker has recorded it (after the page answered)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        SignupWorker.wait_all(20)
        with session_scope(url) as s:
            req = s.scalar(select(SignupRequest))
            if req is not None:
                return tokens.make_confirm_token(req.id, req.email, int(req.expires_at.replace(tzinfo=UTC).timestamp()))
        time.sleep(0.05)
    raise AssertionError("the sign-up was never recorded")


def _frame(page: Path, width: int, height: int) -> Path:
    framed = page.with_name(f"{page.stem}-{width}.probe.html")
    framed.write_text(PROBE.format(width=width, height=height, srcdoc=html.escape(page.read_text(), quote=True)))
    return framed


def _measure(page: Path, width: int, profile: Path) -> dict:
    args = ["--virtual-time-budget=5000", f"--window-size={max(width, 500)},900"]
    dom = chromium([*args, "--dump-dom", _frame(page, width, 900).as_uri()], profile)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, "probe script did not run"
    return json.loads(html.unescape(found.group(1)))


def _screenshot(page: Path, width: int, name: str, profile: Path) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    args = ["--virtual-time-budget=5000", f"--window-size={width},1800"]
    chromium([*args, f"--screenshot={out}", _frame(page, width, 1800).as_uri()], profile)
    assert out.exists() and out.stat().st_size > 10_000
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("state", ["form", "error"])
def test_form_fits_and_every_control_is_labelled(pages, state, width, tmp_path):
    m = _measure(pages[state], width, tmp_path / "profile")
    assert m["innerWidth"] == width, m
    assert m["scrollWidth"] <= width, f"the {state} page overflows at {width}px: {m}"
    assert m["problems"] == [], m
    assert m["controls"] >= 8, m  # email, name, 3 languages, 2 scopes, topics..., the button
    assert 0 < m["right"] <= width, m
    assert m["honeypotRight"] is not None and m["honeypotRight"] <= 0, m  # the honeypot is out of sight
    assert m["emailWidth"] >= min(width, 640) * 0.6, m  # a field a thumb can type into, not a sliver
    _screenshot(pages[state], width, f"subscribe-{state}-{width}.png", tmp_path / "profile")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("state", ["sent", "confirm", "confirmed"])
def test_the_pages_after_the_form_fit(pages, state, width, tmp_path):
    """ "Check your inbox" (with a long address), the confirmation button and the confirmed page."""
    m = _measure(pages[state], width, tmp_path / "profile")
    assert m["innerWidth"] == width and m["scrollWidth"] <= width, m
    assert m["problems"] == [] and m["right"] <= width, m
    _screenshot(pages[state], width, f"subscribe-{state}-{width}.png", tmp_path / "profile")
