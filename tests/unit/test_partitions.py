"""Partitions, their leases and moves, without Ray: the store's fencing (actors/store.py), the
write path under a lease (actors/shard_writer.py), the migration from N fixed shards
(actors/schema.py), the placement's assignment (actors/placement.py) and an owner's moves
(actors/owner.py: OwnerCore).

A partition is held under a lease epoch; every write checks it in its own transaction, so an
owner that lost the partition (paused, partitioned, slow to notice a move) can write nothing.
"""
from __future__ import annotations

import asyncio
import collections
import sqlite3

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.names import owner_name
from actors.placement import balanced_assignment
from actors.shard import CustomerShardLogic
from actors.store import SqliteEventStore, open_store
from engine.config import RankingConfig
from engine.errors import InvalidArgument, PartitionMoved
from engine.events import event_to_dict, parse_event
from engine.queries import RecommendQuery, SimilarQuery
from engine.sharding import partition_for
from recommenders.runtime import ModelRuntime

NOW = 1_800_000_000_000


def event(n, customer, kind="view", item="i0001"):
    return parse_event({"event_id": f"{customer}-{n}", "customer_id": customer, "event_type": kind,
                        "item_id": item, "channel": "web", "timestamp_ms": NOW - 1000}, NOW)


def customers_in(partition: int, partitions: int, count: int, prefix: str = "c") -> list[str]:
    """``count`` customer ids that hash to ``partition`` of ``partitions``."""
    found, n = [], 0
    while len(found) < count:
        name = f"{prefix}{n}"
        if partition_for(name, partitions) == partition:
            found.append(name)
        n += 1
    return found


def rows(path, sql, params=()):
    """Read the database file directly, on a connection of its own (what is really committed)."""
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def ids(logic) -> set[str]:
    """The customers a partition holds in memory."""
    return {c for c, _ in logic.customers.items()}


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario, 30))


# --- a. fencing in the store ----------------------------------------------------------------------

def _action(action_id, customer):
    return {"action_id": action_id, "customer_id": customer, "kind": "cross_sell", "created_ms": 5,
            "item_ids": ["i0002"]}


def test_an_old_lease_can_write_nothing(tmp_path):
    path = tmp_path / "s.db"
    owner_a = SqliteEventStore(path, partitions=8)
    owner_b = SqliteEventStore(path)  # another owner process: a connection of its own
    (c1, c2) = customers_in(3, 8, 2)
    try:
        epoch_a = owner_a.acquire_partition(3, "owner-a")
        assert epoch_a == 1 and owner_a.leases()[3] == ("owner-a", 1)
        assert owner_a.append(3, [event(1, c1)], epoch_a)[0] is not None
        owner_a.write_snapshot(3, 1, b"a's snapshot", epoch_a)
        assert owner_a.append_actions([_action("a-1", c1)], partition=3, epoch=epoch_a) == 1

        epoch_b = owner_b.acquire_partition(3, "owner-b")
        assert epoch_b == 2 and owner_b.leases()[3] == ("owner-b", 2)

        events_before = rows(path, "SELECT seq, partition_id, customer_id, event_id FROM events ORDER BY seq")
        actions_before = rows(path, "SELECT seq, action_id FROM actions ORDER BY seq")
        # every write A can make is refused, and leaves no trace
        with pytest.raises(PartitionMoved) as moved:
            owner_a.append(3, [event(2, c1), event(1, c2)], epoch_a)
        assert moved.value.partition == 3
        with pytest.raises(PartitionMoved):
            owner_a.write_snapshot(3, 9, b"a's late snapshot", epoch_a)
        with pytest.raises(PartitionMoved):
            owner_a.forget_customer(c1, partition=3, epoch=epoch_a, principal="admin")
        with pytest.raises(PartitionMoved):
            owner_a.append_actions([_action("a-2", c2)], partition=3, epoch=epoch_a)
        assert rows(path, "SELECT seq, partition_id, customer_id, event_id FROM events ORDER BY seq") == events_before
        assert rows(path, "SELECT seq, action_id FROM actions ORDER BY seq") == actions_before
        assert owner_b.latest_snapshot(3) == (1, b"a's snapshot")
        assert owner_b.forgotten_customers() == set() and owner_b.audit_log() == []
        assert [e.event_id for e in owner_b.customer_events(c1)] == [f"{c1}-1"]
        # A's connection is fine after the refusals (each was rolled back): an unfenced read works
        assert [e.event_id for _, e in owner_a.events_since(3, 0)] == [f"{c1}-1"]

        # B, the holder, writes
        assert owner_b.append(3, [event(2, c1), event(1, c2)], epoch_b)[0] is not None
        owner_b.write_snapshot(3, 3, b"b's snapshot", epoch_b)
        assert [e.event_id for _, e in owner_b.events_since(3, 0)] == [f"{c1}-1", f"{c1}-2", f"{c2}-1"]

        # an old epoch cannot give the lease up either; the holder's can, and then writes nothing more
        assert owner_a.release_partition(3, epoch_a) is False
        assert owner_b.leases()[3] == ("owner-b", 2)
        assert owner_b.release_partition(3, epoch_b) is True
        assert owner_b.leases()[3] == (None, 2)
        with pytest.raises(PartitionMoved):
            owner_b.append(3, [event(3, c1)], epoch_b)
        # the next acquire fences both earlier holders; other partitions were never touched
        assert owner_a.acquire_partition(3, "owner-a") == 3
        assert {p: lease for p, lease in owner_a.leases().items() if p != 3} == {p: (None, 0)
                                                                                 for p in range(8) if p != 3}
    finally:
        owner_a.close()
        owner_b.close()


