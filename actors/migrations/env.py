"""Alembic's entry point for the store's migrations (actors/schema.py runs them in-process, on a
connection it opened and locked; there is no alembic.ini)."""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
