"""SQLite stores shared by the response cache (evaluate.cache) and the verdict cache
(judges.run): one opening convention, so both behave alike under several processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_store(path: str | Path, schema: str) -> sqlite3.Connection:
    """A SQLite store that several processes (data-parallel runs) share: WAL and a busy
    timeout; autocommit, so callers open one explicit transaction per batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
