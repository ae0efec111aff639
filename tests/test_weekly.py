"""Daily or weekly (#11 item 2): the weekly issue's period, membership per frequency, identical rebuilds, the
frozen issue, exactly-once sending to a real SMTP server for a mix of daily and weekly subscribers, the CLI, the
CSV columns, the preferences page over real HTTP, the archive pages and the migration."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import date, timedelta
from email import policy
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.cli import cli
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.db import alembic_config, get_engine, migrate, session_scope
from newsletter.db.models import Delivery, IssueRow, Subscriber
from newsletter.deliver import subscribers
from newsletter.deliver.ledger import prepare_ledger
from newsletter.deliver.transport import SmtpTransport, parse_smtp_url
from newsletter.issue.build import IssueSettings, Period, archive_name, build_issue, freeze_issue
from newsletter.pipeline import steps
from newsletter.pipeline.send import send_date
from newsletter.store.record import record_posts
from tests.conftest import ROOT
from tests.smtp_server import SmtpServer
from tests.test_store import paper, post
from tests.test_webapp import LiveServer

TZ = "Asia/Shanghai"
MONDAY = date(2024, 12, 2)
WEEK = [MONDAY + timedelta(days=i) for i in range(7)]  # 2024-12-02 .. 2024-12-08
CFG = IssueSettings(lookback_days=7)


def add(url: str, *posts) -> None:
    with session_scope(url) as s:
        record_posts(s, list(posts), "test")


def daily(url: str, day: date):
    with session_scope(url) as s:
        return build_issue(s, Period.day(day, TZ), CFG)


def weekly(url: str, day: date):
    with session_scope(url) as s:
        return build_issue(s, Period.week(day, TZ), CFG)


def ids(issue) -> list[str]:
    return sorted(p.arxiv_id for s in issue.sections for p in s.papers) if issue else []


def a_week(url: str, with_acceptance: bool = True) -> None:
    """Two papers a day in two topics for WEEK, one paper the Sunday before and the Monday after; on Thursday
    the Monday paper gets accepted (an acceptance event dated Thursday)."""
    add(url, post("2024-12-01", "3DGS", paper("2412.09001", "Sunday before")))
    for i, day in enumerate(WEEK):
        add(url, post(day.isoformat(), "3DGS", paper(f"2412.0{i}001", f"Splat {i}")),
                 post(day.isoformat(), "NeRF", paper(f"2412.0{i}002", f"Field {i}")))  # fmt: skip
    if with_acceptance:
        add(url, post("2024-12-05", "3DGS", paper("2412.00001", "Splat 0", "v2", "Accepted by CVPR 2025")))
    add(url, post("2024-12-09", "3DGS", paper("2412.09002", "Monday after")))


WEEK_IDS = sorted(f"2412.0{i}00{k}" for i in range(7) for k in (1, 2))


# ---- the period ---------------------------------------------------------------------------------------------


def test_a_week_is_monday_to_sunday_in_local_days():
    for day in WEEK:
        week = Period.week(day, TZ)
        assert (week.first, week.last, week.frequency) == (MONDAY, date(2024, 12, 8), "weekly")
    assert Period.of(date(2024, 12, 9), TZ, "weekly").first == date(2024, 12, 9)
    assert Period.of(date(2024, 12, 9), TZ) == Period.day(date(2024, 12, 9), TZ)
    assert Period.week(MONDAY, TZ).start.isoformat() == "2024-12-02T00:00:00+08:00"
    assert Period.week(MONDAY, TZ).end.isoformat() == "2024-12-09T00:00:00+08:00"
    assert archive_name(date(2024, 12, 8), "weekly") == archive_name(date(2024, 12, 4), "weekly") == "week-2024-12-02"
    assert archive_name(date(2024, 12, 8)) == "2024-12-08"


# ---- membership ---------------------------------------------------------------------------------------------


def test_weekly_issue_features_the_week_and_rebuilds_identically(db_url):
    a_week(db_url)
    weekly(db_url, date(2024, 11, 25))  # last week's weekly issue took the Sunday-before paper
    issue = weekly(db_url, WEEK[3])
    assert ids(issue) == [i for i in WEEK_IDS if i != "2412.00001"]  # Monday's paper: a highlight instead
    assert [h.paper.arxiv_id for h in issue.highlights] == ["2412.00001"]
    assert issue.issue_date == date(2024, 12, 8) and issue.frequency == "weekly"
    again = weekly(db_url, WEEK[6])  # any day of the week names the same issue
    assert (again.issue_id, again.content_hash) == (issue.issue_id, issue.content_hash)
    # The daily issue of that Sunday is another issue: the two never share a row.
    assert daily(db_url, WEEK[6]).issue_id != issue.issue_id
    assert weekly(db_url, WEEK[0]).content_hash == issue.content_hash


def test_featured_as_new_once_per_frequency(db_url):
    a_week(db_url)
    weekly(db_url, date(2024, 11, 25))
    daily(db_url, date(2024, 12, 1))  # the daily issue of the Sunday before took its paper
    seen_daily: list[str] = []
    for day in WEEK:
        issue = daily(db_url, day)
        seen_daily += ids(issue) + [h.paper.arxiv_id for h in issue.highlights if h.paper.arxiv_id not in seen_daily]
    assert sorted(set(seen_daily)) == WEEK_IDS  # daily readers had every paper of the week ...
    week = weekly(db_url, WEEK[6])
    # ... and the weekly readers still get every one of them, once.
    assert sorted(ids(week) + [h.paper.arxiv_id for h in week.highlights]) == WEEK_IDS
    assert not week.highlights[0].previously_featured  # no weekly issue showed it before
    nxt = weekly(db_url, date(2024, 12, 9))
    assert ids(nxt) == ["2412.09002"] and nxt.highlights == []  # nothing of the week again, no highlight twice
    # The daily memory is unaffected by the weekly issues: the next daily issue has only the new Monday paper.
    assert ids(daily(db_url, date(2024, 12, 9))) == ["2412.09002"]


def test_frozen_weekly_issue_keeps_its_papers_late_ones_go_to_the_next_week(db_url):
    a_week(db_url, with_acceptance=False)
    weekly(db_url, date(2024, 11, 25))
    issue = weekly(db_url, MONDAY)
    with session_scope(db_url) as s:
        freeze_issue(s, issue.issue_id)
    add(db_url, post("2024-12-06", "NeRF", paper("2412.07777", "Late Friday")))  # after sending started
    assert weekly(db_url, MONDAY).content_hash == issue.content_hash
    assert "2412.07777" in ids(weekly(db_url, date(2024, 12, 9)))  # within the look-back: next week's


# ---- exactly once, real SMTP ---------------------------------------------------------------------------------


def _smtp(server: SmtpServer):
    cfg = parse_smtp_url(server.url)
    return lambda: SmtpTransport(cfg)


def test_exactly_once_for_daily_and_weekly_subscribers(settings: Settings, token_secret, tmp_path):
    url = settings.database_url
    settings = replace(settings, timezone=TZ, issue=CFG)
    a_week(url)
    daily_readers, weekly_readers = [], []
    with session_scope(url) as s:
        for i in range(6):
            freq = "weekly" if i % 2 else "daily"
            sub = subscribers.add(s, f"r{i}@example.com", "", ("en", "zh", "bilingual")[i % 3], None, freq)
            (weekly_readers if freq == "weekly" else daily_readers).append(sub.email)
        subscribers.add(s, "nerf-weekly@example.com", "", "en", "NeRF", "weekly")
    weekly_readers.append("nerf-weekly@example.com")
    with SmtpServer() as server:
        for _attempt in range(2):  # a rerun or backfill of every day and of the week sends nothing more
            for day in WEEK:
                report = send_date(settings, day, transport_factory=_smtp(server))
                assert report.ok, report.summary()
            report = send_date(settings, WEEK[2], frequency="weekly", transport_factory=_smtp(server))
            assert report.ok, report.summary()
        counts = server.counts()
        messages = [email.message_from_bytes(r.data, policy=policy.default) for r in server.handler.received]
    assert {e: counts[e] for e in daily_readers} == dict.fromkeys(daily_readers, 7)
    assert {e: counts[e] for e in weekly_readers} == dict.fromkeys(weekly_readers, 1)
    weekly_msgs = [m for m in messages if "weekly" in m["Subject"] or "周刊" in m["Subject"]]
    assert sorted(m["To"] for m in weekly_msgs) == sorted(weekly_readers)
    assert "2024-12-02 – 2024-12-08" in weekly_msgs[0]["Subject"]
    assert len({m["Message-ID"] for m in messages}) == len(messages)  # one id per (issue, subscriber)
    # The NeRF-only weekly reader got the NeRF papers of the week and no 3DGS section.
    [nerf] = [m for m in weekly_msgs if m["To"] == "nerf-weekly@example.com"]
    html = nerf.get_body(("html",)).get_content()
    assert "Field 3" in html and "Splat 3" not in html
    with session_scope(url) as s:
        rows = s.execute(select(IssueRow.frequency, sa.func.count()).join(Delivery).group_by(IssueRow.frequency))
        assert dict(rows.all()) == {"daily": 7 * len(daily_readers), "weekly": len(weekly_readers)}
        assert all(r.frozen for r in s.scalars(select(IssueRow)))


def test_ledger_never_queues_the_other_frequency(db_url):
    a_week(db_url)
    with session_scope(db_url) as s:
        d = subscribers.add(s, "d@example.com", frequency="daily")
        w = subscribers.add(s, "w@example.com", frequency="weekly")
    issue = weekly(db_url, MONDAY)
    with session_scope(db_url) as s:
        result = prepare_ledger(s, issue.issue_id)  # streamed: only the weekly subscriber
        assert (result.created, result.other_frequency) == (1, 0)
        explicit = prepare_ledger(s, issue.issue_id, [s.get(Subscriber, d.id), s.get(Subscriber, w.id)])
        assert (explicit.created, explicit.existing, explicit.other_frequency) == (0, 1, 1)


# ---- render and archive --------------------------------------------------------------------------------------


def test_weekly_variant_and_archive_page(settings: Settings, tmp_path):
    settings = replace(settings, timezone=TZ, issue=CFG, web=settings.web.updated(archive_dir=str(tmp_path / "a")))
    a_week(settings.database_url)
    issue, info = steps.build_step(settings, steps.period_for(settings, WEEK[4], "weekly"))
    assert info["frequency"] == "weekly" and info["period_first"] == "2024-12-02"
    assert issue.archive_url.endswith("/archive/week-2024-12-02")
    variant, html, text, _eml = steps.preview_step(settings, issue, steps.VariantSpec("bilingual", None))
    assert variant.subject.startswith("Paper Digest weekly 2024-12-02 – 2024-12-08 · ")
    assert "| 论文速递 · " in variant.subject
    assert "Weekly · 2024-12-02 – 2024-12-08" in html and "周刊 · 2024-12-02 – 2024-12-08" in html
    assert "Weekly · 2024-12-02 – 2024-12-08" in text
    page = steps.write_archive(settings, issue)
    assert page.name == "week-2024-12-02.html" and "Splat 6" in page.read_text("utf-8")


def test_weekly_overflow_keeps_the_best_in_full_and_links_the_weekly_archive(settings: Settings):
    """Same ranking and budget as daily: a week too big for the budget keeps each topic's best (accepted first)
    in full and lists the rest by title, linking the weekly archive page."""
    settings = replace(settings, timezone=TZ, issue=CFG, render=settings.render.updated(html_budget_bytes=20_000))
    long = "A sentence about splatting that goes on. " * 12
    for day in WEEK:
        add(settings.database_url, post(day.isoformat(), "3DGS", *[
            paper(f"2412.{day.day:02d}{k:03d}", f"Paper {day.day}-{k}", comment="CVPR 2025" if k == 7 else None,
                  abstract=long) for k in range(8)
        ]))  # fmt: skip
    issue, _ = steps.build_step(settings, steps.period_for(settings, MONDAY, "weekly"))
    variant, html, _text, _eml = steps.preview_step(settings, issue, steps.VariantSpec("en", None))
    assert issue.n_papers == 56 and 0 < variant.n_full < 56 and variant.n_listed > 0
    assert variant.html_encoded_size <= 20_000
    assert "/archive/week-2024-12-02#t-" in html
    full = html.split("read the full issue online")[0]
    assert all(f"Paper {d.day}-7" in full for d in WEEK[: min(7, variant.n_full)])  # accepted ones first


# ---- CLI, CSV, preferences -------------------------------------------------------------------------------------


def _cli(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        f'[newsletter]\ndatabase_url = "{db_url}"\narchive_dir = "{tmp_path}/raw"\n'
        f'[web]\narchive_dir = "{tmp_path}/archive"\n[delivery]\noutbox = "{tmp_path}/outbox"\n'
        f'[issue]\nweekly_send_day = "wednesday"\nweekly_send_time = "07:30"\n'
        f'[[sources]]\nname = "feed"\nkind = "feed"\npath = "{ROOT / "newsletter" / "sample" / "feed.xml"}"\n',
        encoding="utf-8",
    )
    return path


def test_cli_frequency_options_and_csv_round_trip(config: Path, db_url: str, tmp_path: Path):
    assert _cli(config, "subscribers", "add", "w@example.org", "--frequency", "weekly").stdout.endswith(", weekly)\n")
    assert _cli(config, "subscribers", "add", "d@example.org").exit_code == 0
    unchanged = _cli(config, "subscribers", "set", "d@example.org").stdout
    assert unchanged == "d@example.org: active, bilingual, topics: all\n"  # a daily reader: as it always read
    assert _cli(config, "subscribers", "set", "d@example.org", "--frequency", "weekly").stdout.endswith("all, weekly\n")
    assert _cli(config, "subscribers", "add", "x@example.org", "--frequency", "monthly").exit_code == 2
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,language,topics,frequency\nd@example.org,,bilingual,,daily\nn@example.org,N,en,NeRF,weekly\n"
        "bad@example.org,,en,,hourly\n",
        encoding="utf-8",
    )
    out = _cli(config, "subscribers", "import", str(people))
    assert "1 added, 1 updated" in out.stdout and "row 4: frequency must be one of daily, weekly" in out.stderr
    exported = tmp_path / "export.csv"
    assert _cli(config, "subscribers", "export", str(exported)).exit_code == 0
    assert exported.read_text("utf-8").splitlines() == [
        "email,name,language,topics,frequency,status",
        "d@example.org,,bilingual,,daily,active",
        "n@example.org,N,en,NeRF,weekly,active",
        "w@example.org,,bilingual,,weekly,active",
    ]
    with session_scope(db_url) as s:  # the export imports back unchanged; a file without the column keeps it
        report = subscribers.import_csv(s, exported.read_text("utf-8"))
        assert (report.added, report.updated, report.unchanged) == (0, 0, 3)
        report = subscribers.import_csv(s, "email,name,language,topics\nn@example.org,N,en,NeRF\n")
        assert report.unchanged == 1 and subscribers.get(s, "n@example.org").frequency == "weekly"
    assert "weekly" in _cli(config, "subscribers", "list").stdout


def test_cli_build_send_and_deliveries_weekly(config: Path):
    sample = ROOT / "newsletter" / "sample"
    assert _cli(config, "ingest", "--file", str(sample / "feed.xml")).exit_code == 0
    _cli(config, "subscribers", "add", "w@example.org", "--frequency", "weekly")
    _cli(config, "subscribers", "add", "d@example.org")
    daily_out = _cli(config, "build").stdout
    weekly_out = _cli(config, "build", "--weekly").stdout
    assert re.match(r"issue \d+ for the week ending 20\d\d-\d\d-\d\d: \d+ papers", weekly_out), weekly_out
    assert weekly_out != daily_out and _cli(config, "build", "--frequency", "weekly").stdout == weekly_out
    bad = _cli(config, "build", "--weekly", "--frequency", "daily")
    assert bad.exit_code == 2 and "--weekly contradicts --frequency daily" in bad.stderr
    sent = _cli(config, "run", "--frequency", "weekly")
    assert sent.exit_code == 0 and "sent 1," in sent.stdout and "week-" in sent.stdout
    assert "sent 0," in _cli(config, "send", "--weekly").stdout  # nobody twice
    report = _cli(config, "deliveries", "--weekly", "--format", "json").stdout
    assert '"sent": 1' in report
    assert "sent 1," in _cli(config, "send").stdout  # the daily reader, from the daily issue


def test_config_keys_are_typed(tmp_path: Path):
    path = tmp_path / "n.toml"
    path.write_text('[issue]\nweekly_send_day = "Mittwoch"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="weekly_send_day"):
        load_settings(path)
    path.write_text('[issue]\nweekly_send_day = "friday"\nweekly_send_time = 07:15:00\n', encoding="utf-8")
    issue = load_settings(path).issue
    assert (issue.weekly_send_day, issue.weekly_send_time.isoformat()) == ("friday", "07:15:00")


def test_preferences_page_sets_the_frequency_over_http(settings: Settings, token_secret, tmp_path):
    from newsletter.deliver import tokens

    with session_scope(settings.database_url) as s:
        sub = subscribers.add(s, "ada@example.org", "", "en", None)
        token = tokens.make_token(sub.id, "preferences", sub.email)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "week-2024-12-02.html").write_text("<p>weekly page</p>", encoding="utf-8")
    (tmp_path / "archive" / "2024-12-05.html").write_text("<p>daily page</p>", encoding="utf-8")
    web = replace(settings, web=settings.web.updated(archive_dir=str(tmp_path / "archive")))
    with LiveServer(web) as live, httpx.Client(base_url=live.url, timeout=10) as client:
        page = client.get("/preferences", params={"token": token})
        assert '<input type="radio" name="frequency" value="daily" checked>' in page.text
        assert "Weekly: one email a week" in page.text and "每周" in page.text
        r = client.post("/preferences", params={"token": token}, data={"language": "en", "scope": "all",
                                                                         "frequency": "weekly"})  # fmt: skip
        assert r.status_code == 200 and '<input type="radio" name="frequency" value="weekly" checked>' in r.text
        r = client.post("/preferences", params={"token": token}, data={"language": "en", "scope": "all",
                                                                         "frequency": "hourly"})  # fmt: skip
        assert r.status_code == 422 and "Please choose daily or weekly." in r.text
        r = client.post("/preferences", params={"token": token}, data={"language": "zh", "scope": "all"})
        assert r.status_code == 200  # an older form without the field keeps the frequency
        index = client.get("/archive/").text
        assert 'href="week-2024-12-02"' in index and 'href="2024-12-05"' in index
        assert client.get("/archive/week-2024-12-02").text == "<p>weekly page</p>"
        assert client.get("/archive/week-2024-12-03").status_code == 404
        assert client.get("/archive/week-..%2F2024-12-05").status_code == 404
    with session_scope(settings.database_url) as s:
        assert (subscribers.get(s, "ada@example.org").frequency, subscribers.get(s, "ada@example.org").language) == (
            "weekly",
            "zh",
        )


# ---- migration ---------------------------------------------------------------------------------------------------


def test_migration_keeps_daily_issues_and_downgrades(db_url):
    engine = get_engine(db_url)
    migrate(engine, "0006")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO issues (issue_date, period_start, period_end, content_hash, n_papers, n_highlights, frozen,"
            " created_at, updated_at) VALUES ('2024-12-08', '2024-12-08', '2024-12-09', 'h', 0, 0, false,"
            " '2024-12-08', '2024-12-08')"
        ))  # fmt: skip
    migrate(engine, "head")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT frequency FROM issues")).scalars().all() == ["daily"]
        conn.execute(sa.text(
            "INSERT INTO issues (issue_date, frequency, period_start, period_end, content_hash, n_papers, n_highlights,"
            " frozen, created_at, updated_at) VALUES ('2024-12-08', 'weekly', '2024-12-02', '2024-12-09', 'w', 0, 0,"
            " false, '2024-12-08', '2024-12-08')"
        ))  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # still one issue per (frequency, date)
        conn.execute(sa.text(
            "INSERT INTO issues (issue_date, frequency, period_start, period_end, content_hash, n_papers, n_highlights,"
            " frozen, created_at, updated_at) VALUES ('2024-12-08', 'daily', '2024-12-08', '2024-12-09', 'x', 0, 0,"
            " false, '2024-12-08', '2024-12-08')"
        ))  # fmt: skip
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT content_hash FROM issues")).scalars().all() == ["h"]
    migrate(engine, "head")
    assert {c["name"] for c in sa.inspect(engine).get_columns("subscribers")} >= {"frequency"}


# ---- the busiest real week ---------------------------------------------------------------------------------------


def test_busiest_real_week_fits_the_budget(tmp_path):
    """Every corpus snapshot ingested with `newsletter ingest --file`, weekly issues built week by week: the
    busiest week's email stays within the budget in every language mode, with its best papers in full and every
    other paper listed by title (README "Daily or weekly" has the figures; bench/weekly.py prints them)."""
    from tests.conftest import corpus_or_skip

    corpus_or_skip()
    from bench.common import corpus_settings
    from bench.weekly import busiest_week, corpus_files, ingest
    from newsletter.render.variant import render_variant

    settings = corpus_settings(tmp_path)
    ingest(settings, corpus_files(), tmp_path)
    issue, _ = busiest_week(settings)
    assert issue.frequency == "weekly" and issue.n_papers > 100
    rebuilt, _ = steps.build_step(settings, steps.period_for(settings, issue.issue_date, "weekly"))
    assert rebuilt.content_hash == issue.content_hash
    for lang in ("en", "zh", "bilingual"):
        v = render_variant(issue, lang, None, steps.render_options(settings))
        assert not v.over_budget and v.html_encoded_size <= settings.render.html_budget_bytes, lang
        assert v.n_full >= 20 and v.n_full + v.n_listed == issue.n_papers + len(issue.highlights), lang
        assert f"/archive/week-{issue.issue_date - timedelta(days=6)}" in v.html


# ---- what a person looks at: headless Chromium -----------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("width", (375, 800))
def test_weekly_email_and_preferences_page_in_chromium(settings: Settings, token_secret, tmp_path, width):
    """The weekly email (bilingual, over budget so with its title lists) and the preferences page with the new
    field, at phone and desktop widths: nothing overflows; screenshots go to var/test-artifacts/."""
    from newsletter.deliver import tokens
    from newsletter.render.variant import personalize
    from tests.test_browser import CHROMIUM, measure, screenshot

    if CHROMIUM is None:
        pytest.skip("Chromium not found (apt-get install -y chromium fonts-noto-cjk, or set CHROMIUM=)")
    settings = replace(settings, timezone=TZ, issue=CFG, render=settings.render.updated(html_budget_bytes=30_000))
    a_week(settings.database_url)
    issue, _ = steps.build_step(settings, steps.period_for(settings, MONDAY, "weekly"))
    variant = steps.render_variant(issue, "bilingual", None, steps.render_options(settings))
    html, _ = personalize(variant, {"NAME": "Ada", "UNSUBSCRIBE_URL": "https://x/u", "PREFERENCES_URL": "https://x/p"})
    pages = {"email": tmp_path / "weekly.html", "preferences": tmp_path / "preferences.html"}
    pages["email"].write_text(html, encoding="utf-8")
    with session_scope(settings.database_url) as s:
        sub = subscribers.add(s, "ada@example.org", "", "en", None, "weekly")
        token = tokens.make_token(sub.id, "preferences", sub.email)
    with LiveServer(settings) as live:
        page = httpx.get(f"{live.url}/preferences", params={"token": token}, timeout=10).text
    assert '<input type="radio" name="frequency" value="weekly" checked>' in page
    pages["preferences"].write_text(page, encoding="utf-8")
    for name, path in pages.items():
        probe = measure(path, width, tmp_path / "profile")
        assert probe["scrollWidth"] <= probe["innerWidth"], (name, probe)
        screenshot(path, width, f"weekly-{name}-{width}.png", tmp_path / "profile")
