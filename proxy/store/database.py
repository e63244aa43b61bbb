"""Opening the store's database: the URL, the engine, and the schema migrations.

    store.url / store.path                      engine URL
    ----------------------                      ----------
    (none)                                      sqlite+aiosqlite:///<beside the audit log>
    path: data/exchanges.sqlite3                sqlite+aiosqlite:///data/exchanges.sqlite3
    url: postgresql://u:p@db:5432/hallgate      postgresql+asyncpg://u:p@db:5432/hallgate

The schema is Alembic's (``migrations/``): at start the gateway upgrades it to the head
revision (``migrate: auto``) or refuses to start when it is not there (``check``); a
database stamped by a newer gateway than this one is always refused.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:  # the writer process imports this module without the gateway's config
    from proxy.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "exchanges.sqlite3"


class StoreError(RuntimeError):
    """The store cannot be opened as configured (the message says what to do)."""


def database_url(settings: Settings) -> str:
    """The async SQLAlchemy URL of the configured store."""
    store = settings.store
    if store.url:
        url = make_url(store.url)
        driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                  "sqlite": "sqlite+aiosqlite"}.get(url.drivername, url.drivername)
        return url.set(drivername=driver).render_as_string(hide_password=False)
    if store.path:
        path = Path(store.path)
    elif settings.audit.path:
        path = Path(settings.audit.path).parent / SQLITE_FILE
    else:
        path = Path(SQLITE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def display_url(url: str) -> str:
    """The URL for logs and messages: no password."""
    return make_url(url).render_as_string(hide_password=True)


def encode(value) -> bytes:
    """JSON for the JSON columns: orjson (a 256-token logprob matrix is 5,000 floats; NaN
    and infinities become null), the standard library for what orjson refuses (integers
    beyond 64 bits in a client's message)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, default=str).encode()


def dumps(value) -> str:
    """The engine's JSON serializer: ``bytes`` are JSON the writer encoded already (as
    :func:`encode`; no JSON value is bytes), anything else is encoded here."""
    return (value if isinstance(value, bytes) else encode(value)).decode()


def create_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_pre_ping=True, json_serializer=dumps)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # WAL: a killed process leaves the file consistent (committed transactions
            # stay, the one in flight is rolled back) and readers never block the writer
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()
    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision_of(sync_connection) -> str | None:
    return MigrationContext.configure(sync_connection).get_current_revision()


def _upgrade(sync_connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = sync_connection
    command.upgrade(config, revision)


async def migrate(engine: AsyncEngine, mode: str = "auto", revision: str = "head") -> str:
    """Bring the schema to ``revision`` (``auto``) or check that it is at the head
    (``check``); the revision it is at afterwards. Raises StoreError with what to do."""
    scripts = ScriptDirectory.from_config(alembic_config())
    known = {s.revision for s in scripts.walk_revisions()}
    head = scripts.get_current_head()
    where = engine.url.render_as_string(hide_password=True)
    async with engine.begin() as conn:
        current = await conn.run_sync(_revision_of)
        if current is not None and current not in known:
            raise StoreError(f"store {where}: its schema is at revision {current}, which this "
                             f"gateway does not know (a newer gateway wrote it); this one "
                             f"needs {head}. Run the newer gateway, or point store.url "
                             f"elsewhere.")
        if mode == "check":
            if current != head:
                raise StoreError(f"store {where}: its schema is at revision {current or 'none'}"
                                 f", this gateway needs {head}. Set store.migrate: auto to "
                                 f"upgrade it at start.")
            return current
        await conn.run_sync(_upgrade, revision)
        return await conn.run_sync(_revision_of)


async def open_database(settings: Settings) -> AsyncEngine:
    """The engine of the configured store, its schema migrated (or checked); StoreError
    when the database cannot be reached in time or its schema does not fit."""
    url = database_url(settings)
    engine = create_engine(url)
    try:
        await asyncio.wait_for(migrate(engine, settings.store.migrate),
                               settings.store.connect_timeout_s)
    except StoreError:
        await engine.dispose()
        raise
    except (TimeoutError, OSError, Exception) as exc:
        await engine.dispose()
        raise StoreError(f"store {display_url(url)}: cannot open it "
                         f"({type(exc).__name__}: {exc})") from exc
    return engine
