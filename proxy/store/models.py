"""The store's tables (SQLAlchemy 2 declarative; migrations in ``migrations/versions``).

    exchanges                                  feedback
    ---------                                  --------
    response_id  unique, the id the client got  response_id  -> exchanges.response_id
    created_at, model, route, profile,           label: correct | incorrect | unsure
    bundle_id, key_name, request_id              score, gold, comment (hashes without
    decision, returned, action, risk             include_prompt), key_name, created_at
    detectors    every detector's scores/verdict  (every label kept: the last one counts)
    logprobs     the answer's top-k logprob matrix
    samples      the samples' numeric summary
    prompt_sha256, answer_sha256
    prompt, answer, tokens  (only with include_prompt)

JSON columns hold numbers, enumerations and hashes unless ``include_prompt`` is on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NULLABLE_JSON = JSON(none_as_null=True)  # None is SQL NULL, not the JSON text 'null'


class Base(DeclarativeBase):
    pass


class Exchange(Base):
    __tablename__ = "exchanges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(64), unique=True)
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model: Mapped[str] = mapped_column(String(200))
    route: Mapped[str | None] = mapped_column(String(200))
    profile: Mapped[str | None] = mapped_column(String(200))
    bundle_id: Mapped[str | None] = mapped_column(String(200))  # the calibration bundle
    key_name: Mapped[str | None] = mapped_column(String(200))
    decision: Mapped[str | None] = mapped_column(String(16))  # the profile's judgement
    returned: Mapped[str | None] = mapped_column(String(16))  # what the client got
    action: Mapped[str | None] = mapped_column(String(16))
    risk: Mapped[float | None] = mapped_column(Float)
    detectors: Mapped[dict] = mapped_column(JSON)  # name -> status, verdict, risk, scores
    reasons: Mapped[list] = mapped_column(JSON)
    logprobs: Mapped[dict | None] = mapped_column(NULLABLE_JSON)  # {chosen: [T], top: [T][k]}
    samples: Mapped[dict | None] = mapped_column(NULLABLE_JSON)  # what the detectors drew
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    answer_sha256: Mapped[str | None] = mapped_column(String(64))
    prompt: Mapped[list | None] = mapped_column(NULLABLE_JSON)  # include_prompt only
    answer: Mapped[str | None] = mapped_column(Text)  # include_prompt only
    tokens: Mapped[list | None] = mapped_column(NULLABLE_JSON)  # [T][1 + k]; include_prompt


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_response_created", "response_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    label: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    gold: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    key_name: Mapped[str | None] = mapped_column(String(200))
