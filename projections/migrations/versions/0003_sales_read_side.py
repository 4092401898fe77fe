"""销控 read side: inventory, unit fact history, the 销控表 (unit board), refunds by stage, decision audit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("unit_id", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("project_id", sa.String(100), nullable=False),
        sa.Column("project_name", sa.String(200)),
        sa.Column("building", sa.String(100), nullable=False),
        sa.Column("floor", sa.Integer, nullable=False),
        sa.Column("number", sa.String(50), nullable=False),
        sa.Column("layout", sa.String(100)),
        sa.Column("area_sqm", sa.Float),
        sa.Column("list_price_fen", sa.BigInteger),
        sa.Column("registered_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "unit_history",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("unit_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("datetime_paths", sa.JSON, nullable=False),
    )
    op.create_index("ix_unit_history_unit_seq", "unit_history", ["unit_id", "seq"], unique=True)
    op.create_table(
        "unit_board",
        sa.Column("unit_id", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("project_id", sa.String(100)),
        sa.Column("building", sa.String(100)),
        sa.Column("floor", sa.Integer),
        sa.Column("number", sa.String(50)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("staff_id", sa.String(100)),
        sa.Column("confirmed_by", sa.String(100)),
        sa.Column("subscription_id", sa.String(200)),
        sa.Column("signed_at", TZ),
        sa.Column("payment_deadline_at", TZ),
        sa.Column("price_fen", sa.BigInteger),
        sa.Column("paid_fen", sa.BigInteger),
        sa.Column("deposit_paid_at", TZ),
        sa.Column("refund_id", sa.String(200)),
        sa.Column("refund_stage", sa.String(30)),
        sa.Column("fact_count", sa.Integer, nullable=False),
        sa.Column("last_event_id", sa.String(36)),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "refunds",
        sa.Column("unit_id", sa.String(200), primary_key=True),
        sa.Column("refund_id", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("subscription_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("requested_by", sa.String(100)),
        sa.Column("requested_at", TZ),
        sa.Column("reviewed_by", sa.String(100)),
        sa.Column("reviewed_at", TZ),
        sa.Column("submitted_at", TZ),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("decided_at", TZ),
        sa.Column("approved_amount_fen", sa.BigInteger),
        sa.Column("rejection_reason", sa.Text),
        sa.Column("processed_by", sa.String(100)),
        sa.Column("processed_at", TZ),
        sa.Column("refunded_amount_fen", sa.BigInteger),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_event_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "decision_audit",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("unit_id", sa.String(200), nullable=False, index=True),
        sa.Column("command_id", sa.String(36)),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("command_type", sa.String(50)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("rule_id", sa.String(20)),
        sa.Column("reason", sa.Text),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("current_holder", sa.String(200)),
        sa.Column("actor_staff_id", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(50), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_decision_audit_office_occurred", "decision_audit", ["office_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_decision_audit_office_occurred", "decision_audit")
    op.drop_index("ix_unit_history_unit_seq", "unit_history")
    for table in ("decision_audit", "refunds", "unit_board", "unit_history", "units"):
        op.drop_table(table)
