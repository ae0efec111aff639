"""Benchmark: the whole send path vs a raw smtplib loop, both into Postfix's smtp-sink on 127.0.0.1.

Issue: the largest corpus snapshot ingested into a fresh SQLite database, the issue built for its most
populated post date, and N subscribers (1,000 and 10,000) with mixed language modes and topic selections
(18 variants: 3 modes x 6 selections; and 5% whose only topic has no paper that day, so they get no row).

Ours, timed: `prepare_ledger` (one row per subscriber) + `send_issue` (claim batches of 100, one SMTP
connection per batch, per-subscriber message assembly with signed links, one commit per message after the
server's 250). Variant rendering is timed separately (it is per variant, not per subscriber).
Floor: a raw loop of stock `smtplib.SMTP.sendmail` over ONE connection sending pre-built messages of the same
variants (same bytes, no database, no assembly); run before and after ours, the faster run counts.
Each size runs in its own process, so its peak RSS (getrusage) is its own; "send growth" is the RSS added
during the timed part, which must stay flat as N grows (rows and messages are streamed, never all held).

The sink: aiosmtpd tops out near 300-400 msg/s here and would be the bottleneck; `smtp-sink` (from the Debian
`postfix` package, no MTA started) is not. If `var/bench/postfix/usr/sbin/smtp-sink` is missing the script
fetches it itself: `apt-get download postfix` (after `apt-get update` if that fails and we are root) +
`dpkg -x` into var/bench/postfix (needs apt and the Debian archive; or pass --sink PATH). It exits with a
message when it cannot. Nothing is installed and no MTA is started.

Last line: send_vs_raw_smtp=<ours msg/s / raw msg/s at the largest N>; target >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_DIR = ROOT / "var" / "bench"
POSTFIX_DIR = BENCH_DIR / "postfix"
SINK = POSTFIX_DIR / "usr" / "sbin" / "smtp-sink"
CORPUS_FEEDS = ROOT.parent / "shared" / "corpus" / "feeds"
SIZES = (1000, 10000)
LANGS = ("en", "zh", "zh", "bilingual", "bilingual", "en", "bilingual")


# ---- the sink --------------------------------------------------------------------------------------------


def fetch_sink() -> Path:
    """smtp-sink from the Debian postfix package, extracted (not installed) under var/bench/postfix."""
    if SINK.exists():
        return SINK
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        sys.exit("smtp-sink not found and apt-get/dpkg are unavailable: pass --sink PATH to a Postfix smtp-sink")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print("fetching Postfix's smtp-sink: apt-get download postfix && dpkg -x ... var/bench/postfix", flush=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        got = subprocess.run(["apt-get", "download", "postfix"], cwd=tmp, capture_output=True, text=True)
        if got.returncode != 0 and os.geteuid() == 0:  # no package lists yet (fresh machine): fetch them once
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            got = subprocess.run(["apt-get", "download", "postfix"], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("postfix_*.deb"))
        if got.returncode != 0 or not debs:
            sys.exit(f"cannot download the postfix package (try `apt-get update` first): {got.stderr.strip()[-300:]}")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(POSTFIX_DIR)], check=True)
    if not SINK.exists():
        sys.exit(f"the postfix package has no {SINK.relative_to(POSTFIX_DIR)}")
    return SINK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_sink(binary: Path):
    """`smtp-sink 127.0.0.1:PORT 1000`: accepts everything, stores nothing. Its shared libraries come from the
    same package; as root it must be told which user to run as (-u nobody)."""
    port = free_port()
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parents[2] / "usr" / "lib" / "postfix")}
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [str(binary), *user, f"127.0.0.1:{port}", "1000"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                sys.exit(f"smtp-sink exited: {proc.stderr.read().strip()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("smtp-sink does not accept connections")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- one size, in its own process ------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def database(workdir: Path, pg: str | None):
    """A fresh SQLite file (default), or a throwaway schema in the PostgreSQL database `pg`."""
    if not pg:
        yield f"sqlite:///{workdir}/send.db"
        return
    import uuid

    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(pg)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    finally:
        from newsletter.db import get_engine

        get_engine.cache_clear()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def setup_issue(workdir: Path, url: str):
    """Ingest the largest snapshot, build the issue of its most populated post date."""
    from sqlalchemy import func, select

    from newsletter.config import load_settings
    from newsletter.db import session_scope
    from newsletter.db.models import Post
    from newsletter.issue.build import IssueSettings, Period, build_issue
    from newsletter.pipeline.ingest import ingest_file

    feeds = sorted(CORPUS_FEEDS.glob("*.xml"), key=lambda p: p.stat().st_size)
    if not feeds:
        sys.exit(f"corpus not found at {CORPUS_FEEDS}")
    settings = replace(
        load_settings(ROOT / "newsletter.toml"),
        database_url=url,
        archive_dir=str(workdir / "raw"),
    )
    ingest_file(settings, feeds[-1], kind="feed", source="bench")
    with session_scope(settings.database_url) as s:
        day = s.execute(
            select(Post.post_date).group_by(Post.post_date).order_by(func.sum(Post.n_papers).desc()).limit(1)
        ).scalar_one()
        issue = build_issue(s, Period.day(day, settings.timezone), IssueSettings())
    return settings, issue


def add_subscribers(settings, issue, n: int) -> None:
    """n subscribers: mixed modes, all topics (40%), one or two of the day's topics, or a topic it lacks (5%)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from newsletter.db import session_scope
    from newsletter.db.models import Subscriber

    t = [s.topic for s in issue.sections] + ["GAN"] * 4
    menu = [None] * 8 + [[t[0]]] * 3 + [[t[1]]] * 2 + [[t[2]]] * 2 + [[t[0], t[1]]] * 2 + [[t[1], t[3]]] * 2 + [["GAN"]]
    rng, now = random.Random(n), datetime.now(UTC)
    names = ["", "Ada", "张伟", "Grace Hopper", "李雷", "Wei Zhang", "王芳"]
    rows = [
        {
            "email": f"reader{i:06d}@example.org",
            "name": rng.choice(names),
            "language": rng.choice(LANGS),
            "topics": rng.choice(menu),
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with session_scope(settings.database_url) as s:
        s.execute(insert(Subscriber), rows)


def render_needed(settings, issue) -> tuple[dict, float]:
    from sqlalchemy import select

    from newsletter.db import session_scope
    from newsletter.db.models import Subscriber
    from newsletter.deliver.ledger import parse_variant_key, variant_key
    from newsletter.render.variant import render_variant

    present = {s.topic for s in issue.sections}
    with session_scope(settings.database_url) as s:
        choices = list(s.execute(select(Subscriber.language, Subscriber.topics)))
    # Only the variants someone will receive (a selection with no paper that day gets no ledger row).
    keys = {variant_key(lang, t) for lang, t in choices if t is None or present.intersection(t)}
    start = time.perf_counter()
    variants = {k: render_variant(issue, *parse_variant_key(k)) for k in sorted(keys)}
    return variants, time.perf_counter() - start


def raw_loop(port: int, messages: list[bytes], n: int, smtp_class=smtplib.SMTP) -> float:
    """The floor: sendmail() of pre-built bytes over one connection, nothing else. Returns msg/s."""
    smtp = smtp_class("127.0.0.1", port)
    start = time.perf_counter()
    for i in range(n):
        smtp.sendmail("digest@example.org", [f"reader{i:06d}@example.org"], messages[i % len(messages)])
    elapsed = time.perf_counter() - start
    smtp.quit()
    return n / elapsed


def child(n: int, port: int, pg: str | None) -> None:
    from newsletter.db import session_scope
    from newsletter.deliver.ledger import prepare_ledger
    from newsletter.deliver.message import MessageSettings, MessageTemplate, Person, assemble
    from newsletter.deliver.sender import send_issue
    from newsletter.deliver.transport import _SMTP, SmtpConfig, SmtpTransport

    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp, database(Path(tmp), pg) as url:
        settings, issue = setup_issue(Path(tmp), url)
        add_subscribers(settings, issue, n)
        variants, render_s = render_needed(settings, issue)
        ms = MessageSettings.from_settings(settings)
        prebuilt = [
            assemble(MessageTemplate.build(v, ms, issue.issue_id, issue.issue_date), Person(i, f"p{i}@example.org"))
            for i, v in enumerate(variants.values())
        ]
        raw_before = raw_loop(port, prebuilt, n)

        cfg = SmtpConfig("127.0.0.1", port)
        rss_before = rss_mb()
        start = time.perf_counter()
        with session_scope(settings.database_url) as s:
            ledger = prepare_ledger(s, issue.issue_id, ms=ms)
        ledger_s = time.perf_counter() - start
        report = send_issue(settings, issue.issue_id, variants, lambda: SmtpTransport(cfg), batch_size=100)
        elapsed = time.perf_counter() - start
        peak = peak_rss_mb()
        if not report.ok or report.sent != ledger.created:
            sys.exit(f"send failed: {report.summary()} (ledger {ledger.created})")

        raw_after = raw_loop(port, prebuilt, n)
        raw_fast = raw_loop(port, prebuilt, n, _SMTP)
        avg_size = sum(map(len, prebuilt)) / len(prebuilt)
    result = {
        "subscribers": n,
        "sent": report.sent,
        "skipped": len(ledger.skipped),
        "variants": len(variants),
        "render_s": render_s,
        "ledger_s": ledger_s,
        "send_s": elapsed,
        "ours_per_s": report.sent / elapsed,
        "raw_per_s": max(raw_before, raw_after),
        "raw_fastdata_per_s": raw_fast,
        "avg_message_kb": avg_size / 1024,
        "rss_before_send_mb": rss_before,
        "peak_rss_mb": peak,
        "send_growth_mb": max(0.0, peak - rss_before),
    }
    print(json.dumps(result))


def describe(r: dict) -> str:
    return (
        f"{r['subscribers']:>6} subscribers: sent {r['sent']} ({r['skipped']} skipped, {r['variants']} variants, "
        f"{r['avg_message_kb']:.0f} KB each) | ours {r['ours_per_s']:.0f} msg/s (ledger {r['ledger_s']:.2f}s + "
        f"send, total {r['send_s']:.1f}s) | raw smtplib {r['raw_per_s']:.0f} msg/s | raw with our DATA path "
        f"{r['raw_fastdata_per_s']:.0f} msg/s | render {r['render_s']:.1f}s (untimed) | peak RSS "
        f"{r['peak_rss_mb']:.0f} MB, send growth {r['send_growth_mb']:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--sink", type=Path, help="path to Postfix's smtp-sink (default: fetched into var/bench)")
    parser.add_argument("--pg", help="PostgreSQL URL (a throwaway schema is made in it) instead of SQLite")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child, args.port, args.pg)
        return
    binary = args.sink or fetch_sink()
    results = []
    with smtp_sink(binary) as port:
        for n in args.sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(n),
                    "--port",
                    str(port),
                    *(["--pg", args.pg] if args.pg else []),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                sys.exit(f"size {n} failed:\n{out.stderr[-3000:]}{out.stdout[-500:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(describe(r), flush=True)
    last = results[-1]
    fast = last["ours_per_s"] / last["raw_fastdata_per_s"]
    print(f"{'PostgreSQL' if args.pg else 'SQLite'}; vs a raw loop with our DATA path: send_vs_raw_fastdata={fast:.2f}")
    print(f"send_vs_raw_smtp={last['ours_per_s'] / last['raw_per_s']:.2f}")


if __name__ == "__main__":
    main()