def test_a_lease_fences_only_its_own_partition_and_unknown_partitions_are_refused(tmp_path):
    store = SqliteEventStore(tmp_path / "s.db", partitions=4)
    try:
        epoch = store.acquire_partition(1, "owner-a")
        store.acquire_partition(2, "owner-b")
        store.acquire_partition(2, "owner-c")
        # epoch 1 is current for partition 1, not for partition 2 (whose epoch is 2)
        assert store.append(1, [event(1, "x")], epoch)[0] is not None
        with pytest.raises(PartitionMoved):
            store.append(2, [event(2, "x")], epoch)
        # unfenced (tools, tests) writes still work
        assert store.append(0, [event(3, "x")])[0] is not None
        with pytest.raises(InvalidArgument, match="4 partitions"):
            store.acquire_partition(4, "owner-a")
    finally:
        store.close()


# --- b. fencing through the write path --------------------------------------------------------------

def test_the_write_path_of_an_owner_that_lost_its_partition_is_fenced(tmp_path, synthetic_bundle, writer_of):
    partitions, partition = 4, 2
    path = tmp_path / "s.db"
    early, late, mover = customers_in(partition, partitions, 3)

    def logic_on(store, epoch):
        logic = CustomerShardLogic(partition, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest),
                                   RankingConfig(), store, 10_000, partitions=partitions, epoch=epoch)
        logic.recover()
        return logic

    store_a, store_b = SqliteEventStore(path, partitions), SqliteEventStore(path)
    logic_a = logic_on(store_a, store_a.acquire_partition(partition, "owner-a"))
    fenced_a, fenced_b = [], []
    writer_a = writer_of(logic_a, on_fenced=fenced_a.append)

    async def before_the_move():
        assert await writer_a.submit([event(1, early), event(1, mover)]) == (2, 0, 0)
    run(before_the_move())

    # B takes the partition while A still believes it holds it (paused, partitioned)
    logic_b = logic_on(store_b, store_b.acquire_partition(partition, "owner-b"))
    assert logic_b.epoch == logic_a.epoch + 1
    writer_b = writer_of(logic_b, on_fenced=fenced_b.append)
    assert ids(logic_b) == {early, mover}

    async def after_the_move():
        with pytest.raises(PartitionMoved):
            await writer_a.submit([event(1, late), event(2, mover)])
        assert fenced_a == [partition]
        with pytest.raises(PartitionMoved):
            await writer_a.forget(early, "admin")
        assert await writer_b.submit([event(1, late), event(2, mover)]) == (2, 0, 0)
        assert await writer_b.submit([event(3, mover, "add_to_cart", "i0002")]) == (1, 0, 0)
    run(after_the_move())
    assert fenced_b == []
    assert (asyncio.run(writer_b.health()))["writable"] is True

    stored = [(e.customer_id, e.event_id) for _, e in store_b.events_since(partition, 0)]
    assert stored == [(early, f"{early}-1"), (mover, f"{mover}-1"), (late, f"{late}-1"), (mover, f"{mover}-2"),
                      (mover, f"{mover}-3")]
    assert store_b.forgotten_customers() == set()  # A's erasure was refused as a whole
    # a new owner rebuilding the partition holds exactly what B holds
    fresh = logic_on(SqliteEventStore(path), None)
    assert ids(fresh) == ids(logic_b) == {early, late, mover}
    for customer in (early, late, mover):
        assert fresh.live_state(customer) == logic_b.live_state(customer)
    assert fresh.live_state(mover)["event_count"] == 3


