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
