"""Tables of the 销控 read side (migration 0003): the inventory, every unit's fact history, the 销控表, refunds
by stage and the decision audit log. ``projections/sales.py`` fills them; keep both and the migration in step."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

TZ = DateTime(timezone=True)

# The inventory (房源): one row per UnitRegistered unit. A unit belongs to the office that registered it first.
units = Table(
    "units",
    metadata,
    Column("unit_id", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("project_id", String(100), nullable=False),
    Column("project_name", String(200)),
    Column("building", String(100), nullable=False),
    Column("floor", Integer, nullable=False),
    Column("number", String(50), nullable=False),
    Column("layout", String(100)),
    Column("area_sqm", Float),
    Column("list_price_fen", BigInteger),
    Column("registered_at", TZ, nullable=False),  # first registration
    Column("updated_at", TZ, nullable=False),  # last registration (a correction of the attributes)
    Column("event_id", String(36), nullable=False),  # of the last registration
)

# Every domain fact of every unit, in log order per unit (``seq`` = 1, 2, …). ``record`` is the Avro record as
# JSON; ``datetime_paths`` names the values in it that were datetimes, so the record (and with
# services.sales.wire.record_to_fact the fact) is rebuilt exactly. ``office_id`` is the fact's own office.
unit_history = Table(
    "unit_history",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("unit_id", String(200), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("recorded_at", TZ, nullable=False),
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("record", JSON, nullable=False),
    Column("datetime_paths", JSON, nullable=False),
    Index("ix_unit_history_unit_seq", "unit_id", "seq", unique=True),
)

# The 销控表: each unit's state, folded from its whole history with the pure domain ``fold``.
unit_board = Table(
    "unit_board",
    metadata,
    Column("unit_id", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),  # the owning office (see projections/sales.py)
    Column("project_id", String(100)),
    Column("building", String(100)),
    Column("floor", Integer),
    Column("number", String(50)),
    Column("status", String(30), nullable=False),
    Column("customer_id", String(200)),  # the holder, or the claimant of a pending request
    Column("staff_id", String(100)),  # the consultant behind the claim
    Column("confirmed_by", String(100)),  # the manager who did 销控
    Column("subscription_id", String(200)),
    Column("signed_at", TZ),
    Column("payment_deadline_at", TZ),  # only while the SALE-09 clock runs (status subscribed)
    Column("price_fen", BigInteger),
    Column("paid_fen", BigInteger),
    Column("deposit_paid_at", TZ),
    Column("refund_id", String(200)),
    Column("refund_stage", String(30)),
    Column("fact_count", Integer, nullable=False),
    Column("last_event_id", String(36)),
    Column("updated_at", TZ, nullable=False),  # occurred_at of the last fact (or the registration)
)

# Refund applications (退订/退房) by stage: requested → reviewed → submitted → approved | rejected → processed.
# Refund ids are chosen by clients and checked per unit by the decider, so the key includes the unit.
refunds = Table(
    "refunds",
    metadata,
    Column("unit_id", String(200), primary_key=True),
    Column("refund_id", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("subscription_id", String(200), nullable=False),
    Column("customer_id", String(200)),
    Column("kind", String(30), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("reason", Text),
    Column("requested_by", String(100)),
    Column("requested_at", TZ),
    Column("reviewed_by", String(100)),
    Column("reviewed_at", TZ),
    Column("submitted_at", TZ),
    Column("decided_by", String(100)),  # the developer (or the manager turning it down at review)
    Column("decided_at", TZ),
    Column("approved_amount_fen", BigInteger),
    Column("rejection_reason", Text),
    Column("processed_by", String(100)),
    Column("processed_at", TZ),
    Column("refunded_amount_fen", BigInteger),
    Column("updated_at", TZ, nullable=False),
    Column("last_event_id", String(36), nullable=False),
)

# One row per fact: who asked (the actor of the command the fact answers), what was decided, under which rule.
decision_audit = Table(
    "decision_audit",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("unit_id", String(200), nullable=False, index=True),
    Column("command_id", String(36)),  # envelope.causation_id
    Column("event_type", String(100), nullable=False),
    Column("command_type", String(50)),  # for refusals: the refused command
    Column("outcome", String(20), nullable=False),  # accepted | rejected
    Column("rule_id", String(20)),
    Column("reason", Text),
    Column("customer_id", String(200)),
    Column("current_holder", String(200)),
    Column("actor_staff_id", String(100), nullable=False),
    Column("actor_role", String(50), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("recorded_at", TZ, nullable=False),
    Column("partition", Integer, nullable=False),  # with offset: log order among facts of the same moment
    Column("offset", BigInteger, nullable=False),
    Index("ix_decision_audit_office_occurred", "office_id", "occurred_at"),
)

SALES_TABLES = (units, unit_history, unit_board, refunds, decision_audit)
