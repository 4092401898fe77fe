"""Front desk: the nightly call-log reconciliation (CALL-03 / PEN-26 漏登).

``frontdesk_call_logs`` as services/staff/frontdesk_tables.py declares it, spelled out here so that a later change to
the declaration needs its own migration (0005 creates its tables from the declarations; this one does not).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "frontdesk_call_logs",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("call_id", sa.String(200), primary_key=True),
        sa.Column("received_event_id", sa.String(36), nullable=False),
        sa.Column("staff_id", sa.String(100)),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("answered_at", TZ, nullable=False),
        sa.Column("deadline_at", TZ, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("timer_sent_at", TZ),
        sa.Column("missing_event_id", sa.String(36)),
        sa.Column("fine_yuan", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_frontdesk_call_logs_day", "frontdesk_call_logs", ["day"])
    op.create_index("ix_frontdesk_call_logs_deadline_at", "frontdesk_call_logs", ["deadline_at"])


def downgrade() -> None:
    op.drop_index("ix_frontdesk_call_logs_deadline_at", table_name="frontdesk_call_logs")
    op.drop_index("ix_frontdesk_call_logs_day", table_name="frontdesk_call_logs")
    op.drop_table("frontdesk_call_logs")
