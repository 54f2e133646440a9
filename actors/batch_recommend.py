"""Batch recommendations for campaigns (`recsys batch-recommend`, issue 20 item 5).

The same ranking as online, by the same code in the same place: each customer's recommendations come
from the owner of their partition (``recommend_many``, what the ingress calls), over their live state,
with the serving model, the served configuration, the business rules and the personalisation consent
(a customer who withdrew it gets the non-personal list, as online). What a campaign needs besides:
each customer's marketing consent now (``--consented-only`` leaves out those without it).

The work is Ray tasks across the cluster: the customer list is cut into chunks, at most ``workers``
in flight; a task groups its chunk by owner (the placement's routes), calls each owner once, and sends
again what a partition move bounced (PartitionMoved), after reading the routes again. The owners do
the ranking, so the tier's size bounds the rate, not the number of tasks.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import ray

from actors.names import NAMESPACE, find, find_placement
from engine.errors import InvalidArgument, PartitionMoved, Unavailable
from engine.queries import RecommendQuery
from engine.validation import require_id
from engine.sharding import partition_for

# strategy, experiment_id, arm: how the customer's list was made (their recommendation experiment arm, as online)
COLUMNS = ("customer_id", "rank", "item_id", "score", "reasons", "personalized", "marketing_consent",
           "model_version", "strategy", "experiment_id", "arm", "error")
MOVE_RETRIES = 8


@dataclass(frozen=True)
class BatchSpec:
    k: int = 10
    channel: str = "email"
    now_ms: int = 0  # 0: each owner's now, as online


def _routes() -> list[str | None]:
    return ray.get(find_placement().routes.remote())[1]


def _ask_owners(customers: Sequence[str], spec: BatchSpec, routes: list[str | None]) -> tuple[dict, list[str]]:
    """{customer: (Recommendations, marketing consent)} for what the owners answered, and the
    customers to send again (their partition moved, or had no owner for the moment)."""
    by_owner: dict[str, list[str]] = {}
    again = []
    for customer in customers:
        owner = routes[partition_for(customer, len(routes))]
        if owner is None:
            again.append(customer)
        else:
            by_owner.setdefault(owner, []).append(customer)
    calls = []
    for owner, ids in by_owner.items():
        try:
            handle = find(owner)
        except ValueError:  # gone since the routes were read
            again.extend(ids)
            continue
        queries = [(RecommendQuery(customer_id=c, channel=spec.channel, k=spec.k), spec.now_ms) for c in ids]
        # not remembered for attribution: a campaign's lists would push the online ones out of the owners' memory
        calls.append((ids, handle.recommend_many.remote(queries, False), handle.marketing_consents.remote(ids)))
    answered = {}
    for ids, ranked, consents in calls:
        try:
            ranked, consents = ray.get([ranked, consents])
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            again.extend(ids)
            continue
        except Exception as exc:  # noqa: BLE001 - the owner failed this call: these customers' rows say so
            for customer in ids:
                answered[customer] = (exc, exc)
            continue
        for customer, result, consent in zip(ids, ranked, consents):
            if isinstance(result, PartitionMoved) or isinstance(consent, PartitionMoved):
                again.append(customer)
            else:
                answered[customer] = (result, consent)
    return answered, again


@ray.remote(num_cpus=0)
def rank_chunk(customers: list[str], spec: BatchSpec) -> list[tuple]:
    """The rows of ``customers`` (COLUMNS), asking each one's owner; moves are retried."""
    answered: dict = {}
    pending = list(customers)
    for attempt in range(MOVE_RETRIES):
        got, pending = _ask_owners(pending, spec, _routes())
        answered.update(got)
        if not pending:
            break
        time.sleep(0.05 * 2 ** attempt)
    rows = []
    for customer in customers:
        if customer not in answered:
            rows.append((customer, 0, "", None, "", None, None, "", "", "", "", "its partition is moving: try again"))
            continue
        result, consent = answered[customer]
        if isinstance(result, Exception) or isinstance(consent, Exception):
            failed = result if isinstance(result, Exception) else consent
            message = failed.message if isinstance(failed, InvalidArgument) else "internal error (see the owner's log)"
            rows.append((customer, 0, "", None, "", None, None, "", "", "", "", message))
            continue
        consent = bool(consent)
        for rank, item in enumerate(result.items, 1):
            rows.append((customer, rank, item.item_id, round(float(item.score), 6), ";".join(item.reasons),
                         result.personalized, consent, result.model_version, result.strategy, result.experiment_id,
                         result.arm, ""))
        if not result.items:
            rows.append((customer, 0, "", None, ";".join(result.reasons), result.personalized, consent,
                         result.model_version, result.strategy, result.experiment_id, result.arm, ""))
    return rows


