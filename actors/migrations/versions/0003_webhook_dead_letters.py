"""Webhook dead letters: actions a webhook could not take after every attempt.

One row per (webhook, action): the action as it was sent, the last error, how many attempts were
made. A customer's rows are erased with them (SqlEventStore.forget_customer). Each webhook's
position in the outbox is a meta row (``webhook_cursor:<name>``), which needs no table.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_dead_letters",
        sa.Column("webhook", sa.Text, primary_key=True),
        sa.Column("action_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False))
    op.create_index("dead_letters_by_customer", "webhook_dead_letters", ["customer_id"])


def downgrade() -> None:
    op.drop_table("webhook_dead_letters")
