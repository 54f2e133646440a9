"""The same store contract against a real PostgreSQL server; and that server restarted under
the store and under the whole service."""
import json
import subprocess
import sys
import time
from dataclasses import asdict

import psycopg
import pytest

from actors.store import PostgresEventStore
from engine.errors import Unavailable
from tests.conftest import ROOT
from tests.integration.postgres_restart_scenario import PostgresProcess
from tests.store_contract import StoreContract, ev

# while the server is down a call fails within this (it must never hold an owner's store thread)
FAIL_FAST_BOUND_S = 5.0
# ingest is back within this once the server accepts connections again
RECOVERY_BOUND_S = 30.0


def drop_tables(url):
    """Every table of the store (whatever the migrations made), so the next test starts empty."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_url):
        drop_tables(postgres_url)
        store = PostgresEventStore(postgres_url)
        yield store
        store.close()

    @pytest.fixture
    def reopen(self, postgres_url):
        return lambda: PostgresEventStore(postgres_url)

    @pytest.fixture
    def fresh_url(self, postgres_url):
        """A database of its own, empty: owners opening a new store at once."""
        import uuid

        name = f"fresh_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield postgres_url.replace("/recsys_test?", f"/{name}?")

    append_only_error = psycopg.errors.RaiseException


@pytest.fixture(scope="module")
def restartable():
    """A PostgreSQL server of its own (the session's stays up for the other tests), which a test
    may stop and start: (url, PostgresProcess).

    Not under pytest's basetemp: as root, pgserver runs the server as its own user, and any
    pytest that starts meanwhile makes /tmp/pytest-of-root private again (0700), after which
    pg_ctl (as that user) can no longer reach a data directory below it."""
    import tempfile

    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="recsys-pg-restart-"), cleanup_mode="delete")
    process = PostgresProcess.of(server)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE recsys_restart")
    yield server.get_uri("recsys_restart"), process
    # pgserver only stops the postmaster it started; a restarted one is stopped here
    if process.running():
        process.stop("fast")
    server.cleanup()


@pytest.fixture
def fresh(restartable):
    url, process = restartable
    if not process.running():  # a test that failed half way left it stopped
        process.start()
    drop_tables(url)
    return url, process


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    except Unavailable as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_store_fails_fast_while_the_server_is_down_and_reconnects_after(fresh, mode):
    url, process = fresh
    store = PostgresEventStore(url)
    try:
        assert store.append(0, [ev(1)])[0] is not None
        process.stop(mode)  # fast: an operator's restart; immediate: a crash
        seconds, error = timed(lambda: store.append(0, [ev(2)]))
        assert error is not None and "connection lost" in error.message, error
        assert seconds < FAIL_FAST_BOUND_S
        # every later call fails at once too, reads and writes alike, with a message that says why
        for call in (lambda: store.append(0, [ev(2)]), lambda: list(store.events_since(0, 0)), store.probe_write):
            seconds, error = timed(call)
            assert error is not None and "PostgreSQL unavailable" in error.message, error
            assert seconds < FAIL_FAST_BOUND_S
        process.start()
        up = time.monotonic()
        while True:
            seconds, error = timed(lambda: store.append(0, [ev(2)]))
            if error is None:
                break
            assert time.monotonic() - up < RECOVERY_BOUND_S, error
            time.sleep(0.05)
        back = time.monotonic() - up
        assert [e.event_id for _, e in store.events_since(0, 0)] == ["e1", "e2"]  # e1 was acknowledged
        assert store.connects == 2
        print(f"store, pg_ctl stop -m {mode}: next call failed fast; written again {back:.2f} s after the "
              "server was back")
    finally:
        store.close()


def test_a_connection_cut_mid_transaction_fails_that_transaction_and_never_commits_a_part(fresh):
    url, _ = fresh
    store = PostgresEventStore(url)
    try:
        store.append(0, [ev(1), ev(2, customer="c2")])
        backend = store._execute("SELECT pg_backend_pid()").fetchone()[0]
        store._commit()
        # a transaction half done (its first statement) when the connection is cut
        store._execute("DELETE FROM events WHERE customer_id = %s", ("c1",))
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(Unavailable, match="connection lost"):
            store._execute("DELETE FROM events WHERE customer_id = %s", ("c2",))
        # its COMMIT must not reconnect and commit the rest of it on a new connection
        with pytest.raises(Unavailable, match="nothing of this call was committed"):
            store._commit()
        store._rollback()
        assert [e.event_id for e in store.customer_events("c1")] == ["e1"]  # the next call reconnects
        assert [e.event_id for e in store.customer_events("c2")] == ["e2"]
        assert store.forget_customer("c1") == 1
        assert store.connects == 2
    finally:
        store.close()


def test_connection_lost_during_commit_says_the_outcome_is_unknown_and_a_retry_is_stored_once(fresh):
    url, _ = fresh
    store = PostgresEventStore(url)
    # a deferred trigger runs inside COMMIT: it ends its own backend there, as a server that goes
    # away at that moment would
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("""CREATE OR REPLACE FUNCTION cut_at_commit() RETURNS trigger AS $$ BEGIN
                             IF NEW.customer_id = 'cut' THEN
                                 PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);
                             END IF; RETURN NULL; END; $$ LANGUAGE plpgsql""")
        admin.execute("""CREATE CONSTRAINT TRIGGER cut_at_commit AFTER INSERT ON events
                         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut_at_commit()""")
    try:
        seconds, error = timed(lambda: store.append(0, [ev(1, customer="cut")]))
        assert error is not None and "outcome of its COMMIT is unknown" in error.message, error
        assert "retrying is safe" in error.message
        assert seconds < FAIL_FAST_BOUND_S
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP TRIGGER cut_at_commit ON events")
        # the retry reconnects; here the commit had not happened, so the event is stored now...
        assert store.append(0, [ev(1, customer="cut")])[0] is not None
        # ...and once only, whatever the number of retries
        assert store.append(0, [ev(1, customer="cut")]) == [None]
        assert [e.event_id for e in store.customer_events("cut")] == ["e1"]
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP TRIGGER IF EXISTS cut_at_commit ON events")


def test_service_ingest_survives_postgres_restarts_under_load(fresh):
    """The whole service on PostgreSQL, eight gRPC writers, the server restarted twice (a fast
    stop held 3 s, then a crash held 1 s): nothing acknowledged is lost, the rebuilt live state
    holds each stored event once, and every writer is acknowledged again within the bound."""
    url, process = fresh
    spec = {"url": url, "postgres": asdict(process)}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "integration" / "postgres_restart_scenario.py"),
                             json.dumps(spec)], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["owners_used"] == 2
    with psycopg.connect(url) as conn:
        stored = {(c, e) for c, e in conn.execute("SELECT customer_id, event_id FROM events")}
    acked = {tuple(a) for a in report["acked"]}
    assert len(acked) > 200, "too little load to say anything"
    lost = acked - stored
    assert not lost, f"{len(lost)} acknowledged events are not in the store, e.g. {sorted(lost)[:5]}"
    for customer, export in report["exports"].items():
        mine = {e for c, e in stored if c == customer}
        assert set(export["event_ids"]) == mine
        # every stored event applied exactly once, also those whose commit outcome was unknown
        assert export["event_count"] == len(mine), customer
    assert report["failure_codes"] == ["UNAVAILABLE"], report["failure_samples"]
    for restart in report["restarts"]:
        assert restart["failed_calls"] > 0, "the restart did not reach the writers"
        assert restart["up_to_every_writer_s"] is not None, restart
        assert restart["up_to_every_writer_s"] < RECOVERY_BOUND_S, restart
        assert restart["slowest_failed_call_s"] < FAIL_FAST_BOUND_S * 2, restart
    assert report["health_after"][0] == 200, report["health_after"]
    for restart in report["restarts"]:
        print(f"PostgreSQL restart (pg_ctl stop -m {restart['mode']}, down {restart['down_s']} s): "
              f"{restart['failed_calls']} failed calls (slowest {restart['slowest_failed_call_s']} s); "
              f"first ack {restart['up_to_first_ack_s']} s and every writer acked "
              f"{restart['up_to_every_writer_s']} s after the server was back; "
              f"health while down: {restart['health_while_down'][0]}")
    print(f"{len(acked)} events acknowledged in {report['calls_acked']} calls, none lost, none applied twice; "
          f"{report['duplicates']} retried events answered as duplicates; "
          f"failures said e.g. {report['failure_samples'][:2]}")


def test_an_erasure_vacuums_the_tables_it_deleted_from(postgres_url):
    drop_tables(postgres_url)
    store = PostgresEventStore(postgres_url)
    try:
        store.append(0, [ev(1, "gone"), ev(2, "gone"), ev(3, "stays")])
        assert store.forget_customer("gone", partition=0, principal="admin") == 2
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            vacuumed = dict(conn.execute(
                "SELECT relname, last_vacuum IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname IN ('events', 'actions', 'snapshots')").fetchall())
        assert vacuumed == {"events": True, "actions": True, "snapshots": True}
    finally:
        store.close()
