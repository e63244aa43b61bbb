"""The store of judged exchanges: what a refit of the gate learns from.

    gates (PolicySession._record) --offer--> ExchangeStore.queue --drain--> database
                                                                   exchanges, feedback
    POST /v1/feedback (proxy/feedback.py) --add_feedback-----------------------^

    ids.py       the response ids the gateway mints (unique per response)
    models.py    the tables (SQLAlchemy 2)
    records.py   a judged exchange -> a row (pure; no text without include_prompt)
    database.py  URL, engine, Alembic migrations at start
    writer.py    the bounded queue, its background writer, retention

SQLite (aiosqlite) by default, a file beside the audit log; PostgreSQL (asyncpg) with
``store.url: postgresql://...`` when several replicas share one store.
"""

from proxy.store.database import StoreError, migrate, open_database
from proxy.store.ids import canonical_response_id, minted_at, new_response_id, responses_id
from proxy.store.writer import ExchangeStore, open_store

__all__ = ["ExchangeStore", "StoreError", "canonical_response_id", "migrate", "minted_at",
           "new_response_id", "open_database", "open_store", "responses_id"]
