"""The store as the first releases made it: events and snapshots filed by one of N fixed shards.

A store written before migrations existed has exactly these tables and no alembic_version: it is
stamped at this revision by `recsys store migrate`, never created by it again.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BLOB = sa.LargeBinary


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("shard", sa.Integer, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("stored_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", BLOB, nullable=False),
        sa.UniqueConstraint("customer_id", "event_id"),
        sqlite_autoincrement=True)
    op.create_index("events_by_shard", "events", ["shard", "seq"])
    op.create_table(
        "snapshots",
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", BLOB, nullable=False))
    op.create_table(
        "forgotten",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("forgotten_ms", sa.BigInteger, nullable=False))
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True)
    op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "actions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.Text, nullable=False, unique=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", BLOB, nullable=False),
        sqlite_autoincrement=True)
    op.create_table(
        "catalog_updates",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("stored_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", BLOB, nullable=False),
        sqlite_autoincrement=True)
    # the audit log is append-only at the database level
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""CREATE OR REPLACE FUNCTION recsys_audit_append_only() RETURNS trigger AS $$
                      BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql""")
        op.execute("""CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
                      FOR EACH ROW EXECUTE FUNCTION recsys_audit_append_only()""")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit
                           BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""")
