"""Alembic environment: runs migrations on the URL that projections.db passes in."""

from alembic import context
from sqlalchemy import pool

from projections.db import make_engine

url = context.config.get_main_option("sqlalchemy.url")
assert url, "projections.db.alembic_config sets sqlalchemy.url"

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
