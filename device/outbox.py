"""The persistent outbox: every action is written here before it is sent and marked done after.

SQLite in the state directory (WAL, synchronous=FULL), so a crash, `kill -9` or a power cut never loses a
queued action. An item moves pending → sending → done, or back to pending with exponential backoff when the
send failed in a way that may pass (SMTP down, HTTP 5xx), or to failed (refused recipient, bad config,
attempts used up; `octopus outbox retry` queues failed items again). A sender claims an item atomically and
records itself as owner (pid + process start time); an item left in `sending` by a process that is gone is
claimed again, so two senders (the daemon and the CLI) never send the same item at once. What is sent is
decided by the `perform` callable given to `deliver_due`; this module knows nothing about SMTP or HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    function TEXT NOT NULL,
    arguments TEXT NOT NULL,
    source TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    status TEXT NOT NULL,          -- pending | sending | done | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    owner TEXT,
    result TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_due ON items (status, next_at);
"""
STATUSES = ("pending", "sending", "done", "failed")


def _process_identity(pid: int) -> str | None:
    """pid plus the process start time (field 22 of /proc/PID/stat), so a reused pid is not mistaken."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}:?"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    pid = int(owner.split(":", 1)[0])
    return _process_identity(pid) == owner


@dataclass
class Item:
    id: str
    created: float
    function: str
    arguments: dict
    source: str
    dry_run: bool
    status: str
    attempts: int
    next_at: float
    owner: str | None
    result: str | None
    updated: float

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "owner"}


class Outbox:
    def __init__(self, directory: str | Path, max_attempts: int = 8, backoff_s: float = 30.0,
                 backoff_max_s: float = 3600.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "outbox.sqlite3"
        self.max_attempts, self.backoff_s, self.backoff_max_s = max_attempts, backoff_s, backoff_max_s
        self.me = _process_identity(os.getpid())
        self.lock = threading.RLock()  # one connection shared by the daemon's threads
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    @classmethod
    def from_config(cls, config) -> Outbox:
        """The outbox in a device config's state directory, with its `[outbox]` retry settings."""
        box = config.outbox
        return cls(config.state_dir(), box.max_attempts, box.backoff_s, box.backoff_max_s)

    def close(self) -> None:
        self.db.close()

    def _items(self, where: str = "1", params: tuple = ()) -> list[Item]:
        with self.lock:
            rows = self.db.execute(f"SELECT * FROM items WHERE {where} ORDER BY created", params).fetchall()
        return [Item(r[0], r[1], r[2], json.loads(r[3]), r[4], bool(r[5]), *r[6:]) for r in rows]

    def enqueue(self, function: str, arguments: dict, source: str = "", dry_run: bool = False) -> str:
        item_id = uuid.uuid4().hex
        now = time.time()
        with self.lock:
            self.db.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, NULL, ?)",
                            (item_id, now, function, json.dumps(arguments, ensure_ascii=False), source,
                             int(dry_run), now, now))
        return item_id

    def get(self, item_id: str) -> Item | None:
        items = self._items("id = ?", (item_id,))
        return items[0] if items else None

    def list(self, status: str | None = None) -> list[Item]:
        return self._items("status = ?", (status,)) if status else self._items()

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall()
        return {s: dict(rows).get(s, 0) for s in STATUSES}

    def claim(self, now: float | None = None) -> Item | None:
        """Take the oldest due item (or one left `sending` by a dead process) and mark it ours."""
        now = time.time() if now is None else now
        with self.lock:
            return self._claim(now)

    def _claim(self, now: float) -> Item | None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            candidates = self._items("(status = 'pending' AND next_at <= ?) OR status = 'sending'", (now,))
            item = next((i for i in candidates if i.status == "pending" or not owner_alive(i.owner)), None)
            if item is not None:
                if item.status == "sending":
                    log.warning("outbox %s was being sent by %s, which is gone: sending again", item.id, item.owner)
                self.db.execute("UPDATE items SET status = 'sending', owner = ?, attempts = attempts + 1, "
                                "updated = ? WHERE id = ?", (self.me, now, item.id))
                item.status, item.owner, item.attempts = "sending", self.me, item.attempts + 1
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return item

    def mark_done(self, item_id: str, result: str) -> None:
        with self.lock:
            self.db.execute("UPDATE items SET status = 'done', owner = NULL, result = ?, updated = ? WHERE id = ?",
                            (result, time.time(), item_id))

    def mark_failed(self, item: Item, error: str, retryable: bool) -> str:
        """Back to pending with backoff when `retryable` and attempts remain; else failed. Returns the status."""
        with self.lock:
            now = time.time()
            if retryable and item.attempts < self.max_attempts:
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (item.attempts - 1))
                self.db.execute("UPDATE items SET status = 'pending', owner = NULL, result = ?, next_at = ?, "
                                "updated = ? WHERE id = ?", (error, now + delay, now, item.id))
                return "pending"
            self.db.execute("UPDATE items SET status = 'failed', owner = NULL, result = ?, updated = ? WHERE id = ?",
                            (error, now, item.id))
            return "failed"

    def retry(self, ids: list[str] | None = None) -> int:
        """Make failed items (or the given ones, if not done) due now. Returns how many."""
        with self.lock:
            now = time.time()
            if ids:
                marks = ",".join("?" * len(ids))
                cursor = self.db.execute(f"UPDATE items SET status = 'pending', attempts = 0, next_at = ?, updated = ? "
                                         f"WHERE id IN ({marks}) AND status IN ('failed', 'pending')", (now, now, *ids))
            else:
                cursor = self.db.execute("UPDATE items SET status = 'pending', attempts = 0, next_at = ?, updated = ? "
                                         "WHERE status = 'failed'", (now, now))
            return cursor.rowcount

    def next_due(self) -> float | None:
        with self.lock:
            row = self.db.execute("SELECT MIN(next_at) FROM items WHERE status = 'pending'").fetchone()
        return row[0]

    def deliver_due(self, perform: Callable[[Item], str], limit: int | None = None) -> list[Item]:
        """Send every due item through `perform` (which raises ActionFailed-like errors with `.retryable`)."""
        handled = []
        while limit is None or len(handled) < limit:
            item = self.claim()
            if item is None:
                break
            try:
                result = perform(item)
            except Exception as exc:  # an executor bug must not lose the item: it stays retryable
                retryable = getattr(exc, "retryable", True)
                item.status = self.mark_failed(item, str(exc) or type(exc).__name__, retryable)
                item.result = str(exc)
                log.warning("outbox %s %s: %s (%s, attempt %d)", item.id, item.function, exc, item.status,
                            item.attempts)
            else:
                self.mark_done(item.id, result)
                item.status, item.result = "done", result
                log.info("outbox %s %s: %s", item.id, item.function, result)
            handled.append(item)
        return handled
