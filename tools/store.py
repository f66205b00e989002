"""SQLite (WAL) persistence for jobs, attempts and notes: a restart loses nothing accepted.

One connection per thread; every write is its own short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    params TEXT NOT NULL,
    progress TEXT,
    result TEXT,
    error TEXT,
    gpu INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    definition TEXT NOT NULL,
    solution_name TEXT NOT NULL,
    solution_hash TEXT NOT NULL,
    solution TEXT NOT NULL,
    parent TEXT,
    job_id TEXT,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_definition ON attempts(definition, created);
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    definition TEXT,
    direction TEXT NOT NULL,
    hypothesis TEXT,
    verdict TEXT,
    attempts TEXT NOT NULL,
    text TEXT
);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    attempt TEXT,
    definition TEXT NOT NULL,
    solution TEXT NOT NULL,
    report TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Columns added after a table's first release: a database made by an older kda-mcp gets them by
# ALTER TABLE when opened, so old state folders keep working (their rows read NULL there).
ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "jobs": [
        ("owner", "TEXT"),  # the server instance running it: token.pid@host (tools/jobs.py)
        ("owner_pid", "INTEGER"),
        ("owner_host", "TEXT"),
        ("heartbeat", "REAL"),  # when its owner last said it is alive
        ("cancel_requested", "REAL"),  # when some server asked its owner to cancel it
    ],
}

# Indexes over added columns, made once the columns exist.
AFTER_MIGRATION = """
CREATE INDEX IF NOT EXISTS jobs_status_owner ON jobs(status, owner);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(SCHEMA)
        self._migrate(conn)
        conn.executescript(AFTER_MIGRATION)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Add the columns an older database lacks; safe when several processes open it at once."""
        for table, columns in ADDED_COLUMNS.items():
            have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = [(name, decl) for name, decl in columns if name not in have]
            if not missing:
                continue
            conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time
            try:
                have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
                for name, decl in missing:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def transaction(self) -> _Immediate:
        """This thread's connection inside BEGIN IMMEDIATE: `with store.transaction() as conn: ...`."""
        return _Immediate(self._conn())

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self._conn().execute(sql, args))

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement over many rows, in one transaction."""
        with self.transaction() as conn:
            conn.executemany(sql, rows)

    def next_id(self, prefix: str) -> str:
        """Short, readable, never reused ids: a1, a2, ... (agents quote them in notes)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (prefix,)).fetchone()
            value = (row["value"] if row else 0) + 1
            conn.execute("INSERT OR REPLACE INTO counters(name, value) VALUES (?, ?)", (prefix, value))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return f"{prefix}{value}"


class _Immediate:
    """A write transaction taken up front (BEGIN IMMEDIATE): read-then-write without a race."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def now() -> float:
    return time.time()
