"""The SQLite store's files are private to the service's user (issue 15, item 7)."""
import os
import stat

from actors.store import SqliteEventStore
from engine.events import Event


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _files(path):
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _write_one(store):
    store.append(0, [Event(event_id="e1", customer_id="c1", event_type="view", item_id="i1", channel="web",
                           timestamp_ms=1_700_000_000_000)])


def test_new_database_directory_and_files_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask, which makes files world-readable
    try:
        path = tmp_path / "var" / "deeper" / "recsys.db"
        store = SqliteEventStore(path)
        _write_one(store)
        assert all(p.exists() for p in _files(path))  # WAL mode: -wal and -shm exist while open
        assert {_mode(p) for p in _files(path)} == {0o600}
        assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
        store.close()
        # the process umask is left as it was
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)


def test_existing_world_readable_files_are_made_private(tmp_path):
    tmp_path.chmod(0o755)
    path = tmp_path / "recsys.db"
    store = SqliteEventStore(path)
    _write_one(store)
    for p in _files(path):
        p.chmod(0o644)
    # the files of a store left open stay in place; a new store on them (a restart) tightens them
    again = SqliteEventStore(path)
    assert {_mode(p) for p in _files(path)} == {0o600}
    assert _mode(tmp_path) == 0o755  # a directory that existed is not touched
    again.close()
    store.close()
