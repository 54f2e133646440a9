"""Partitions instead of shards: customers hash to P fixed partitions, each owned in turn by one
owner process under a lease with an epoch (actors/owner.py, actors/placement.py).

- events are filed by partition (a store written with N shards is re-filed: the partition of
  each customer is computed again, with the same hash, modulo P);
- snapshots are per partition; a shard's snapshot means nothing under partitions, so the old
  ones are dropped (the log is the truth: each partition rebuilds from it, and writes a new one);
- partition_leases: one row per partition, the owner holding it (NULL: none) and the epoch that
  every write of that partition checks in its own transaction (fencing);
- meta.partitions = P; meta.num_shards goes.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import context, op

from engine.sharding import partition_for

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    partitions = int(context.config.attributes["partitions"])
    bind = op.get_bind()
    op.drop_index("events_by_shard", table_name="events")
    op.execute("ALTER TABLE events RENAME COLUMN shard TO partition_id")
    customers = [row[0] for row in bind.execute(sa.text("SELECT DISTINCT customer_id FROM events"))]
    refile = sa.text("UPDATE events SET partition_id = :p WHERE customer_id = :c")
    for start in range(0, len(customers), 1000):
        chunk = customers[start:start + 1000]
        bind.execute(refile, [{"p": partition_for(c, partitions), "c": c} for c in chunk])
    op.create_index("events_by_partition", "events", ["partition_id", "seq"])
    op.drop_table("snapshots")
    op.create_table(
        "snapshots",
        sa.Column("partition_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False))
    leases = op.create_table(
        "partition_leases",
        sa.Column("partition_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.Text, nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("granted_ms", sa.BigInteger, nullable=False))
    op.bulk_insert(leases, [{"partition_id": p, "owner": None, "epoch": 0, "granted_ms": 0}
                            for p in range(partitions)])
    bind.execute(sa.text("DELETE FROM meta WHERE key IN ('num_shards', 'partitions')"))
    bind.execute(sa.text("INSERT INTO meta (key, value) VALUES ('partitions', :p)"), {"p": str(partitions)})
