"""The same store contract against a real PostgreSQL server."""
import psycopg
import pytest

from actors.store import PostgresEventStore
from tests.store_contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_url):
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for table in ("events", "snapshots", "forgotten", "audit", "meta", "catalog_updates", "actions"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        store = PostgresEventStore(postgres_url)
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, postgres_url):
        return lambda: PostgresEventStore(postgres_url)

    append_only_error = psycopg.errors.RaiseException
