"""The outbox on a bad disk: real SQLite files damaged on purpose, a real write lock, and a database size limit
that makes SQLite answer "database or disk is full" (the daemon's side: test_daemon.py)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from octopus.device.config import parse_config
from octopus.device.doctor import check_outbox
from octopus.device.outbox import QUARANTINE, Outbox, OutboxError, inspect


def filled(directory: Path, n: int = 40) -> Outbox:
    box = Outbox(directory)
    for i in range(n):  # ~1 KB each: the rows span many pages
        box.enqueue("send_email", {"to": f"ann{i}@example.com", "body": "x" * 1000}, source="test")
    return box


def pages(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    size, count = db.execute("PRAGMA page_size").fetchone()[0], db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    return size, count


def config_for(state: Path):
    return parse_config(f'[daemon]\nstate_dir = "{state}"\n')


def test_a_corrupt_page_is_moved_aside_and_every_readable_item_recovered(tmp_path):
    filled(tmp_path).close()
    path = tmp_path / "outbox.sqlite3"
    size, count = pages(path)
    assert count > 8
    with path.open("r+b") as f:  # garbage over one leaf page in the middle of the table
        f.seek(size * (count // 2))
        f.write(b"\xff\x13" * (size // 2))
    assert "corrupt" in inspect(tmp_path) or "malformed" in inspect(tmp_path)
    assert not check_outbox(config_for(tmp_path)).ok  # doctor sees it before the daemon does
    box = Outbox(tmp_path)
    recovered = len(box.list())
    assert 20 <= recovered < 40, recovered  # one page holds ~3 rows: only those are lost
    assert f"{recovered} items recovered" in box.problem and "moved aside" in box.problem
    assert all(i.status == "pending" and i.arguments["body"] == "x" * 1000 for i in box.list())
    box.enqueue("send_email", {"to": "bob@example.com"})  # the fresh database takes work
    box.close()
    aside = list(tmp_path.glob(QUARANTINE + "*"))
    assert aside and inspect(tmp_path) is None
    check = check_outbox(config_for(tmp_path))
    assert not check.ok and "moved aside" in check.detail and min(p.name for p in aside) in check.detail


def test_an_emptied_database_is_reported_not_silently_replaced(tmp_path):
    filled(tmp_path).close()
    (tmp_path / "outbox.sqlite3").write_bytes(b"")  # truncated by a bad disk or a careless hand
    assert inspect(tmp_path) == "the outbox database is empty although items were recorded"
    assert not check_outbox(config_for(tmp_path)).ok
    box = Outbox(tmp_path)
    assert box.problem.startswith("the outbox database is empty") and "0 items recovered" in box.problem
    box.close()
    fresh = tmp_path / "fresh"
    box = Outbox(fresh)  # a first start is not a loss
    assert box.problem is None and inspect(fresh) is None and check_outbox(config_for(fresh)).ok
    box.close()


def test_a_corrupt_header_does_not_stop_the_outbox(tmp_path):
    filled(tmp_path, 5).close()
    with (tmp_path / "outbox.sqlite3").open("r+b") as f:
        f.write(b"not a database at all!" * 5)
    assert "not a database" in inspect(tmp_path)
    box = Outbox(tmp_path)
    assert "not a database" in box.problem and box.list() == []
    assert box.get(box.enqueue("send_email", {"to": "ann@example.com"})).status == "pending"
    box.close()


def test_a_full_disk_refuses_new_work_in_one_line_and_keeps_what_is_queued(tmp_path):
    box = filled(tmp_path, 3)
    box.db.execute(f"PRAGMA max_page_count = {box.db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(OutboxError) as caught:
        for _ in range(50):
            box.enqueue("send_email", {"to": "ann@example.com", "body": "y" * 4000})
    message = str(caught.value)
    assert "cannot take new work" in message and "full" in message and "\n" not in message
    assert len(box.list()) >= 3
    box.close()


def test_an_item_sent_but_not_recorded_is_not_sent_twice_and_is_recorded_later(tmp_path):
    box = Outbox(tmp_path)
    box.enqueue("send_email", {"to": "ann@example.com"})
    box.db.execute("PRAGMA busy_timeout = 50")
    blocker = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
    sent = []

    def perform(item):
        sent.append(item.id)
        blocker.execute("BEGIN EXCLUSIVE")  # the disk refuses writes right after the server accepted DATA
        return "sent"

    box.deliver_due(perform)
    assert len(sent) == 1 and box.unrecorded
    assert box.get(sent[0]).status == "sending"  # still ours: no other sender takes it while we live
    blocker.execute("COMMIT")
    assert box.deliver_due(perform) == [] and len(sent) == 1  # flushed first, then nothing is due
    assert box.get(sent[0]).status == "done" and not box.unrecorded
    box.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
