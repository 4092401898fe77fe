"""Spine: processor offsets, seen event ids, event/visit/call registers, office API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projection_offsets",
        sa.Column("processor", sa.String(100), primary_key=True),
        sa.Column("topic", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("processor", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "event_register",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("event_type", sa.String(100), primary_key=True),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("last_event_id", sa.String(36), nullable=False),
        sa.Column("last_occurred_at", TZ, nullable=False),
        sa.Column("last_recorded_at", TZ, nullable=False),
        sa.Column("last_topic", sa.String(200), nullable=False),
        sa.Column("last_partition", sa.Integer, nullable=False),
        sa.Column("last_offset", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "visit_register",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("visit_id", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(100)),
        sa.Column("customer_name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(50), nullable=False),
        sa.Column("arrived_at", TZ, nullable=False),
        sa.Column("visit_type", sa.String(50), nullable=False),
        sa.Column("received_by", sa.String(100)),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
    )
    op.create_table(
        "call_register",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("call_id", sa.String(100), primary_key=True),
        sa.Column("caller_number", sa.String(50)),
        sa.Column("ring_started_at", TZ),
        sa.Column("answered_at", TZ),
        sa.Column("answered_by", sa.String(100)),
        sa.Column("ring_count", sa.Integer),
        sa.Column("logged_by", sa.String(100)),
        sa.Column("customer_name", sa.String(200)),
        sa.Column("phone", sa.String(50)),
        sa.Column("wanted_unit_type", sa.String(100)),
        sa.Column("awareness_channel", sa.String(50)),
        sa.Column("caller_class", sa.String(50)),
        sa.Column("visit_invited", sa.Boolean),
        sa.Column("blank_fields", sa.JSON),
        sa.Column("received_event_id", sa.String(36)),
        sa.Column("logged_event_id", sa.String(36)),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ),
    )


def downgrade() -> None:
    for table in (
        "api_keys",
        "call_register",
        "visit_register",
        "event_register",
        "processed_events",
        "projection_offsets",
    ):
        op.drop_table(table)
