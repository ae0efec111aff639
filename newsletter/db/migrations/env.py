"""Alembic environment: run by newsletter.db.migrate() with a live connection (no alembic.ini needed)."""

from alembic import context

from newsletter.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    # render_as_batch lets ALTER TABLE work on SQLite too.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
