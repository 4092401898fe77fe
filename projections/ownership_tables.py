"""Tables of the ownership read side (migration 0004), written by the attribution processor in the transaction
that decides (projections/ownership.py). ``customer_owners`` and ``sales_performance`` are a contract other
slices read: change them only with their readers."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

TZ = DateTime(timezone=True)

# The current owner of each customer. expires_at is null while a deal stands (the ownership is frozen, OWN-05).
customer_owners = Table(
    "customer_owners",
    metadata,
    Column("customer_key", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("staff_id", String(100), nullable=False),
    Column("since", TZ, nullable=False),
    Column("expires_at", TZ, index=True),
    Column("basis", String(30), nullable=False),
    Column("rule_id", String(20), nullable=False),
    Column("updated_at", TZ, nullable=False),
)

# 业绩 per consultant and month (COM-06): net of reversals; achievement_rate = credited_amount_fen / target.
sales_performance = Table(
    "sales_performance",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("staff_id", String(100), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("credited_deals", Integer, nullable=False),
    Column("credited_amount_fen", BigInteger, nullable=False),
    Column("target_amount_fen", BigInteger),
    Column("achievement_rate", Float),
)

sales_targets = Table(
    "sales_targets",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("staff_id", String(100), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("target_amount_fen", BigInteger, nullable=False),
    Column("set_by", String(100), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("set_at", TZ, nullable=False),
)

# Every 报备 with its latest verdict (a report can be judged again: a late mention, a new period).
channel_reports = Table(
    "ownership_channel_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("customer_key", String(200), nullable=False, index=True),
    Column("channel_id", String(200), nullable=False),
    Column("agent_id", String(200), nullable=False),
    Column("reported_at", TZ, nullable=False),
    Column("customer_name", String(200), nullable=False),
    Column("phone_masked", String(30), nullable=False),
    Column("status", String(20), nullable=False),  # pending | winning | rejected
    Column("reason", String(40)),  # RejectionReason
    Column("rule_id", String(20)),
    Column("detail", Text),
    Column("updated_at", TZ, nullable=False),
)

# The commission ledger (COM-01…05): one line per credited staff member and one channel line per deal at the
# credit point, and REVERSAL lines after a refund. Amounts in fen; shares as "num/den".
commission_ledger = Table(
    "commission_ledger",
    metadata,
    Column("line_id", String(400), primary_key=True),  # deal/entry/party/party_id
    Column("office_id", String(100), nullable=False, index=True),
    Column("customer_key", String(200), nullable=False),
    Column("deal_id", String(200), nullable=False, index=True),
    Column("party", String(10), nullable=False),  # staff | channel
    Column("party_id", String(200)),
    Column("agent_id", String(200)),
    Column("entry", String(10), nullable=False),  # credit | reversal
    Column("status", String(20)),  # channel: payable | withheld | not_applicable
    Column("share", String(30), nullable=False),
    Column("units", String(30), nullable=False),
    Column("sales_fen", BigInteger, nullable=False),
    Column("commission_fen", BigInteger, nullable=False),
    Column("withheld_fen", BigInteger, nullable=False),
    Column("at", TZ, nullable=False),
    Column("month", String(7), nullable=False, index=True),
    Column("rule_id", String(20), nullable=False),
    Column("basis", String(30), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
)
