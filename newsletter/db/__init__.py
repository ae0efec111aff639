"""Engine, sessions and schema migrations for the paper store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import hashlib
import threading
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@cache
def get_engine(url: str) -> Engine:
    """One engine per URL per process; SQLite gets a parent folder, WAL and a busy timeout."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3, not psycopg2
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:  # unparsable, unknown dialect, driver not installed
        raise ConfigError(f"database URL {_safe(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _safe(url: str) -> str:
    """The URL for a message: password hidden, or nothing of it when it cannot be parsed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable)"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (web app, CLI) don't block the writer
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


_MIGRATE_LOCK = threading.Lock()  # alembic keeps global state: one migration at a time per process
_PG_LOCK_KEY = 0x6E657773  # advisory lock id: one migration at a time across processes and machines


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent: every command calls it before touching the store)."""
    with _MIGRATE_LOCK:
        _migrate_locked(engine, revision)


def _migrate_locked(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


_FACTORIES: dict[str, sessionmaker[Session]] = {}


def _factory(url: str) -> sessionmaker[Session]:
    """A session factory per URL, created (and the schema migrated) once, also when threads race to it."""
    factory = _FACTORIES.get(url)
    if factory is None:
        with _MIGRATE_LOCK:
            factory = _FACTORIES.get(url)
            if factory is None:
                engine = get_engine(url)
                _migrate_locked(engine)
                factory = _FACTORIES[url] = sessionmaker(engine, expire_on_commit=False)
    return factory


def session_scope(url: str) -> AbstractContextManager[Session]:
    """`with session_scope(url) as session:` one transaction, committed on success, rolled back on error, then
    closed (`sessionmaker.begin()`). The block owns the transaction: code inside must not commit it."""
    return _factory(url).begin()


def serialize(session: Session, name: str) -> None:
    """Make the rest of this transaction exclusive among every process and thread that serializes on `name`
    (a read-then-write step that two runs may take at once: building one issue). Call it first in the
    transaction. PostgreSQL: a transaction-scoped advisory lock on a hash of the name. SQLite: BEGIN IMMEDIATE,
    which takes the database's write lock now (waiting up to busy_timeout) instead of at the first write, when
    the other run may already have read the same "nothing there yet"."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