def test_a_fenced_snapshot_and_outbox_write_give_the_partition_up(tmp_path, synthetic_bundle, writer_of):
    """A late snapshot from the old owner would hide what the new one wrote since; a late outbox
    write would send an action twice. Both are refused, and the writer gives the partition up."""
    partitions, partition = 2, 1
    path = tmp_path / "s.db"
    (customer,) = customers_in(partition, partitions, 1)
    store = SqliteEventStore(path, partitions)
    logic = CustomerShardLogic(partition, ModelRuntime(synthetic_bundle.arrays, synthetic_bundle.manifest),
                               RankingConfig(), store, 1, partitions=partitions,
                               epoch=store.acquire_partition(partition, "owner-a"))
    logic.recover()
    fenced = []
    writer = writer_of(logic, on_fenced=fenced.append)

    async def scenario():
        assert await writer.submit([event(1, customer)]) == (1, 0, 0)  # snapshot_every=1: one written
        assert store.latest_snapshot(partition)[0] == logic.last_seq
        taken = SqliteEventStore(path)
        taken.acquire_partition(partition, "owner-b")
        taken.close()
        snapshot = store.latest_snapshot(partition)
        logic.new_actions.append(_action("late-1", customer))
        with pytest.raises(PartitionMoved):
            await writer.hand_over()  # the move's last snapshot
        assert store.latest_snapshot(partition) == snapshot
        assert store.actions_after(0) == []
        assert fenced and set(fenced) == {partition}
    run(scenario())


# --- c. migrating a store written with N fixed shards ------------------------------------------------

LEGACY_SHARDS = 3


