"""Store behaviour on the embedded backend (the PostgreSQL run is in tests/integration)."""
import sqlite3

import pytest

from actors.store import SqliteEventStore
from tests.store_contract import StoreContract


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = SqliteEventStore(tmp_path / "store.db")
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, tmp_path):
        return lambda: SqliteEventStore(tmp_path / "store.db")

    @pytest.fixture
    def fresh_url(self, tmp_path):
        return f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"

    append_only_error = sqlite3.DatabaseError

    def test_wal_and_full_sync(self, store):
        assert store._execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_writers_of_one_file_queue_on_the_writer_lock_and_a_failed_write_gives_it_back(tmp_path):
    """Two stores on one database (two owners on one machine): a write holds the writer lock until
    its transaction ends, committed or rolled back, so the other writer goes next."""
    import fcntl
    import os
    import threading

    from engine.errors import PartitionMoved
    from engine.events import parse_event

    first, second = SqliteEventStore(tmp_path / "s.db", 4), SqliteEventStore(tmp_path / "s.db")
    try:
        lock = tmp_path / "s.db-writer-lock"
        assert lock.exists() and (lock.stat().st_mode & 0o777) == 0o600

        def held() -> bool:
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
            except BlockingIOError:
                return True
            finally:
                os.close(fd)

        epoch = first.acquire_partition(0, "owner-a")
        assert not held()
        event = parse_event({"event_id": "e1", "customer_id": "c1", "event_type": "view", "item_id": "i1",
                          "channel": "web"}, 10**12 + 1)
        with pytest.raises(PartitionMoved):
            first.append(0, [event], epoch + 5)   # fenced: rolled back
        assert not held()                         # and the lock given back with it
        first.append(0, [event], epoch)
        assert not held()
        # a writer waits for the other's transaction, then goes on
        first._lock.acquire()
        first._execute("UPDATE partition_leases SET epoch = epoch WHERE partition_id = 1")
        assert held()
        done = threading.Event()
        threading.Thread(target=lambda: (second.acquire_partition(2, "owner-b"), done.set()), daemon=True).start()
        assert not done.wait(0.3)                 # queued behind the open transaction
        first._commit()
        first._lock.release()
        assert done.wait(5.0)
    finally:
        first.close()
        second.close()


def test_a_writer_stopped_mid_transaction_does_not_wedge_the_others(tmp_path, monkeypatch):
    """The writer lock is waited for as long as SQLite's busy timeout would, then the write fails
    as SQLite's would ("database is locked"); the store stays usable."""
    import actors.store as store_module

    monkeypatch.setattr(store_module, "WRITER_LOCK_TIMEOUT_S", 0.3)
    stopped, other = SqliteEventStore(tmp_path / "s.db", 4), SqliteEventStore(tmp_path / "s.db")
    try:
        stopped._lock.acquire()
        stopped._execute("UPDATE partition_leases SET epoch = epoch WHERE partition_id = 1")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.acquire_partition(2, "owner-b")
        stopped._rollback()
        stopped._lock.release()
        assert other.acquire_partition(2, "owner-b") >= 1
    finally:
        stopped.close()
        stopped.close()   # a second close is harmless
        other.close()


def test_a_lock_file_it_cannot_open_falls_back_to_sqlites_locking(tmp_path, monkeypatch):
    import os as os_module

    real_open = os_module.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("-writer-lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("actors.store.os.open", refuse)
    store = SqliteEventStore(tmp_path / "s.db", 2)
    try:
        assert store.acquire_partition(0, "owner-a") >= 1   # writes still work, on SQLite's own lock
    finally:
        store.close()
