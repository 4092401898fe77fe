"""Customer ownership, channel 报备 and commission ledger (issue 4): the attribution processor's memory
(services/ownership/tables.py) and the ownership read side (projections/ownership_tables.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
TABLES = (
    "ownership_facts",
    "ownership_customers",
    "ownership_subscriptions",
    "ownership_decisions",
    "ownership_timers",
    "ownership_barred_agents",
    "customer_owners",
    "sales_performance",
    "sales_targets",
    "ownership_channel_reports",
    "commission_ledger",
)


def upgrade() -> None:
    op.create_table(
        "ownership_facts",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("customer_key", sa.String(200), nullable=False, index=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("caused_by", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(20)),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
    )
    op.create_table(
        "ownership_customers",
        sa.Column("customer_key", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("phone_masked", sa.String(30)),
        sa.Column("dispute_open", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "ownership_subscriptions",
        sa.Column("subscription_id", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("customer_key", sa.String(200), nullable=False, index=True),
        sa.Column("unit_id", sa.String(200), nullable=False),
        sa.Column("staff_id", sa.String(100), nullable=False),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("signed_at", TZ, nullable=False),
        sa.Column("deposit_paid_at", TZ),
        sa.Column("contracted_at", TZ),
        sa.Column("refunded_at", TZ),
    )
    op.create_table(
        "ownership_decisions",
        sa.Column("input_id", sa.String(64), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("customer_key", sa.String(200)),
        sa.Column("input_type", sa.String(60), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("rule_id", sa.String(20)),
        sa.Column("reason", sa.Text),
        sa.Column("fact_event_ids", sa.JSON, nullable=False),
        sa.Column("decided_at", TZ, nullable=False),
    )
    op.create_table(
        "ownership_timers",
        sa.Column("customer_key", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False),
        sa.Column("expires_at", TZ, nullable=False, index=True),
        sa.Column("expiry_sent_at", TZ),
    )
    op.create_table(
        "ownership_barred_agents",
        sa.Column("project_id", sa.String(100), primary_key=True),
        sa.Column("agent_id", sa.String(200), primary_key=True),
        sa.Column("barred_at", TZ, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "customer_owners",
        sa.Column("customer_key", sa.String(200), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("staff_id", sa.String(100), nullable=False),
        sa.Column("since", TZ, nullable=False),
        sa.Column("expires_at", TZ, index=True),
        sa.Column("basis", sa.String(30), nullable=False),
        sa.Column("rule_id", sa.String(20), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "sales_performance",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("staff_id", sa.String(100), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("credited_deals", sa.Integer, nullable=False),
        sa.Column("credited_amount_fen", sa.BigInteger, nullable=False),
        sa.Column("target_amount_fen", sa.BigInteger),
        sa.Column("achievement_rate", sa.Float),
    )
    op.create_table(
        "sales_targets",
        sa.Column("office_id", sa.String(100), primary_key=True),
        sa.Column("staff_id", sa.String(100), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("target_amount_fen", sa.BigInteger, nullable=False),
        sa.Column("set_by", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("set_at", TZ, nullable=False),
    )
    op.create_table(
        "ownership_channel_reports",
        sa.Column("report_id", sa.String(64), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("customer_key", sa.String(200), nullable=False, index=True),
        sa.Column("channel_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("reported_at", TZ, nullable=False),
        sa.Column("customer_name", sa.String(200), nullable=False),
        sa.Column("phone_masked", sa.String(30), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40)),
        sa.Column("rule_id", sa.String(20)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "commission_ledger",
        sa.Column("line_id", sa.String(400), primary_key=True),
        sa.Column("office_id", sa.String(100), nullable=False, index=True),
        sa.Column("customer_key", sa.String(200), nullable=False),
        sa.Column("deal_id", sa.String(200), nullable=False, index=True),
        sa.Column("party", sa.String(10), nullable=False),
        sa.Column("party_id", sa.String(200)),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("entry", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("share", sa.String(30), nullable=False),
        sa.Column("units", sa.String(30), nullable=False),
        sa.Column("sales_fen", sa.BigInteger, nullable=False),
        sa.Column("commission_fen", sa.BigInteger, nullable=False),
        sa.Column("withheld_fen", sa.BigInteger, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("rule_id", sa.String(20), nullable=False),
        sa.Column("basis", sa.String(30), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