def build_legacy_store(path, customers):
    """A store as the releases before partitions left it: the 0001 tables, no alembic_version,
    meta.num_shards, events filed by shard, one snapshot per shard."""
    import sqlalchemy as sa
    from alembic import command

    from actors.schema import _alembic, _locked

    url = f"sqlite:///{path}"
    with _locked(url) as conn:
        command.upgrade(_alembic(conn, LEGACY_SHARDS), "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("INSERT INTO meta (key, value) VALUES ('num_shards', :n)"), {"n": str(LEGACY_SHARDS)})
        insert = sa.text("INSERT INTO events (shard, customer_id, event_id, stored_ms, payload) "
                         "VALUES (:s, :c, :e, 1, :p)")
        for n, customer in enumerate(customers):
            for k in range(2):
                e = event(k, customer, item=f"i000{1 + (n + k) % 5}")
                conn.execute(insert, {"s": partition_for(customer, LEGACY_SHARDS), "c": customer, "e": e.event_id,
                                      "p": orjson.dumps(event_to_dict(e))})
        for shard in range(LEGACY_SHARDS):
            conn.execute(sa.text("INSERT INTO snapshots (shard, seq, created_ms, payload) VALUES (:s, 2, 1, :p)"),
                         {"s": shard, "p": b"an old shard snapshot"})
    return url


def test_a_legacy_store_is_refused_then_migrated_once(tmp_path):
    from actors.schema import HEAD, LegacyLayout, migrate_legacy

    path = tmp_path / "legacy" / "recsys.db"
    customers = [f"cust-{n}" for n in range(40)]
    url = build_legacy_store(path, customers)
    before = rows(path, "SELECT seq, customer_id, event_id, payload FROM events ORDER BY seq")
    assert len(before) == 80

    # opened as it is: refused, with the command that migrates it; nothing is changed
    for opening in (lambda: SqliteEventStore(path), lambda: open_store(url, 8)):
        with pytest.raises(LegacyLayout, match=r"recsys store migrate --store sqlite:///.*recsys\.db"):
            opening()
    assert rows(path, "SELECT COUNT(*) FROM snapshots") == [(LEGACY_SHARDS,)]
    assert "alembic_version" not in {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}

    report = migrate_legacy(url, 8)
    assert report == {"migrated": True, "from_shards": LEGACY_SHARDS, "events": 80, "partitions": 8,
                      "revision": HEAD}
    after = rows(path, "SELECT seq, customer_id, event_id, payload, partition_id FROM events ORDER BY seq")
    # every event kept, with its seq and payload, re-filed under its customer's partition of 8
    assert [r[:4] for r in after] == before
    assert all(r[4] == partition_for(r[1], 8) for r in after)
    assert {r[4] for r in after} == set(range(8))  # the old shard numbers are gone (0..2 only before)
    assert rows(path, "SELECT COUNT(*) FROM snapshots") == [(0,)]  # shards' snapshots mean nothing now
    assert rows(path, "SELECT partition_id, owner, epoch FROM partition_leases ORDER BY partition_id") == [
        (p, None, 0) for p in range(8)]
    assert dict(rows(path, "SELECT key, value FROM meta")) == {"partitions": "8"}

    store = SqliteEventStore(path)
    try:
        assert store.partitions() == 8
        for p in range(8):
            mine = sorted(c for c in customers if partition_for(c, 8) == p)
            assert sorted({e.customer_id for _, e in store.events_since(p, 0)}) == mine
        assert store.latest_snapshot(0) is None
        assert store.acquire_partition(5, "owner-a") == 1
    finally:
        store.close()
    with pytest.raises(InvalidArgument, match="has 8 partitions"):
        SqliteEventStore(path, 16)

    # again: a no-op, the store as it was
    leases = rows(path, "SELECT * FROM partition_leases ORDER BY partition_id")
    assert migrate_legacy(url, 8) == {"migrated": False, "partitions": 8, "revision": HEAD}
    assert rows(path, "SELECT seq, customer_id, event_id, payload, partition_id FROM events ORDER BY seq") == after
    assert rows(path, "SELECT * FROM partition_leases ORDER BY partition_id") == leases


def test_migrate_refuses_a_place_with_no_store(tmp_path):
    from actors.schema import HEAD, migrate_legacy

    with pytest.raises(InvalidArgument, match="no store there to migrate"):
        migrate_legacy(f"sqlite:///{tmp_path / 'nothing.db'}", 8)


def test_a_new_store_needs_no_migration(tmp_path):
    from actors.schema import HEAD, migrate_legacy

    url = f"sqlite:///{tmp_path / 'new.db'}"
    open_store(url, 4).close()
    assert migrate_legacy(url, 4) == {"migrated": False, "partitions": 4, "revision": HEAD}


def test_the_migrate_command(tmp_path, capsys):
    from scripts.cli import main

    path = tmp_path / "recsys.db"
    customers = [f"cust-{n}" for n in range(10)]
    url = build_legacy_store(path, customers)
    assert main(["store", "migrate", "--store", url, "--partitions", "8"]) == 0
    assert f"20 events re-filed from {LEGACY_SHARDS} shards into 8 partitions" in capsys.readouterr().out
    store = SqliteEventStore(path)
    try:
        assert store.partitions() == 8
        assert sum(len(list(store.events_since(p, 0))) for p in range(8)) == 20
    finally:
        store.close()
    assert main(["store", "migrate", "--store", url, "--partitions", "8"]) == 0
    assert "nothing to do" in capsys.readouterr().out


# --- d. the placement's assignment ---------------------------------------------------------------

def owners(numbers):
    return [owner_name(n) for n in numbers]


def assert_balanced(assignment, partitions, live):
    assert sorted(assignment) == list(range(partitions))  # every partition, once
    assert set(assignment.values()) <= set(live)
    counts = collections.Counter(assignment.values())
    per_owner = [counts.get(o, 0) for o in live]
    assert max(per_owner) - min(per_owner) <= 1


def moved(before, after):
    return {p for p in after if before.get(p) != after[p]}


@pytest.mark.parametrize("partitions", [4, 8, 64, 100])
def test_growing_from_two_owners_to_four_moves_only_what_it_must(partitions):
    two = balanced_assignment(partitions, owners([0, 1]), {p: None for p in range(partitions)})
    assert_balanced(two, partitions, owners([0, 1]))
    four = balanced_assignment(partitions, owners([0, 1, 2, 3]), two)
    assert_balanced(four, partitions, owners([0, 1, 2, 3]))
    # the new owners' share is the least that can move, and it all comes off the old ones
    new_share = sum(1 for o in four.values() if o in owners([2, 3]))
    assert len(moved(two, four)) == new_share
    if partitions % 4 == 0:
        assert len(moved(two, four)) == partitions // 2
    # nothing moves when nothing changed
    assert balanced_assignment(partitions, owners([0, 1, 2, 3]), four) == four


@pytest.mark.parametrize("partitions", [8, 64, 65])
def test_shrinking_keeps_the_survivors_partitions_where_they_were(partitions):
    four = balanced_assignment(partitions, owners([0, 1, 2, 3]), {})
    for leaving in ([3], [2, 3], [1], [0, 2]):
        live = [o for o in owners([0, 1, 2, 3]) if o not in owners(leaving)]
        after = balanced_assignment(partitions, live, four)
        assert_balanced(after, partitions, live)
        assert all(after[p] == o for p, o in four.items() if o in live)  # the survivors keep theirs
        assert moved(four, after) == {p for p, o in four.items() if o not in live}


@settings(max_examples=200, deadline=None)
@given(partitions=st.integers(1, 300), live=st.sets(st.integers(0, 20), min_size=1, max_size=12),
       data=st.data())
def test_any_assignment_is_balanced_and_keeps_what_it_can(partitions, live, data):
    names = owners(sorted(live))
    anyone = st.one_of(st.none(), st.sampled_from(owners(range(21))))
    current = {p: data.draw(anyone) for p in range(partitions)}
    after = balanced_assignment(partitions, names, current)
    assert_balanced(after, partitions, names)
    # an owner that stays keeps as many of its partitions as its share allows
    held = collections.Counter(o for o in current.values() if o in names)
    counts = collections.Counter(after.values())
    for o in names:
        kept = sum(1 for p, owner in after.items() if owner == o and current[p] == o)
        assert kept == min(held.get(o, 0), counts[o])


def test_no_owners_no_assignment():
    assert balanced_assignment(8, [], {p: owner_name(0) for p in range(8)}) == {}


# --- e. an owner's moves (OwnerCore, no Ray) -----------------------------------------------------

@pytest.fixture
def owner_cores(tmp_path, new_owner_core):
    """owner_cores(name): an OwnerCore over its own store connection and its own store thread."""
    from actors.owner import OwnerSettings

    url = f"sqlite:///{tmp_path / 'owners.db'}"

    def make(name, partitions=8):
        return new_owner_core(name, OwnerSettings(store_url=url, partitions=partitions))
    return make


def test_a_partition_moves_between_owners_with_its_customers(owner_cores):
    first, second = owner_cores("recsys-owner-0"), owner_cores("recsys-owner-1")
    moving, staying = customers_in(1, 8, 3), customers_in(2, 8, 2)

    async def scenario():
        taken = [await first.acquire(p) for p in (1, 2)]
        assert [t["epoch"] for t in taken] == [1, 1] and (await first.acquire(1))["already"] is True
        results = await first.track({1: [event(n, c, item=f"i000{n + 1}") for c in moving for n in range(3)],
                                     2: [event(0, c) for c in staying]})
        assert results == {1: (9, 0, 0), 2: (2, 0, 0)}
        held_before = {c: first.held[1].logic.live_state(c) for c in moving}
        assert all(state["event_count"] == 3 for state in held_before.values())

        released = await first.release(1)
        assert released["released"] is True and released["held"] is True and released["customers"] == 3
        assert released["snapshot_error"] is None
        assert sorted(first.held) == [2] and first.stats()["moves_out"] == 1
        assert await first.release(1) == {"partition": 1, "held": False}

        took = await second.acquire(1)
        assert took["epoch"] == 2 and took["from_snapshot"] is True and took["replayed"] == 0
        assert {c: second.held[1].logic.live_state(c) for c in moving} == held_before

        # the first owner answers every request for partition 1 with PartitionMoved
        assert isinstance((await first.track({1: [event(9, moving[0])]}))[1], PartitionMoved)
        (answer,) = first.recommend_many([(RecommendQuery(moving[0], "web", 5), NOW)])
        assert isinstance(answer, PartitionMoved) and answer.partition == 1
        with pytest.raises(PartitionMoved):
            await first.forget(moving[0], "admin")
        with pytest.raises(PartitionMoved):
            await first.export(moving[0], "admin")
        # and still serves the partition it kept
        assert (await first.track({2: [event(1, staying[0])]})) == {2: (1, 0, 0)}
        assert not isinstance(first.recommend_many([(RecommendQuery(staying[0], "web", 5), NOW)])[0], Exception)

        # the new owner takes writes for it, and its state goes on from where the first left it
        assert await second.track({1: [event(9, moving[0])]}) == {1: (1, 0, 0)}
        assert second.held[1].logic.live_state(moving[0])["event_count"] == 4
        assert [c for c in moving if second.held[1].logic.live_state(c) != held_before[c]] == [moving[0]]
        with pytest.raises(PartitionMoved):
            second.similar(SimilarQuery("i0001", 5, customer_id=staying[0]))
    run(scenario())
    assert first.store.leases()[1] == ("recsys-owner-1", 2) and first.store.leases()[2] == ("recsys-owner-0", 1)


def test_an_owner_that_was_fenced_gives_the_partition_up(owner_cores):
    """The partition was taken without a release (the placement thought the owner dead): the
    owner's next write is refused by the store, and the owner stops serving that partition."""
    first, second = owner_cores("recsys-owner-0"), owner_cores("recsys-owner-1")
    (customer,) = customers_in(4, 8, 1)

    async def scenario():
        await first.acquire(4)
        assert await first.track({4: [event(1, customer)]}) == {4: (1, 0, 0)}
        await second.acquire(4)  # epoch 2: no release by the first
        # the first owner still thinks it holds 4: its in-memory check passes, the store refuses
        answer = (await first.track({4: [event(2, customer)]}))[4]
        assert isinstance(answer, PartitionMoved)
        assert 4 not in first.held and first.stats()["fenced"] == 1
        assert isinstance((await first.track({4: [event(3, customer)]}))[4], PartitionMoved)
        # nothing of the first owner's got in; the second's does
        assert await second.track({4: [event(2, customer)]}) == {4: (1, 0, 0)}
        assert second.held[4].logic.live_state(customer)["event_count"] == 2
    run(scenario())
    assert [e.event_id for e in second.store.customer_events(customer)] == [f"{customer}-1", f"{customer}-2"]


def test_a_partition_being_released_takes_no_new_requests_and_loses_nothing_acknowledged(owner_cores):
    """From the moment a move starts the old owner answers PartitionMoved (the ingress retries at
    the new owner); what it acknowledged before is in what the new owner rebuilds."""
    first, second = owner_cores("recsys-owner-0"), owner_cores("recsys-owner-1")
    (customer,) = customers_in(6, 8, 1)

    async def scenario():
        await first.acquire(6)
        assert await first.track({6: [event(1, customer)]}) == {6: (1, 0, 0)}
        in_flight = asyncio.ensure_future(first.track({6: [event(2, customer)]}))
        await asyncio.sleep(0)  # its write is queued
        release = asyncio.ensure_future(first.release(6))
        await asyncio.sleep(0)  # the release has begun: it waits for the write, then snapshots
        assert not release.done() and 6 in first.held
        (answer,) = first.recommend_many([(RecommendQuery(customer, "web", 5), NOW)])
        assert isinstance(answer, PartitionMoved)
        assert isinstance((await first.track({6: [event(3, customer)]}))[6], PartitionMoved)
        written = (await in_flight)[6]
        assert (await release)["released"] is True
        await second.acquire(6)
        state = second.held[6].logic.live_state(customer)
        assert state["event_count"] == (2 if written == (1, 0, 0) else 1)
        assert [e.event_id for e in second.store.customer_events(customer)] == [
            f"{customer}-{n}" for n in range(1, state["event_count"] + 1)]
    run(scenario())


# --- f. one transaction for many partitions ------------------------------------------------------

def test_one_append_commits_many_partitions_and_leaves_out_only_a_moved_one(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'many.db'}", 8)
    epochs = {p: store.acquire_partition(p, "recsys-owner-0") for p in range(3)}
    store.acquire_partition(2, "recsys-owner-1")  # partition 2 moved: its old epoch is stale
    batches = [(p, epochs[p], [event(n, c) for n, c in enumerate(customers_in(p, 8, 2, f"m{p}-"))])
               for p in range(3)]
    results = store.append_many(batches)
    assert all(isinstance(seqs, list) and all(s is not None for s in seqs) for seqs in results[:2])
    assert isinstance(results[2], PartitionMoved) and results[2].partition == 2
    stored = rows(tmp_path / "many.db", "SELECT partition_id, count(*) FROM events GROUP BY partition_id")
    assert dict(stored) == {0: 2, 1: 2}
    # the same events again: duplicates, nothing new
    again = store.append_many(batches[:2])
    assert again == [[None, None], [None, None]]
    store.close()


def test_an_owner_commits_its_partitions_batches_together(owner_cores):
    """Concurrent TrackEvents for eight partitions of one owner: fewer transactions than
    partitions, every event acknowledged once and in its partition's log."""
    core = owner_cores("recsys-owner-0")
    commits = []

    async def scenario():
        for p in range(8):
            await core.acquire(p)
        original = core.store.append_many

        def counted(batches):
            commits.append(len(batches))
            return original(batches)
        core.store.append_many = counted
        groups = [{p: [event(n, c)]} for p in range(8) for n, c in enumerate(customers_in(p, 8, 4, f"o{p}-"))]
        answers = await asyncio.gather(*[core.track(g) for g in groups])
        assert all(list(a.values())[0] == (1, 0, 0) for a in answers)
        for p in range(8):
            assert len(core.held[p].logic.customers) == 4
    run(scenario())
    # partitions' batches shared transactions: fewer commits than partitions written
    assert sum(commits) >= 8 and len(commits) < 8, commits


def test_a_full_disk_under_the_shared_transaction_is_named_in_each_partitions_health(owner_cores):
    """The owner's shared transaction fails on a full disk: each partition's caller gets a
    retryable error naming the cause, health says so, and once the disk has room again the retry
    is stored once."""
    import sqlite3

    from engine.errors import Unavailable

    core = owner_cores("recsys-owner-0")
    a, b = customers_in(0, 8, 1, "df0-")[0], customers_in(1, 8, 1, "df1-")[0]

    async def scenario():
        await core.acquire(0)
        await core.acquire(1)
        original = core.store.append_many

        def full(batches):
            raise sqlite3.OperationalError("database or disk is full")
        core.store.append_many = full
        answers = await asyncio.gather(core.track({0: [event(1, a)]}), core.track({1: [event(1, b)]}))
        for answer in answers:
            (error,) = answer.values()
            assert isinstance(error, Unavailable) and "disk is full" in error.message, error
        health = await core.health()
        assert not health["writable"] and "disk is full" in health["write_error"]
        core.store.append_many = original
        again = await asyncio.gather(core.track({0: [event(1, a)]}), core.track({1: [event(1, b)]}))
        assert [list(x.values())[0] for x in again] == [(1, 0, 0), (1, 0, 0)]
        assert (await core.health())["writable"]
    run(scenario())
