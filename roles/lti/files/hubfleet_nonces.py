"""Nonces seen by the hub's LTI authenticators, kept on disk so a hub restart forgets none of them.

Installed by roles/lti beside hubfleet_lti.py; Python's standard library only. A launch's nonce is
good once for as long as any launch carrying it could be accepted (its expiry); after that it is
pruned. SQLite in WAL mode with synchronous=NORMAL: a committed nonce survives the hub process
being restarted or killed (only a power cut may lose the last moments, as for the hub's own database).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

PRUNE_EVERY_S = 60.0


class NonceStore:
    """Values seen before, each remembered until its own expiry: `seen_before` is true for a replay."""

    def __init__(self, path: str = "", limit: int = 500_000):
        self.path = path or ":memory:"
        self.limit = limit
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._count = 0
        self._next_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path != ":memory:":
                # Created private: the file tells which launches happened.
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, expires REAL NOT NULL)")
            self._db = db
            self._prune(time.time())
        return self._db

    def _prune(self, now: float) -> None:
        db = self._db
        db.execute("DELETE FROM nonces WHERE expires <= ?", (now,))
        self._count = db.execute("SELECT count(*) FROM nonces").fetchone()[0]
        self._next_prune = now + PRUNE_EVERY_S

    def seen_before(self, key: str, expires_at: float) -> bool:
        """Record `key` until `expires_at`; true when it was already recorded and has not expired."""
        with self._lock:
            db = self._connect()
            now = time.time()
            if now >= self._next_prune or self._count >= self.limit:
                self._prune(now)
            row = db.execute("SELECT expires FROM nonces WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] > now:
                return True
            if row is None and self._count >= self.limit:
                return True  # full of live nonces: refuse rather than forget one
            db.execute("INSERT OR REPLACE INTO nonces (key, expires) VALUES (?, ?)", (key, expires_at))
            self._count += row is None
            return False

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
