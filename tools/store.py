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


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)

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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def now() -> float:
    return time.time()
