"""The commit signal (node/store/signal.py): readers ask SQLite whether another process committed only when a
writer moved the signal, or when a while has passed — so a commit is never hidden for long, even if its writer
died before signalling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_store import declared
from trent.node.clock import FixedClock
from trent.node.store.base import Batch
from trent.node.store.signal import RECHECK_SECONDS, CommitSignal
from trent.node.store.sqlite import SqliteStore


def test_a_reader_sees_every_bump_once(tmp_path: Path) -> None:
    clock = FixedClock(0.0)
    writer, reader = CommitSignal(tmp_path / "s"), CommitSignal(tmp_path / "s", clock.now)
    assert reader.moved()  # the first look always looks
    assert not reader.moved()
    writer.bump()
    assert reader.moved() and not reader.moved()
    writer.bump()
    writer.bump()
    assert reader.moved() and not reader.moved()


def test_without_a_bump_a_reader_still_looks_after_a_while(tmp_path: Path) -> None:
    clock = FixedClock(0.0)
    reader = CommitSignal(tmp_path / "s", clock.now)
    assert reader.moved() and not reader.moved()
    clock.advance(RECHECK_SECONDS / 2)
    assert not reader.moved()
    clock.advance(RECHECK_SECONDS)
    assert reader.moved() and not reader.moved()


def test_a_commit_is_seen_by_the_next_look_of_another_store(tmp_path: Path) -> None:
    a, b = declared(SqliteStore(tmp_path / "kms.db", feed=True)), declared(SqliteStore(tmp_path / "kms.db", feed=True))
    before = b.data_version()
    assert b.data_version() == before
    a.commit(Batch().put("keys", "k1", b"x"))
    assert b.data_version() != before  # at once, not after the recheck interval
    assert (tmp_path / "kms.db-signal").exists()


def test_a_commit_whose_writer_never_signalled_shows_within_the_recheck_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = declared(SqliteStore(tmp_path / "kms.db", feed=True)), declared(SqliteStore(tmp_path / "kms.db", feed=True))
    clock = FixedClock(0.0)
    assert b._signal is not None and a._signal is not None
    b._signal._monotonic = clock.now  # type: ignore[assignment]
    before = b.data_version()
    monkeypatch.setattr(a._signal, "bump", lambda: None)  # as if the writer died right after COMMIT
    a.commit(Batch().put("keys", "k1", b"x"))
    assert b.data_version() == before  # not signalled: not looked for yet
    clock.advance(RECHECK_SECONDS)
    assert b.data_version() != before


def test_a_single_process_store_keeps_no_signal_file(tmp_path: Path) -> None:
    declared(SqliteStore(tmp_path / "kms.db")).commit(Batch().put("keys", "k1", b"x"))
    assert not (tmp_path / "kms.db-signal").exists()
