"""销控 decision processor: facts per unit, decisions per command, running payment deadlines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "unit_facts",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("unit_id", sa.String(200), nullable=False, index=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("caused_by", sa.String(36), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("avro", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "unit_decisions",
        sa.Column("command_id", sa.String(36), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("unit_id", sa.String(200), nullable=False),
        sa.Column("command_type", sa.String(50), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("rule_id", sa.String(20)),
        sa.Column("reason", sa.Text),
        sa.Column("current_holder", sa.String(200)),
        sa.Column("state_after", sa.JSON, nullable=False),
        sa.Column("fact_event_ids", sa.JSON, nullable=False),
        sa.Column("command_recorded_at", TZ, nullable=False),
        sa.Column("decided_at", TZ, nullable=False),
    )
    op.create_table(
        "unit_deadlines",
        sa.Column("unit_id", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("subscription_id", sa.String(200), nullable=False),
        sa.Column("deadline_at", TZ, nullable=False, index=True),
        sa.Column("expiry_sent_at", TZ),
    )


def downgrade() -> None:
    for table in ("unit_deadlines", "unit_decisions", "unit_facts"):
        op.drop_table(table)
