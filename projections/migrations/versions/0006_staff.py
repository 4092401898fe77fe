"""Staff: attendance, leave, complaints, discipline (issue 5).

The staff decision processor's working memory (services/staff/staff_tables.py) and the staff read side
(projections/staff_tables.py). Keep the three in step.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
TABLES = (
    "staff_states", "complaint_states", "staff_office_days", "staff_timers", "staff_attendance_days",
    "staff_penalties", "staff_leave_requests", "staff_complaints", "staff_refusals",
)  # fmt: skip


def upgrade() -> None:
    # The processor's working memory.
    op.create_table(
        "staff_states",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("staff_id", sa.String(200), primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "complaint_states",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("complaint_id", sa.String(200), primary_key=True),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "staff_office_days",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("kind", sa.String(30)),
        sa.Column("last_visitor_left_at", TZ),
        sa.Column("evening_meeting_ended_at", TZ),
    )
    op.create_table(
        "staff_timers",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("slot", sa.String(300), primary_key=True),
        sa.Column("timer_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("due_at", TZ, nullable=False, index=True),
        sa.Column("sent_at", TZ),
    )
    # The read side.
    op.create_table(
        "staff_attendance_days",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("staff_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("leave_type", sa.String(20)),
        sa.Column("late_ms", sa.BigInteger, nullable=False),
        sa.Column("early_ms", sa.BigInteger, nullable=False),
        sa.Column("missing_clock_out", sa.Boolean, nullable=False),
        sa.Column("day_end_at", TZ),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "staff_penalties",
        sa.Column("penalty_id", sa.String(36), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("staff_id", sa.String(200), nullable=False),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("rule_id", sa.String(30), nullable=False),
        sa.Column("sanction_id", sa.String(30)),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("amount_yuan", sa.Integer),
        sa.Column("suspension_days", sa.Integer),
        sa.Column("issued_by_role", sa.String(50), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
    )
    op.create_table(
        "staff_leave_requests",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("staff_id", sa.String(200), nullable=False),
        sa.Column("leave_type", sa.String(20), nullable=False),
        sa.Column("days", sa.JSON, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("rule_id", sa.String(30)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("counts_as", sa.String(20)),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "staff_complaints",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("complaint_id", sa.String(200), primary_key=True),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("subject_staff", sa.String(200)),
        sa.Column("assigned_role", sa.String(50), nullable=False),
        sa.Column("substantiated", sa.Boolean),
        sa.Column("filed_at", TZ, nullable=False),
        sa.Column("filed_month", sa.String(7), nullable=False),
        sa.Column("classify_due_at", TZ),
        sa.Column("resolve_due_at", TZ),
        sa.Column("callback_due_at", TZ),
        sa.Column("escalations", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "staff_refusals",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("refused_event_id", sa.String(36), nullable=False),
        sa.Column("refused_event_type", sa.String(100), nullable=False),
        sa.Column("rule_id", sa.String(30), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
