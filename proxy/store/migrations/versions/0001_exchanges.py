"""exchanges: one judged exchange per row

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("route", sa.String(200)),
        sa.Column("profile", sa.String(200)),
        sa.Column("bundle_id", sa.String(200)),
        sa.Column("key_name", sa.String(200)),
        sa.Column("decision", sa.String(16)),
        sa.Column("returned", sa.String(16)),
        sa.Column("action", sa.String(16)),
        sa.Column("risk", sa.Float),
        sa.Column("detectors", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("logprobs", sa.JSON),
        sa.Column("samples", sa.JSON),
        sa.Column("prompt_sha256", sa.String(64), nullable=False),
        sa.Column("answer_sha256", sa.String(64)),
        sa.Column("prompt", sa.JSON),
        sa.Column("answer", sa.Text),
        sa.Column("tokens", sa.JSON),
        sa.UniqueConstraint("response_id", name="uq_exchanges_response_id"),
    )
    op.create_index("ix_exchanges_created_at", "exchanges", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_exchanges_created_at", table_name="exchanges")
    op.drop_table("exchanges")
