"""feedback: labels posted by response id, every one kept

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("gold", sa.Text),
        sa.Column("comment", sa.Text),
        sa.Column("key_name", sa.String(200)),
    )
    op.create_index("ix_feedback_response_created", "feedback", ["response_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_response_created", table_name="feedback")
    op.drop_table("feedback")