def audience(segment: str | None, now_ms: int = 0) -> list[str]:
    """Every customer the service knows (trained or live), in ``segment`` when given, from each owner;
    asked again while a partition is moving (every partition must be answered for, once)."""
    now_ms = now_ms or int(time.time() * 1000)
    for attempt in range(MOVE_RETRIES):
        routes = _routes()
        owners = sorted({name for name in routes if name})
        try:
            answers = ray.get([find(name).audience.remote(segment, now_ms) for name in owners])
        except (ValueError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            answers = []
        covered = [p for partitions, _ in answers for p in partitions]
        if sorted(covered) == list(range(len(routes))):
            return sorted({customer for _, part in answers for customer in part})
        time.sleep(0.05 * 2 ** attempt)
    raise Unavailable("partitions are moving: the audience could not be read whole; try again")


def run(customers: Sequence[str], spec: BatchSpec, write: Callable[[list[tuple]], None], *, workers: int = 4,
        chunk: int = 500, progress: bool = True) -> dict:
    """Rank ``customers`` in chunks over Ray tasks (at most ``workers`` at once); ``write`` gets each
    chunk's rows, in the order the chunks finish. Returns counts."""
    from tqdm.auto import tqdm

    if workers < 1 or chunk < 1:
        raise InvalidArgument("workers and chunk must be >= 1")
    chunks = [list(customers[i:i + chunk]) for i in range(0, len(customers), chunk)]
    started = time.perf_counter()
    in_flight: dict = {}
    rows_written = errors = 0
    bar = tqdm(total=len(customers), unit="customer", disable=not progress, mininterval=0.5)
    queue = list(reversed(chunks))
    while queue or in_flight:
        while queue and len(in_flight) < workers:
            part = queue.pop()
            in_flight[rank_chunk.remote(part, spec)] = len(part)
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            rows = ray.get(ref)
            write(rows)
            rows_written += len(rows)
            errors += sum(1 for row in rows if row[-1])
            bar.update(in_flight.pop(ref))
    bar.close()
    seconds = time.perf_counter() - started
    return {"customers": len(customers), "rows": rows_written, "errors": errors, "seconds": round(seconds, 2),
            "customers_per_second": round(len(customers) / seconds, 1) if seconds > 0 else None}


class RowWriter:
    """CSV (``.csv``) or Parquet (``.parquet``) by the output's suffix, written chunk by chunk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in (".csv", ".parquet"):
            raise InvalidArgument("--output: a .csv or .parquet file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = None
        if self.kind == ".csv":
            self._file = open(self.path, "w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(COLUMNS)

    def __call__(self, rows: list[tuple]) -> None:
        if self.kind == ".csv":
            self._csv.writerows(rows)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("customer_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                            ("score", pa.float64()), ("reasons", pa.string()), ("personalized", pa.bool_()),
                            ("marketing_consent", pa.bool_()), ("model_version", pa.string()), ("strategy", pa.string()),
                            ("experiment_id", pa.string()), ("arm", pa.string()), ("error", pa.string())])
        table = pa.Table.from_pylist([dict(zip(COLUMNS, row)) for row in rows], schema=schema)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self.kind == ".csv":
            self._file.close()
        elif self._parquet is not None:
            self._parquet.close()


def read_customers(path: str | Path) -> list[str]:
    """One id per line, or a CSV with a ``customer_id`` column; blank lines and repeats dropped."""
    lines = Path(path).read_text().splitlines()
    if lines and "customer_id" in [c.strip() for c in lines[0].split(",")]:
        column = [c.strip() for c in lines[0].split(",")].index("customer_id")
        ids = [row[column].strip() for row in csv.reader(lines[1:]) if len(row) > column]
    else:
        ids = [line.strip() for line in lines]
    ids = list(dict.fromkeys(i for i in ids if i))
    for n, customer in enumerate(ids):
        require_id(customer, f"{path}: customer {n + 1}")  # the API's rule for an id, with its message
    return ids


def connect(address: str | None) -> None:
    if not ray.is_initialized():
        ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)


__all__: Iterable[str] = ("BatchSpec", "run", "audience", "RowWriter", "read_customers", "connect", "COLUMNS")
