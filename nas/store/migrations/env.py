"""Alembic environment for the hwnas store.

Two ways in: `upgrade_database()` hands over an open connection through
`config.attributes["connection"]` (the normal path, also used by tests); the `alembic` command line
(`alembic -c nas/store/alembic.ini ...`) gives none, and the URL comes from `sqlalchemy.url` or,
when that is empty, from `HWNAS_DATABASE_URL` like the rest of the service.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from nas.store.db import database_url, make_engine
from nas.store.models import Base

config = context.config
target_metadata = Base.metadata

# Only the command line configures logging; a service calling upgrade_database keeps its own.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configured_url() -> str:
    return config.get_main_option("sqlalchemy.url") or database_url()


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    url = _configured_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the given connection, or open one to the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return
    engine = make_engine(_configured_url())
    try:
        with engine.connect() as opened:
            _run_migrations(opened)
            opened.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
