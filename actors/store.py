"""The durable store behind the partition owners: an event log and snapshots per partition, the
partitions' leases (fencing), erasure, an audit log. Its schema is Alembic's (actors/schema.py).

Two backends with one schema and one behaviour (the same tests run against both):

- ``sqlite:///path/recsys.db``: the embedded default (WAL, synchronous=FULL). One machine.
- ``postgresql://...``: for a cluster, a server every node reaches. PostgreSQL rather than Redis
  because an append must be atomic over a whole batch, idempotent per (customer, event id) and
  durable at commit, and erasure must delete a customer's rows everywhere in one transaction:
  that is a unique index, ON CONFLICT DO NOTHING and synchronous_commit, out of the box.

The store calls are blocking; an owner runs them on one dedicated thread.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from engine.catalog import CatalogUpdate, update_from_dict, update_to_dict
from engine.errors import InvalidArgument, PartitionMoved, Unavailable
from engine.events import LINK_RECORD_ID, Event, event_from_dict, event_to_dict


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqlEventStore:
    """Behaviour shared by both backends; subclasses supply the dialect."""

    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        with self._lock:
            self._connection_settings()

    def _connection_settings(self) -> None:
        """Per-connection settings a backend needs before any statement."""

    # -- the connection (both drivers are DB-API: self._conn) and dialect hooks ----------------
    _conn: Any

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params)

    def _commit(self) -> None:
        self._conn.commit()

    def _rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def _insert_events(self, rows: list[tuple]) -> list[int | None]: ...

    def _read(self, sql: str, params: Sequence[Any] = (), *, one: bool = False) -> Any:
        """One read in its own transaction; rolled back on any error, so a failed read never
        leaves the connection in an aborted transaction for the next call (PostgreSQL)."""
        with self._lock:
            try:
                cursor = self._execute(sql, params)
                result = cursor.fetchone() if one else cursor.fetchall()
                self._commit()
            except Exception:
                self._rollback()
                raise
        return result

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    # -- partitions and their leases -----------------------------------------------------------
    def partitions(self) -> int:
        """P: how many partitions customers hash to (set when the store was created)."""
        return int(self.get_meta("partitions"))

    def _fence(self, partition: int, epoch: int | None) -> None:
        """Inside a write transaction: the caller must hold ``partition`` at ``epoch``, else
        PartitionMoved (and the caller rolls the transaction back). A no-op UPDATE rather than a
        SELECT so that it takes the row's write lock (PostgreSQL) or the database's (SQLite) in
        this transaction: an acquire by another owner waits for this commit, and its recovery
        then reads what this commit wrote."""
        if epoch is None:
            return
        cursor = self._execute(self._sql("UPDATE partition_leases SET epoch = epoch "
                                         "WHERE partition_id = ? AND epoch = ? AND owner IS NOT NULL"),
                               (partition, epoch))
        if cursor.rowcount != 1:
            raise PartitionMoved(partition)

    def _fence_all(self, leases: set[tuple[int, int]]) -> bool:
        """``_fence`` for several (partition, epoch) at once, in one statement: True when the
        caller holds every one of them (each row's write lock is then taken, as ``_fence`` takes
        it); False when any moved (the caller fences each alone to find which)."""
        if not leases:
            return True
        pairs = sorted(leases)
        where = " OR ".join(["(partition_id = ? AND epoch = ?)"] * len(pairs))
        cursor = self._execute(self._sql(f"UPDATE partition_leases SET epoch = epoch "
                                         f"WHERE owner IS NOT NULL AND ({where})"),
                               [v for pair in pairs for v in pair])
        return cursor.rowcount == len({p for p, _ in pairs}) == len(pairs)

    def acquire_partition(self, partition: int, owner: str) -> int:
        """Take ``partition`` for ``owner``: the epoch goes up by one, so every write made under
        an earlier lease (a paused or partitioned old owner) fails from this commit on."""
        with self._lock:
            try:
                self._execute(self._sql("UPDATE partition_leases SET owner = ?, epoch = epoch + 1, granted_ms = ? "
                                        "WHERE partition_id = ?"), (owner, _now_ms(), partition))
                row = self._execute(self._sql("SELECT epoch FROM partition_leases WHERE partition_id = ?"),
                                    (partition,)).fetchone()
                self._commit()
            except Exception:
                self._rollback()
                raise
        if row is None:
            raise InvalidArgument(f"partition {partition}: the store has {self.partitions()} partitions")
        return int(row[0])

    def release_partition(self, partition: int, epoch: int) -> bool:
        """Give ``partition`` up (after its last snapshot); False if it was taken from us already."""
        with self._lock:
            try:
                cursor = self._execute(self._sql("UPDATE partition_leases SET owner = NULL "
                                                 "WHERE partition_id = ? AND epoch = ?"), (partition, epoch))
                released = cursor.rowcount == 1
                self._commit()
            except Exception:
                self._rollback()
                raise
        return released

    def leases(self) -> dict[int, tuple[str | None, int]]:
        """partition -> (owner or None, epoch)."""
        rows = self._read("SELECT partition_id, owner, epoch FROM partition_leases")
        return {int(p): (owner, int(epoch)) for p, owner, epoch in rows}

    # -- the event log ----------------------------------------------------------------------------
    def append(self, partition: int, events: Sequence[Event], epoch: int | None = None) -> list[int | None]:
        """Commit ``events`` durably, in one transaction, if the caller holds ``partition`` at
        ``epoch`` (None: unfenced, for tools and tests). Per event: its sequence number, or None
        when (customer_id, event_id) was stored before (a retried delivery)."""
        now = _now_ms()
        rows = [(partition, e.customer_id, e.event_id, now, orjson.dumps(event_to_dict(e))) for e in events]
        with self._lock:
            try:
                self._fence(partition, epoch)
                seqs = self._insert_events(rows)
                self._commit()
            except Exception:
                self._rollback()
                raise
        return seqs

    def append_many(self, batches: Sequence[tuple[int, int | None, Sequence[Event]]]) -> list:
        """Several partitions' appends in one transaction: per (partition, epoch, events), its
        sequence numbers as ``append`` gives them, or PartitionMoved for a partition whose lease
        moved (its events are not stored; the others commit). One fsync for an owner's writes to
        many partitions: with P partitions a request's events spread over many of them."""
        now = _now_ms()
        results: list = []
        with self._lock:
            try:
                # one statement fences every partition while all still hold their leases (the
                # usual case); only when one moved is each checked alone, to name which
                held = self._fence_all({(p, e) for p, e, _ in batches if e is not None})
                for partition, epoch, events in batches:
                    try:
                        if not held:
                            self._fence(partition, epoch)
                    except PartitionMoved as moved:
                        results.append(moved)
                        continue
                    rows = [(partition, e.customer_id, e.event_id, now, orjson.dumps(event_to_dict(e)))
                            for e in events]
                    results.append(self._insert_events(rows))
                self._commit()
            except Exception:
                self._rollback()
                raise
        return results

    # -- small named values (offer catalogue in force, bandit counts) ------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._read(self._sql("SELECT value FROM meta WHERE key = ?"), (key,), one=True)
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            try:
                self._execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?) "
                                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"), (key, value))
                self._commit()
            except Exception:
                self._rollback()
                raise

    # -- the outbox of triggered actions ----------------------------------------------------------
    def append_actions(self, actions: Sequence[dict[str, Any]], partition: int | None = None,
                       epoch: int | None = None) -> int:
        """Store actions (each with action_id, customer_id, kind, created_ms); an action_id stored
        before is skipped, so re-deriving an action after a restart or a move does not send it
        twice. Fenced like ``append`` when ``epoch`` is given."""
        rows = [(a["action_id"], a["customer_id"], a["kind"], a["created_ms"], orjson.dumps(a)) for a in actions]
        conflict = " ON CONFLICT (action_id) DO NOTHING"
        added = 0
        with self._lock:
            try:
                if partition is not None:
                    self._fence(partition, epoch)
                for row in rows:
                    cursor = self._execute(self._sql(
                        "INSERT INTO actions (action_id, customer_id, kind, created_ms, payload) VALUES (?, ?, ?, ?, ?)"
                        + conflict), row)
                    added += max(cursor.rowcount, 0)
                self._commit()
            except Exception:
                self._rollback()
                raise
        return added

    def actions_after(self, seq: int, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Actions stored after ``seq``, oldest first: (seq, action). Forgotten customers' are gone."""
        rows = self._read(self._sql(
                "SELECT seq, payload FROM actions WHERE seq > ? AND customer_id NOT IN "
                "(SELECT customer_id FROM forgotten) ORDER BY seq LIMIT ?"), (seq, limit))
        return [(int(r[0]), orjson.loads(bytes(r[1]))) for r in rows]

    # -- webhook dead letters ----------------------------------------------------------------------
    def add_dead_letter(self, webhook: str, seq: int, action: dict[str, Any], attempts: int, error: str) -> None:
        """Keep an action a webhook could not take (the same action again replaces its row). Not for
        a forgotten customer: an action read before their erasure leaves nothing behind after it."""
        row = (webhook, action["action_id"], action["customer_id"], seq, attempts, error[:2000], _now_ms(),
               orjson.dumps(action), action["customer_id"])
        with self._lock:
            try:
                self._execute(self._sql(
                    "INSERT INTO webhook_dead_letters (webhook, action_id, customer_id, seq, attempts, error, failed_ms, "
                    "payload) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM forgotten WHERE customer_id = ?) ON CONFLICT (webhook, action_id) DO UPDATE SET "
                    "attempts = excluded.attempts, error = excluded.error, failed_ms = excluded.failed_ms"), row)
                self._commit()
            except Exception:
                self._rollback()
                raise

    def dead_letters(self, webhook: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Dead letters, oldest action first: webhook, seq, attempts, error, failed_ms, action."""
        where, args = ("WHERE webhook = ? ", (webhook,)) if webhook is not None else ("", ())
        rows = self._read(self._sql(
            "SELECT webhook, seq, attempts, error, failed_ms, payload FROM webhook_dead_letters " + where
            + "ORDER BY seq, webhook LIMIT ?"), (*args, limit))
        return [{"webhook": r[0], "seq": int(r[1]), "attempts": int(r[2]), "error": r[3], "failed_ms": int(r[4]),
                 "action": orjson.loads(bytes(r[5]))} for r in rows]

    # -- the catalogue -----------------------------------------------------------------------------
    def append_catalog(self, updates: Sequence[CatalogUpdate]) -> None:
        """Commit catalogue updates durably, in one transaction, in order."""
        now = _now_ms()
        rows = [(u.item_id, now, orjson.dumps(update_to_dict(u))) for u in updates]
        with self._lock:
            try:
                for row in rows:
                    self._execute(self._sql("INSERT INTO catalog_updates (item_id, stored_ms, payload) VALUES (?, ?, ?)"),
                                  row)
                self._commit()
            except Exception:
                self._rollback()
                raise

    def catalog_updates(self) -> list[CatalogUpdate]:
        """Every catalogue update in the order it was committed."""
        return [update for _, update in self.catalog_updates_after(0)]

    def catalog_updates_after(self, seq: int) -> list[tuple[int, CatalogUpdate]]:
        """The catalogue updates committed after ``seq``, in order: (seq, update)."""
        rows = self._read(self._sql("SELECT seq, payload FROM catalog_updates WHERE seq > ? ORDER BY seq"), (seq,))
        return [(int(r[0]), update_from_dict(orjson.loads(bytes(r[1])))) for r in rows]

    def events_since(self, partition: int, seq: int) -> Iterator[tuple[int, Event]]:
        rows = self._read(self._sql("SELECT seq, payload FROM events WHERE partition_id = ? AND seq > ? ORDER BY seq"),
                          (partition, seq))
        for row_seq, payload in rows:
            yield int(row_seq), event_from_dict(orjson.loads(bytes(payload)))

    def customer_events(self, customer_id: str) -> list[Event]:
        rows = self._read(self._sql("SELECT payload FROM events WHERE customer_id = ? ORDER BY seq"),
                                 (customer_id,))
        return [event_from_dict(orjson.loads(bytes(p))) for (p,) in rows]

    def export_events(self, batch: int = 10_000) -> Iterator[Event]:
        """Every stored event of customers who were not forgotten, in commit order. The events of an
        id linked to a profile are left out: their copies are the profile's (actors/shard.py)."""
        last = 0
        while True:
            rows = self._read(self._sql(
                    "SELECT seq, payload FROM events WHERE seq > ? AND customer_id NOT IN "
                    "(SELECT customer_id FROM forgotten) AND customer_id NOT IN "
                    "(SELECT customer_id FROM events WHERE event_id = ?) ORDER BY seq LIMIT ?"),
                (last, LINK_RECORD_ID, batch))
            if not rows:
                return
            for seq, payload in rows:
                yield event_from_dict(orjson.loads(bytes(payload)))
            last = int(rows[-1][0])

    # -- snapshots ----------------------------------------------------------------------------------
    def write_snapshot(self, partition: int, seq: int, payload: bytes, epoch: int | None = None) -> None:
        """Replace the partition's snapshot; fenced like ``append`` (an old owner's late snapshot
        would hide what the new owner wrote since)."""
        with self._lock:
            try:
                self._fence(partition, epoch)
                self._execute(self._sql("DELETE FROM snapshots WHERE partition_id = ?"), (partition,))
                self._execute(self._sql("INSERT INTO snapshots (partition_id, seq, created_ms, payload) "
                                        "VALUES (?, ?, ?, ?)"), (partition, seq, _now_ms(), payload))
                self._commit()
            except Exception:
                self._rollback()
                raise

    def latest_snapshot(self, partition: int) -> tuple[int, bytes] | None:
        row = self._read(self._sql("SELECT seq, payload FROM snapshots WHERE partition_id = ?"), (partition,),
                         one=True)
        return None if row is None else (int(row[0]), bytes(row[1]))

    # -- privacy and audit ----------------------------------------------------------------------------
    def forget_customer(self, customer_id: str, *, partition: int | None = None, epoch: int | None = None,
                        principal: str | None = None, detail: dict | None = None) -> int:
        """Erase the customer in one transaction (fenced like ``append`` when ``epoch`` is given,
        so the owner that holds the customer's live state is the one that erases it): every
        stored event, outbox action and webhook dead letter, the snapshot of ``partition`` (every snapshot when None), the forgotten mark that keeps them out of
        training exports and out of every model the shards load, and the audit entry
        (``principal``). Returns events deleted.

        Dropping the snapshot, not rewriting it, is what makes the erasure atomic: the log is the
        truth, a shard without a snapshot rebuilds from the log alone, so a crash at any moment
        after this commit cannot bring the customer back from an older snapshot. The shard writes
        a fresh snapshot right after (an optimisation that may fail without harm)."""
        with self._lock:
            try:
                if partition is not None:
                    self._fence(partition, epoch)
                deleted = self._execute(self._sql("DELETE FROM events WHERE customer_id = ?"), (customer_id,)).rowcount
                self._execute(self._sql("DELETE FROM actions WHERE customer_id = ?"), (customer_id,))
                self._execute(self._sql("DELETE FROM webhook_dead_letters WHERE customer_id = ?"), (customer_id,))
                if partition is None:
                    self._execute("DELETE FROM snapshots")
                else:
                    self._execute(self._sql("DELETE FROM snapshots WHERE partition_id = ?"), (partition,))
                self._execute(self._sql("DELETE FROM forgotten WHERE customer_id = ?"), (customer_id,))
                self._execute(self._sql("INSERT INTO forgotten (customer_id, forgotten_ms) VALUES (?, ?)"),
                              (customer_id, _now_ms()))
                if principal is not None:
                    self._insert_audit(principal, "forget_customer", customer_id,
                                       {"events_deleted": int(deleted), **(detail or {})})
                self._commit()
            except Exception:
                self._rollback()
                raise
            self._after_erasure()
        return int(deleted)

    def _after_erasure(self) -> None:
        """Make deleted rows unreadable in the database files (the backend's way)."""

    def is_forgotten(self, customer_id: str) -> bool:
        return self._read(self._sql("SELECT 1 FROM forgotten WHERE customer_id = ?"), (customer_id,), one=True) is not None

    def forgotten_since(self, customer_id: str, since_ms: int) -> bool:
        """Whether the customer was erased at ``since_ms`` or later."""
        return self._read(self._sql("SELECT 1 FROM forgotten WHERE customer_id = ? AND forgotten_ms >= ?"),
                          (customer_id, since_ms), one=True) is not None

    def forgotten_customers(self) -> set[str]:
        rows = self._read("SELECT customer_id FROM forgotten")
        return {r[0] for r in rows}

    def audit(self, principal: str, action: str, target: str, detail: dict | None = None) -> None:
        with self._lock:
            try:
                self._insert_audit(principal, action, target, detail)
                self._commit()
            except Exception:
                self._rollback()
                raise

    def _insert_audit(self, principal: str, action: str, target: str, detail: dict | None) -> None:
        self._execute(self._sql("INSERT INTO audit (ts_ms, principal, action, target, detail) VALUES (?, ?, ?, ?, ?)"),
                      (_now_ms(), principal, action, target, orjson.dumps(detail or {}).decode()))

    def probe_write(self) -> None:
        """A small durable write: can this store take writes now? (health, after a failure)"""
        self.set_meta("health_probe", str(_now_ms()))

    def audit_log(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT id, ts_ms, principal, action, target, detail FROM audit ORDER BY id")
        return [{"id": r[0], "ts_ms": r[1], "principal": r[2], "action": r[3], "target": r[4],
                 "detail": orjson.loads(r[5])} for r in rows]


# how long a write queues for the SQLite writer lock before it fails (SQLite's busy_timeout)
WRITER_LOCK_TIMEOUT_S = 30.0


class SqliteEventStore(SqlEventStore):
    """The embedded default: one file, WAL journal, fsync at every commit (synchronous=FULL)."""

    def __init__(self, path: str | Path, partitions: int | None = None):
        import os

        from actors.schema import ensure_schema

        self.path = Path(path)
        ensure_schema(f"sqlite:///{self.path}", partitions)
        # Customers' events live here: readable by the service's user only. A directory made here
        # is 0700 (one that exists already, /tmp say, is left alone); the database, its WAL and
        # shared-memory files are 0600, made so (umask) or set so when they exist from before.
        # SQLite creates -wal and -shm with the database file's mode.
        files = [self.path, self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")]
        umask = os.umask(0o077)  # process-wide for a moment: only ever makes files more private
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            for file in files:
                if file.exists():
                    file.chmod(0o600)
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level="DEFERRED",
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
        finally:
            os.umask(umask)
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        # Writers of one database file (every owner on this machine) queue on a lock file, taken
        # before a transaction's first write and given back at its end. SQLite's own busy handler
        # sleeps 1, 2, 5, ... 100 ms between tries, so owners that met on the write lock waited
        # far longer than the transaction ahead of them took (2 owners: 7,567 events/s through the
        # service; the kernel's flock wakes the next writer as soon as the lock is free).
        lock_path = self.path.with_name(self.path.name + "-writer-lock")
        try:
            self._writer_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:  # made by another user (root running a tool first): SQLite's own locking
            _log.warning("store: cannot open %s; writers wait on SQLite's busy handler instead", lock_path)
            self._writer_lock = -1
        self._writing = False
        super().__init__()

    _WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self._writing and self._writer_lock >= 0 and sql.lstrip()[:7].upper().startswith(self._WRITES):
            self._take_writer_lock()
        return self._conn.execute(sql, params)

    def _take_writer_lock(self) -> None:
        """Queue for the writer lock as long as SQLite's busy_timeout would have waited (30 s),
        then fail the write as SQLite would: a writer stopped mid-transaction (SIGSTOP, a hung
        disk) must not wedge every other owner's store thread for ever."""
        deadline = time.monotonic() + WRITER_LOCK_TIMEOUT_S
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._writer_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._writing = True
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another writer held it for {WRITER_LOCK_TIMEOUT_S:.0f} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def _end_write(self) -> None:
        if self._writing:
            self._writing = False
            fcntl.flock(self._writer_lock, fcntl.LOCK_UN)

    def _commit(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._end_write()

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._end_write()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._writer_lock >= 0:
                self._end_write()
                os.close(self._writer_lock)
                self._writer_lock = -1

    def _connection_settings(self) -> None:
        # deleted content (erased customers' events, replaced snapshots) is overwritten with
        # zeros in the file, not left on free pages
        self._conn.execute("PRAGMA secure_delete=ON")

    def _after_erasure(self) -> None:
        # the WAL still holds the pages as they were before the delete: copy the zeroed pages
        # into the database and truncate the WAL to nothing
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader in the middle of a transaction: the next erasure or restart finishes it
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _insert_events(self, rows):
        seqs = []
        for row in rows:
            cursor = self._execute(
                "INSERT OR IGNORE INTO events (partition_id, customer_id, event_id, stored_ms, payload) VALUES (?, ?, ?, ?, ?)",
                row)
            seqs.append(cursor.lastrowid if cursor.rowcount == 1 else None)
        return seqs


class PostgresEventStore(SqlEventStore):
    """A PostgreSQL server shared by every node; commits are durable (synchronous_commit on).

    One connection, used by one thread at a time (the store's lock). A server restart, a failover
    or a network cut breaks it: the call that finds it broken raises ``Unavailable`` (its batch
    fails, the caller may retry), and the next call connects again. Reconnecting never holds the
    shard's store thread for long: a connect attempt is bounded by ``connect_timeout``, and after
    a failed attempt the next one waits a backoff (doubling up to ``RECONNECT_BACKOFF_MAX_S``),
    during which calls fail at once. A connection lost during COMMIT leaves the outcome unknown;
    the message says so, and a retry is safe because the event log is idempotent per
    (customer_id, event_id).
    """

    placeholder = "%s"

    # libpq settings the URL may override: connect within a few seconds, and notice a dead TCP
    # peer (a cut, not a restart: a restart closes the socket) within about ten
    CONNECTION_DEFAULTS = {"connect_timeout": "3", "keepalives": "1", "keepalives_idle": "5",
                           "keepalives_interval": "1", "keepalives_count": "3", "tcp_user_timeout": "5000"}
    RECONNECT_BACKOFF_MIN_S = 0.1
    RECONNECT_BACKOFF_MAX_S = 1.0

    def __init__(self, url: str, partitions: int | None = None):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from actors.schema import ensure_schema

        ensure_schema(url, partitions)
        self._psycopg = psycopg
        self.url = url
        given = conninfo_to_dict(url)
        self._conninfo = make_conninfo(url, **{k: v for k, v in self.CONNECTION_DEFAULTS.items() if k not in given})
        self._conn = None
        self._closed = False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._last_error: str | None = None
        self.connects = 0  # connections opened: 1 + reconnects
        super().__init__()

    # -- the connection: opened on demand, dropped when broken ---------------------------------------
    def _connection(self):
        """The open connection, or a new one if the last was lost. Only a statement that starts a
        call reaches here without one: a lost connection always raises out of the call it broke."""
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise Unavailable("the PostgreSQL store was closed")
        now = time.monotonic()
        if now < self._retry_at:
            raise Unavailable(f"PostgreSQL unavailable ({self._last_error}); reconnecting, next attempt in "
                              f"{self._retry_at - now:.2f} s; retry")
        psycopg = self._psycopg
        conn = None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=False)
            conn.execute("SET synchronous_commit TO on")
            conn.commit()
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            self._last_error = _reason(exc)
            self._backoff_s = min(max(2 * self._backoff_s, self.RECONNECT_BACKOFF_MIN_S), self.RECONNECT_BACKOFF_MAX_S)
            self._retry_at = time.monotonic() + self._backoff_s
            _log.warning("PostgreSQL: cannot connect, next attempt in %.1f s: %s", self._backoff_s, exc)
            raise Unavailable(f"PostgreSQL unavailable: cannot connect ({self._last_error}); retry") from exc
        if self.connects:
            _log.warning("PostgreSQL: connected again after a lost connection")
        self._conn, self._backoff_s, self._retry_at = conn, 0.0, 0.0
        self.connects += 1
        return conn

    def _lost(self, conn, exc: BaseException, outcome: str) -> Unavailable | None:
        """If ``exc`` broke the connection: drop it (the next call reconnects) and return the
        Unavailable to raise. None for an error on a healthy connection (a constraint, a trigger,
        a full disk): that is raised as it is and the caller rolls back as usual."""
        if not (conn.broken or conn.closed):
            return None
        self._drop(conn)
        self._last_error = _reason(exc)
        _log.warning("PostgreSQL: connection lost (%s): %s", outcome, exc)
        return Unavailable(f"PostgreSQL connection lost ({self._last_error}); {outcome}; retry")

    def _drop(self, conn) -> None:
        if self._conn is conn:
            self._conn = None
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is already broken
            pass

    def _execute(self, sql, params=()):
        conn = self._connection()
        try:
            return conn.execute(sql, params)
        except self._psycopg.Error as exc:
            lost = self._lost(conn, exc, "nothing of this call was committed")
            if lost is None:
                raise
            raise lost from exc

    def _commit(self):
        conn = self._conn
        if conn is None:  # lost earlier in this transaction: never commit on a new connection
            raise Unavailable(f"PostgreSQL connection lost ({self._last_error}); nothing of this call was committed; "
                              "retry")
        try:
            conn.commit()
        except self._psycopg.Error as exc:
            lost = self._lost(conn, exc, "the outcome of its COMMIT is unknown (retrying is safe: events are "
                                         "stored once per customer and event id)")
            if lost is None:
                raise
            raise lost from exc

    def _rollback(self):
        # called while an error propagates: never raise over it
        conn = self._conn
        if conn is None:
            return
        try:
            conn.rollback()
        except self._psycopg.Error:
            if conn.broken or conn.closed:
                self._drop(conn)
            else:
                raise

    def close(self):
        self._closed = True
        if self._conn is not None:
            self._drop(self._conn)

    def _after_erasure(self) -> None:
        """Vacuum the tables the erasure deleted from, so the dead rows are pruned from their pages
        now rather than at autovacuum's leisure (VACUUM cannot run inside a transaction). A failure
        here does not undo the erasure, which has committed; autovacuum finishes it."""
        try:
            conn = self._connection()
            conn.autocommit = True
            try:
                for table in ("events", "actions", "snapshots"):
                    conn.execute(f"VACUUM {table}")
            finally:
                conn.autocommit = False
        except Exception as exc:  # noqa: BLE001
            _log.warning("VACUUM after an erasure failed (autovacuum will do it): %s", _reason(exc))

    def _insert_events(self, rows):
        seqs: list[int | None] = []
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO events (partition_id, customer_id, event_id, stored_ms, payload) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (customer_id, event_id) DO NOTHING RETURNING seq", rows, returning=True)
                while True:
                    row = cursor.fetchone()
                    seqs.append(None if row is None else int(row[0]))
                    if not cursor.nextset():
                        break
        except self._psycopg.Error as exc:
            lost = self._lost(conn, exc, "nothing of this call was committed")
            if lost is None:
                raise
            raise lost from exc
        return seqs


_log = logging.getLogger(__name__)


def _reason(exc: BaseException) -> str:
    """A driver error for a caller: its kind and libpq's reason, without the server's address
    (libpq writes 'connection to server at "host", port 5432 failed: <reason>'); the whole text
    goes to the log."""
    text = str(exc).lower()
    # libpq's wording carries host names, addresses and user names: only the kind goes out
    for needle, kind in (("resolve host", "the database host name does not resolve"),
                         ("timeout", "connecting timed out"), ("timed out", "connecting timed out"),
                         ("refused", "the database refused the connection"),
                         ("authentication", "the database refused the credentials"),
                         ("password", "the database refused the credentials"),
                         ("terminat", "the server ended the connection"),
                         ("closed", "the connection was closed"),
                         ("starting up", "the database is starting up"),
                         ("shutting down", "the database is shutting down")):
        if needle in text:
            return kind
    return "the database connection failed"


def open_store(url: str, partitions: int | None = None) -> SqlEventStore:
    """``sqlite:///relative/or/absolute.db`` or ``postgresql://...``, at the current schema (a
    new store is created with ``partitions``; actors/schema.py)."""
    if url.startswith("sqlite:///"):
        return SqliteEventStore(url[len("sqlite:///"):], partitions)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresEventStore(url, partitions)
    raise InvalidArgument(f"store_url: expected sqlite:///PATH or postgresql://...; got {url!r}")
