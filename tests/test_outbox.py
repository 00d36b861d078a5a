"""Outbox: durable across reopen, idempotent ids, bounds without silent drops, thread safety."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge_ocr.errors import PublishError
from edge_ocr.outbox import Outbox, OutboxFullError


def test_put_peek_ack_in_order(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        for i in range(5):
            assert ob.put(f"id{i}", f"t/{i}", f"p{i}".encode(), qos=1, retain=i == 0)
        assert ob.depth() == 5
        msgs = ob.peek(3)
        assert [m.msg_id for m in msgs] == ["id0", "id1", "id2"]
        assert msgs[0].retain and not msgs[1].retain and msgs[0].payload == b"p0" and msgs[0].qos == 1
        assert [m.msg_id for m in ob.peek(3, exclude={"id0", "id2"})] == ["id1", "id3", "id4"]
        assert ob.ack("id1")
        assert not ob.ack("id1")
        assert ob.ack_many(["id0", "id4", "nope"]) == 2
        assert [m.msg_id for m in ob.peek(10)] == ["id2", "id3"]
        assert ob.depth() == 2
        assert ob.size_bytes() == sum(m.size for m in ob.peek(10))


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path) as ob:
        ob.put("a", "t", b"x" * 100)
        ob.put("b", "t", b"y")
        ob.ack("a")
    with Outbox(path) as ob:
        assert ob.depth() == 1
        assert ob.size_bytes() == 2
        assert [m.payload for m in ob.peek(5)] == [b"y"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_idempotent_on_msg_id(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        assert ob.put("same", "t", b"first")
        assert not ob.put("same", "t", b"second")  # a file re-processed after a crash
        assert ob.depth() == 1
        assert ob.peek(5)[0].payload == b"first"
        ob.ack("same")
        assert ob.put("same", "t", b"again")  # once delivered, the same id may be republished


def test_bounds_raise_and_force(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=2, max_bytes=10_000) as ob:
        ob.put("a", "t", b"1")
        assert not ob.is_full()
        ob.put("b", "t", b"2")
        assert ob.is_full() and ob.stats().full
        with pytest.raises(OutboxFullError):
            ob.put("c", "t", b"3")
        assert isinstance(OutboxFullError("x"), PublishError)
        assert not ob.put("a", "t", b"1")  # an id already waiting is no error even when full
        assert ob.put("c", "t", b"3", force=True)
        assert ob.depth() == 3
        ob.ack_many(["a", "b"])
        assert not ob.is_full()


def test_byte_bound(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=100, max_bytes=1024) as ob:
        ob.put("a", "t", b"x" * 1000)
        assert not ob.is_full()
        ob.put("b", "t", b"x" * 100)
        assert ob.is_full()
        with pytest.raises(OutboxFullError):
            ob.put("c", "t", b"x")


def test_processed_bookkeeping_same_transaction(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        ob.put("r1", "edge-ocr/pi/result/inbox", b'{"text": "a"}', sha256="abc")
        ob.ack("r1")  # delivered: the record stays for `duplicates: republish`
    with Outbox(path) as ob:
        rec = ob.lookup("abc")
        assert rec is not None
        assert (rec.msg_id, rec.topic, rec.payload) == ("r1", "edge-ocr/pi/result/inbox", b'{"text": "a"}')
        ob.remember("abc", "r2", "t", b"new")
        assert ob.lookup("abc").msg_id == "r2"  # type: ignore[union-attr]
        assert ob.lookup("zzz") is None


def test_printed_marks_and_trim(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=3) as ob:
        for i in range(3):
            ob.put(f"m{i}", "t", b"p")
        ob.mark_printed(["m0", "m1"])
        assert [m.msg_id for m in ob.peek(5, unprinted_only=True)] == ["m2"]
        assert [m.msg_id for m in ob.peek(5)] == ["m0", "m1", "m2"]
        assert ob.is_full()
        assert ob.trim_printed() == 1  # only what is needed, oldest first, never unprinted ones
        assert [m.msg_id for m in ob.peek(5)] == ["m1", "m2"]
        assert ob.trim_printed() == 0


def test_thread_safe_puts_and_acks(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_messages=100_000) as ob:

        def writer(k: int) -> None:
            for i in range(50):
                ob.put(f"{k}-{i}", "t", b"payload")

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        drained = 0
        while any(t.is_alive() for t in threads) or ob.depth():
            batch = ob.peek(20)
            drained += ob.ack_many(m.msg_id for m in batch)
        for t in threads:
            t.join()
        assert drained == 200
        assert ob.depth() == 0 and ob.size_bytes() == 0


def test_unwritable_location_is_publish_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PublishError):
        Outbox(blocker / "sub" / "o.sqlite3")
