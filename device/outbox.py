"""The persistent outbox: every action is written here before it is sent and marked done after.

SQLite in the state directory (WAL, synchronous=FULL), so a crash, `kill -9` or a power cut never loses a
queued action. An item moves pending → sending → done, or back to pending with exponential backoff when the
send failed in a way that may pass (SMTP down, HTTP 5xx), or to failed (refused recipient, bad config,
attempts used up; `octopus outbox retry` queues failed items again). A sender claims an item atomically and
records itself as owner (pid + process start time); an item left in `sending` by a process that is gone is
claimed again, so two senders (the daemon and the CLI) never send the same item at once. What is sent is
decided by the `perform` callable given to `deliver_due`; this module knows nothing about SMTP or HTTP.

A bad disk never loses items silently: opening runs `PRAGMA quick_check`; a database that is corrupt, not a
database, or emptied although items were recorded (`outbox.created` says so) is moved aside as
`outbox.sqlite3.bad-<time>` with every row SQLite can still read copied into a fresh one, and `problem` says
what happened (`octopus doctor` reports it, and the quarantined file, until it is deleted). A write that fails
(disk full, read-only) raises `OutboxError`, one line; an item that was sent but could not be marked done is
kept in memory and recorded at the next chance, so this process never sends it twice (a restart before that
sends it again, with the same Message-ID).
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
FIELDS = ("id", "created", "function", "arguments", "source", "dry_run", "status", "attempts", "next_at", "owner",
          "result", "updated")  # the order of SCHEMA's columns
COLUMNS = len(FIELDS)
MARKER = "outbox.created"  # written once the database holds its schema: an empty database after it is a loss
QUARANTINE = "outbox.sqlite3.bad-"


class OutboxError(Exception):
    """The outbox cannot take or record work (disk full, read-only or unreadable state directory)."""


def inspect(directory: str | Path) -> str | None:
    """What is wrong with the outbox database in `directory`, read-only (None: nothing, or no database yet)."""
    directory = Path(directory)
    path = directory / "outbox.sqlite3"
    if not path.exists():
        return "the outbox database is missing although items were recorded" if (directory / MARKER).exists() else None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return _problem(db, (directory / MARKER).exists())
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)


def status_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Items by status on any connection to an outbox database (the doctor's is read-only)."""
    rows = dict(db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
    return {s: rows.get(s, 0) for s in STATUSES}


def _problem(db: sqlite3.Connection, recorded_before: bool) -> str | None:
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "corrupt database: " + "; ".join(str(r[0]) for r in rows[:3])
        has_items = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if not has_items and recorded_before:
        return "the outbox database is empty although items were recorded"
    return None


def _readable_rows(path: Path) -> list[tuple]:
    """Every row of `items` that SQLite can still read from a damaged database: all at once, else one by one."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    try:
        try:
            return db.execute(f"SELECT {', '.join(FIELDS)} FROM items").fetchall()
        except sqlite3.DatabaseError:
            pass
        try:
            last = db.execute("SELECT max(rowid) FROM items").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            last = 100_000
        rows, misses = [], 0
        for rowid in range(1, last + 1):
            try:
                row = db.execute(f"SELECT {', '.join(FIELDS)} FROM items WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is not None and len(row) == COLUMNS:
                rows.append(row)
                misses = 0
            else:
                misses += 1
                if misses > 10_000:
                    break
        return rows
    except sqlite3.DatabaseError:
        return []
    finally:
        db.close()


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
        self.problem: str | None = None  # what opening found wrong and did about it
        self.unrecorded: dict[str, tuple[str, tuple]] = {}  # item id -> the status update the disk refused
        try:
            self.db = self._connect()
            problem = _problem(self.db, (self.directory / MARKER).exists())
            if problem is not None:
                self._quarantine(problem)
            self.db.executescript(SCHEMA)
            (self.directory / MARKER).touch()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox in {self.directory} ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError:
            pass  # a damaged file: quick_check says what, then it is moved aside
        return db

    def _quarantine(self, problem: str) -> None:
        """Move the damaged database aside, start a fresh one and copy in every row that can still be read."""
        self.db.close()
        aside = self.directory / (QUARANTINE + time.strftime("%Y%m%d-%H%M%S"))
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{self.path}{suffix}").exists():
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        rows = _readable_rows(aside)
        self.db = self._connect()
        self.db.executescript(SCHEMA)
        for values in rows:
            item = dict(zip(FIELDS, values))
            if item["status"] == "sending":  # caught mid-send by the process that left it: due again
                item["status"] = "pending"
            item["owner"] = None  # no process owns an item of a database that was moved aside
            self.db.execute(f"INSERT OR IGNORE INTO items ({', '.join(FIELDS)}) VALUES "
                            f"({', '.join('?' * COLUMNS)})", tuple(item[f] for f in FIELDS))
        self.problem = f"{problem}; moved aside to {aside.name}, {len(rows)} items recovered"
        log.error("outbox: %s", self.problem)

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
        """Record one action; OutboxError (nothing recorded, nothing will be sent) when the disk refuses it."""
        item_id = uuid.uuid4().hex
        now = time.time()
        try:
            with self.lock:
                self.db.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, NULL, NULL, ?)",
                                (item_id, now, function, json.dumps(arguments, ensure_ascii=False), source,
                                 int(dry_run), now, now))
        except sqlite3.Error as exc:
            raise OutboxError(f"the outbox cannot take new work ({exc}); free space in {self.directory}") from None
        return item_id

    def _record(self, item_id: str, sql: str, params: tuple, tries: int = 3) -> bool:
        """One status update, retried; refused still, it is kept in memory for `flush` and False is returned."""
        for attempt in range(tries):
            try:
                with self.lock:
                    self.db.execute(sql, params)
                self.unrecorded.pop(item_id, None)
                return True
            except sqlite3.OperationalError as exc:
                error = exc
                if attempt + 1 < tries:
                    time.sleep(0.1 * 2 ** attempt)
        self.unrecorded[item_id] = (sql, params)
        log.error("outbox %s: its new status could not be recorded (%s); kept in memory and recorded when the "
                  "database takes writes again (a restart before then sends it again, same Message-ID)",
                  item_id, error)
        return False

    def flush(self) -> int:
        """Record the status updates the disk refused earlier. Returns how many are still waiting."""
        for item_id, (sql, params) in list(self.unrecorded.items()):
            self._record(item_id, sql, params, tries=1)
        return len(self.unrecorded)

    def get(self, item_id: str) -> Item | None:
        items = self._items("id = ?", (item_id,))
        return items[0] if items else None

    def list(self, status: str | None = None) -> list[Item]:
        return self._items("status = ?", (status,)) if status else self._items()

    def counts(self) -> dict[str, int]:
        with self.lock:
            return status_counts(self.db)

    def claim(self, now: float | None = None, item_id: str | None = None) -> Item | None:
        """Take the oldest due item (or one left `sending` by a dead process), or only `item_id`, and mark it
        ours."""
        now = time.time() if now is None else now
        with self.lock:
            return self._claim(now, item_id)

    def _claim(self, now: float, item_id: str | None) -> Item | None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            where, params = "((status = 'pending' AND next_at <= ?) OR status = 'sending')", (now,)
            if item_id:
                where, params = where + " AND id = ?", (now, item_id)
            candidates = self._items(where, params)
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

    def mark_done(self, item_id: str, result: str) -> bool:
        """False when the disk refused it: the item stays `sending` under this live process (never sent twice
        by it) and the update is recorded by a later `flush`."""
        return self._record(item_id, "UPDATE items SET status = 'done', owner = NULL, result = ?, updated = ? "
                            "WHERE id = ?", (result, time.time(), item_id))

    def mark_failed(self, item: Item, error: str, retryable: bool) -> str:
        """Back to pending with backoff when `retryable` and attempts remain; else failed. Returns the status."""
        now = time.time()
        if retryable and item.attempts < self.max_attempts:
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (item.attempts - 1))
            self._record(item.id, "UPDATE items SET status = 'pending', owner = NULL, result = ?, next_at = ?, "
                         "updated = ? WHERE id = ?", (error, now + delay, now, item.id))
            return "pending"
        self._record(item.id, "UPDATE items SET status = 'failed', owner = NULL, result = ?, updated = ? "
                     "WHERE id = ?", (error, now, item.id))
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
        self.flush()
        while limit is None or len(handled) < limit:
            try:
                item = self.claim()
            except sqlite3.OperationalError as exc:  # locked, read-only or full: the next round tries again
                log.warning("outbox: cannot claim the next item (%s); trying again later", exc)
                break
            if item is None:
                break
            handled.append(self._deliver(item, perform))
        return handled

    def deliver_one(self, item_id: str, perform: Callable[[Item], str]) -> Item | None:
        """Send one item now if it is due; None when it is not (already handled, or another process has it)."""
        self.flush()
        try:
            item = self.claim(item_id=item_id)
        except sqlite3.OperationalError as exc:
            log.warning("outbox: cannot claim %s (%s); the daemon will send it", item_id, exc)
            return None
        return None if item is None else self._deliver(item, perform)

    def _deliver(self, item: Item, perform: Callable[[Item], str]) -> Item:
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
        return item
