"""The placement: which owner process holds which partition, and how many owners there are.

One named actor decides, the store enforces: an owner takes a partition by bumping its lease
epoch in the store (actors/store.py), and every write of that partition checks the epoch in its
own transaction, so two owners that both believe they hold a partition cannot both commit (the
fencing-token pattern). The placement only ever moves a partition when its current owner has
given it back, or is dead; it never needs to be right about an owner's liveness for safety, only
for progress.

What it does, every ``control_interval_s``:

1. asks every owner for its load (CPU seconds per second); an owner that does not answer because
   it died (its node removed, SIGKILL) is dropped, and its partitions are taken by the others
   under a new epoch, rebuilt from snapshot + log;
2. runs the scaling policy (engine/scaling.py, a pure function) on the loads, and scales the tier
   to its answer: new owners are placed on the nodes with the fewest owners (not on drained
   nodes), then partitions move to them; a shrinking tier moves the partitions off the owners it
   retires before stopping them;
3. keeps the partitions balanced (owners differ by at most one partition).

A move: the old owner stops taking requests for the partition, commits what is queued, writes a
snapshot and releases the lease; the new owner takes it (epoch + 1) and rebuilds it. Requests
that arrive meanwhile are answered PartitionMoved and the ingress sends them again once the
routes show the new owner (gateway/routing.py), so a client sees no error.

The placement keeps nothing that the store and Ray do not also know: restarted (max_restarts), it
rebuilds its view from the leases and the named owners.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.names import NAMESPACE, OWNER_PREFIX, owner_name
from actors.owner import OwnerSettings, PartitionOwner
from actors.store import open_store
from engine.errors import InvalidArgument
from engine.scaling import PolicyState, ScalingConfig, decide

log = logging.getLogger(__name__)

# at most this many partitions move at once (each move is a snapshot write and a rebuild)
CONCURRENT_MOVES = 4
LOAD_TIMEOUT_S = 3.0
MOVE_TIMEOUT_S = 60.0
DEAD = (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError)
# an owner that is unavailable (not known dead) or does not answer this many control steps in a
# row is given up: stopped, and its partitions taken by the others under a new epoch
STRIKES = 3


@dataclass(frozen=True)
class PlacementSettings:
    owner: OwnerSettings
    scaling: ScalingConfig = ScalingConfig()
    control_interval_s: float = 1.0
    # False: the owner count changes only by scale_to (an operator, a test); dead owners are
    # still replaced and partitions still rebalanced
    autoscale: bool = True
    owner_actor_options: dict = field(default_factory=dict)


def balanced_assignment(partitions: int, owners: list[str], current: dict[int, str | None]) -> dict[int, str]:
    """Each owner gets P // n or P // n + 1 partitions, moving as few as possible: partitions stay
    where they are while their owner is under its quota; the rest go to the owners with room."""
    if not owners:
        return {}
    base, extra = divmod(partitions, len(owners))
    # the +1s go first to the owners that hold the most now (a balanced assignment stays put)
    held = collections.Counter(o for o in current.values() if o in owners)
    ranked = sorted(owners, key=lambda o: (-held.get(o, 0), _number(o)))
    quota = {o: base + (1 if i < extra else 0) for i, o in enumerate(ranked)}
    kept: dict[int, str] = {}
    count = collections.Counter()
    loose = []
    for p in range(partitions):
        o = current.get(p)
        if o in quota and count[o] < quota[o]:
            kept[p] = o
            count[o] += 1
        else:
            loose.append(p)
    room = [o for o in sorted(quota, key=_number) for _ in range(quota[o] - count[o])]
    for p, o in zip(loose, room):
        kept[p] = o
    return kept


def _number(name: str) -> int:
    return int(name[len(OWNER_PREFIX):]) if name.startswith(OWNER_PREFIX) else 0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Placement:
    def __init__(self, settings: PlacementSettings):
        self.settings = settings
        self.partitions = settings.owner.partitions
        self.owners: dict[str, Any] = {}
        self.owner_nodes: dict[str, str] = {}
        self.assignment: dict[int, str | None] = {p: None for p in range(self.partitions)}
        # the routes' version: only ever grows, also across a restart of this actor (it starts
        # from the clock), so an ingress never keeps older routes than the ones it was sent
        self.version = time.time_ns() // 1000
        self.next_number = 0
        self.policy = PolicyState()
        self.drained: set[str] = set()
        self.history: collections.deque = collections.deque(maxlen=500)
        # the tier's size changes and lost owners, kept apart from the (many) moves
        self.scalings: collections.deque = collections.deque(maxlen=500)
        self.loads: dict[str, dict] = {}
        self.strikes: collections.Counter = collections.Counter()
        self.target = settings.scaling.min_owners
        self._lock: asyncio.Lock | None = None
        self._control: asyncio.Task | None = None
        if ray.get_runtime_context().was_current_actor_reconstructed:
            self._adopt()

    def _adopt(self) -> None:
        """After a restart: the owners named in the store's leases that are still alive, and the
        partitions they hold; the rest are assigned at the next control step."""
        store = open_store(self.settings.owner.store_url)
        try:
            leases = store.leases()
        finally:
            store.close()
        for p, (name, _) in leases.items():
            if name is None:
                continue
            if name not in self.owners:
                try:
                    self.owners[name] = ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:
                    continue
            self.assignment[p] = name
            self.next_number = max(self.next_number, _number(name) + 1)
        self.version += 1
        self.target = self.settings.scaling.clamp(len(self.owners))
        self._note("adopted", owners=sorted(self.owners))

    def _note(self, what: str, **detail) -> None:
        entry = {"ts": round(time.time(), 3), "event": what, **detail}
        self.history.append(entry)
        if what in ("scale", "owner_lost", "drain", "owner_started"):
            self.scalings.append(entry)
        log.info("placement: %s %s", what, detail)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _ensure_control(self) -> None:
        if self._control is None or self._control.done():
            self._control = asyncio.create_task(self._control_forever())

    # -- what the ingress and the registry ask ----------------------------------------------------------
    async def routes(self) -> tuple[int, list[str | None]]:
        """(version, the owner's name per partition; None while a partition has none)."""
        self._ensure_control()
        return self.version, [self.assignment[p] for p in range(self.partitions)]

    async def owner_names(self) -> list[str]:
        return sorted(self.owners, key=_number)

    async def status(self) -> dict[str, Any]:
        counts = collections.Counter(o for o in self.assignment.values() if o)
        return {"partitions": self.partitions, "owners": len(self.owners), "target": self.target,
                "next_owner": owner_name(self.next_number), "assignment": dict(self.assignment),
                "version": self.version, "unassigned": sum(1 for o in self.assignment.values() if o is None),
                "per_owner": {o: counts.get(o, 0) for o in sorted(self.owners, key=_number)},
                "nodes": {o: self.owner_nodes.get(o) for o in self.owners}, "drained_nodes": sorted(self.drained),
                "loads": {o: round(v.get("cpu", 0.0), 4) for o, v in self.loads.items()},
                "history": list(self.history)[-50:], "scalings": list(self.scalings)}

    # -- starting and scaling ------------------------------------------------------------------------
    async def start(self, owners: int | None = None) -> dict[str, Any]:
        """Start the tier with ``owners`` (default: min_owners) and give out every partition."""
        async with self._guard():
            n = self.settings.scaling.clamp(owners or self.settings.scaling.min_owners)
            self.target = n
            await self._add_owners(n - len(self.owners))
            await self._rebalance()
        self._ensure_control()
        return await self.status()

    async def scale_to(self, owners: int, reason: str = "operator") -> dict[str, Any]:
        """Run ``owners`` owner processes (within min..max): start new ones and move partitions
        to them, or move partitions off the newest ones and stop those."""
        if not isinstance(owners, int) or owners < 1:
            raise InvalidArgument("owners: must be an integer >= 1")
        async with self._guard():
            await self._scale_locked(self.settings.scaling.clamp(owners), reason)
        return await self.status()

    async def _scale_locked(self, n: int, reason: str) -> None:
        current = len(self.owners)
        self.target = n
        if n == current:
            return
        self._note("scale", frm=current, to=n, reason=reason)
        if n > current:
            await self._add_owners(n - current)
            await self._rebalance()
        else:
            retiring = self._retiring(current - n)
            await self._rebalance(exclude=set(retiring))
            for name in retiring:
                if any(o == name for o in self.assignment.values()):
                    continue  # a move off it failed: keep it until the next step
                handle = self.owners.pop(name)
                self.owner_nodes.pop(name, None)
                self.loads.pop(name, None)
                ray.kill(handle, no_restart=True)
            self.version += 1

    def _retiring(self, count: int) -> list[str]:
        """Which owners a shrinking tier stops: one at a time from the node with the most owners
        (the newest there first), so the ones left stay spread across nodes."""
        nodes = {o: self.owner_nodes.get(o, "") for o in self.owners}
        chosen: list[str] = []
        for _ in range(count):
            left = [o for o in nodes if o not in chosen]
            per_node = collections.Counter(nodes[o] for o in left)
            chosen.append(max(left, key=lambda o: (per_node[nodes[o]], _number(o))))
        return chosen

    async def drain_node(self, node_id: str) -> dict[str, Any]:
        """Move every partition off the owners on ``node_id`` and stop them; no owner is placed
        there again. Owners elsewhere replace them (min_owners, the policy)."""
        async with self._guard():
            self.drained.add(node_id)
            leaving = {o for o, node in self.owner_nodes.items() if node == node_id}
            self._note("drain", node=node_id, owners=sorted(leaving))
            keep = len(self.owners)
            await self._add_owners(len(leaving))
            await self._rebalance(exclude=leaving)
            for name in leaving:
                if not any(o == name for o in self.assignment.values()):
                    ray.kill(self.owners.pop(name), no_restart=True)
                    self.owner_nodes.pop(name, None)
                    self.loads.pop(name, None)
            await self._scale_locked(self.settings.scaling.clamp(keep), "drain")
            self.version += 1
        return await self.status()

    def _pick_node(self, pending: list[str]) -> str | None:
        """The alive, not drained node with the fewest owners (those being started, ``pending``,
        included), among the nodes that have the custom resources the owners ask for: owners
        spread across nodes."""
        counts = collections.Counter(list(self.owner_nodes.values()) + pending)
        wanted = set((self.settings.owner_actor_options.get("resources") or {}))
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in self.drained
                 and wanted <= set(n.get("Resources") or {})]
        if not nodes:
            return None
        return min(nodes, key=lambda n: (counts.get(n, 0), n))

    def _start_owner(self, name: str, node: str | None):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = dict(self.settings.owner_actor_options)
        if node is not None and "scheduling_strategy" not in options:
            # on that node, or fail at once (then it is started wherever Ray puts it)
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False, _fail_on_unavailable=True)
        # detached: an owner must not die with the placement that started it (Ray kills an actor's
        # children with it), so a restarted placement adopts the running owners; stop_backend and
        # the placement's own retire / replace paths are what stop owners
        return PartitionOwner.options(name=name, namespace=NAMESPACE, lifetime="detached",
                                      **options).remote(name, self.settings.owner)

    async def _add_owners(self, count: int) -> None:
        started, pending = [], []
        for _ in range(max(count, 0)):
            name = owner_name(self.next_number)
            self.next_number += 1
            node = self._pick_node(pending)
            pending.append(node or "")
            started.append((name, self._start_owner(name, node), node))
        for name, handle, node in started:
            for attempt in range(2):
                try:
                    await asyncio.wait_for(handle.ping.remote(), MOVE_TIMEOUT_S)
                    break
                except Exception as exc:  # noqa: BLE001 - an owner that cannot start there
                    log.warning("placement: owner %s did not start on %s: %s", name, node, exc)
                    ray.kill(handle, no_restart=True)
                    handle = None
                    if attempt == 0 and node is not None:
                        await self._name_free(name)
                        node = None
                        handle = self._start_owner(name, None)
            if handle is None:
                continue  # the next control step tries again
            self.owners[name] = handle
            self.owner_nodes[name] = node or ""
            self._note("owner_started", owner=name, node=node)

    @staticmethod
    async def _name_free(name: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                return
            await asyncio.sleep(0.05)

    async def _rebalance(self, exclude: set[str] = frozenset()) -> None:
        """Move partitions so each owner (but ``exclude``) holds P//n or P//n + 1 of them."""
        live = [o for o in self.owners if o not in exclude]
        target = balanced_assignment(self.partitions, live, self.assignment)
        moves = [(p, self.assignment[p], o) for p, o in target.items() if self.assignment[p] != o]
        if not moves:
            return
        gate = asyncio.Semaphore(CONCURRENT_MOVES)
        started = time.perf_counter()
        results = await asyncio.gather(*[self._move(p, src, dst, gate) for p, src, dst in moves])
        self._note("moved", partitions=sum(results), planned=len(moves),
                   seconds=round(time.perf_counter() - started, 3))

    async def _move(self, partition: int, src: str | None, dst: str, gate: asyncio.Semaphore) -> bool:
        async with gate:
            if src is not None and src in self.owners:
                try:
                    await asyncio.wait_for(self.owners[src].release.remote(partition), MOVE_TIMEOUT_S)
                except DEAD:
                    pass  # the old owner is gone: the new epoch fences anything it left behind
                except Exception as exc:  # noqa: BLE001 - the store away, say: leave it where it is
                    log.warning("placement: %s could not release partition %d: %s", src, partition, exc)
                    return False
            self.assignment[partition] = None
            self.version += 1
            try:
                await asyncio.wait_for(self.owners[dst].acquire.remote([partition]), MOVE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - unassigned now: the next control step gives it out
                log.warning("placement: %s could not take partition %d: %s", dst, partition, exc)
                return False
            self.assignment[partition] = dst
            self.version += 1
            return True

    # -- the control loop ---------------------------------------------------------------------------
    async def _control_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.control_interval_s)
            try:
                async with self._guard():
                    await self._control_step()
            except Exception:  # noqa: BLE001 - one failed step is retried at the next
                log.exception("placement: control step failed")

    async def _control_step(self) -> None:
        names = list(self.owners)
        answers = await asyncio.gather(*[asyncio.wait_for(self.owners[o].load.remote(), LOAD_TIMEOUT_S)
                                         for o in names], return_exceptions=True)
        dead = []
        for name, answer in zip(names, answers):
            if isinstance(answer, dict):
                self.strikes.pop(name, None)
                self.loads[name] = answer
                self.owner_nodes[name] = answer.get("node_id") or self.owner_nodes.get(name, "")
                continue
            if isinstance(answer, ray.exceptions.ActorUnavailableError) or isinstance(answer, asyncio.TimeoutError):
                self.strikes[name] += 1
                if self.strikes[name] < STRIKES:
                    continue
            elif not isinstance(answer, DEAD):
                continue
            dead.append(name)
        for name in dead:
            self.strikes.pop(name, None)
            handle = self.owners.pop(name, None)
            if handle is not None:
                ray.kill(handle, no_restart=True)  # if it is only unreachable, it must not come back
            self.owner_nodes.pop(name, None)
            self.loads.pop(name, None)
            for p, o in self.assignment.items():
                if o == name:
                    self.assignment[p] = None
            self.version += 1
            self._note("owner_lost", owner=name)
        current = len(self.owners)
        target = self.target
        if self.settings.autoscale:
            cpu = [self.loads[o]["cpu"] for o in self.owners if o in self.loads]
            target, self.policy = decide(cpu, max(current, 1), time.monotonic(), self.policy, self.settings.scaling)
        target = self.settings.scaling.clamp(target)
        if target != current:
            await self._scale_locked(target, "policy" if self.settings.autoscale else "replace")
        # partitions without an owner (a dead one's), and any imbalance
        await self._rebalance()

