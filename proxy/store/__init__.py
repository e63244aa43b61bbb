"""The store of judged exchanges: what a refit of the gate learns from.

    gatekeeper (PolicySession._record) --offer--> ExchangeStore.framed --feed--> writer
                                                       process (its own) --> database:
                                                                 exchanges, feedback
    POST /v1/feedback (proxy/feedback.py) --add_feedback-----------------------^

    ids.py       the response ids the gateway mints (unique per response)
    models.py    the tables (SQLAlchemy 2)
    records.py   a judged exchange -> a row (pure; no text without include_prompt)
    database.py  URL, engine, Alembic migrations at start
    writer.py    the bounded queue of frames, the feed to the writer process,
                 retention
    writer_process.py  frames -> rows -> INSERT, in a process of its own

SQLite (aiosqlite) by default, a file beside the audit log; PostgreSQL (asyncpg) with
``store.url: postgresql://...`` when several replicas share one store.

Nothing is imported here: the request path needs only ``ids`` and ``records``, and
SQLAlchemy and Alembic load with ``database``/``writer`` when the store is on.
"""
