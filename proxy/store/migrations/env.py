"""Alembic's environment for the store: run on a connection handed in by
:func:`proxy.store.database.migrate` (``config.attributes["connection"]``)."""

from alembic import context

from proxy.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the store's migrations run through proxy.store.database.migrate")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
