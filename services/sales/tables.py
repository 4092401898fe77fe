"""Tables of the 销控 decision processor (migration 0002). They are its working memory, written in the
same transaction as its consumed offsets: the facts it emitted per unit (from which a unit's state is
folded), its answer to every command (which the API waits on), and the payment deadlines still running."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

unit_facts = Table(
    "unit_facts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("office_id", String(100), nullable=False),
    Column("unit_id", String(200), nullable=False, index=True),
    Column("event_type", String(100), nullable=False),
    Column("caused_by", String(36), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("avro", LargeBinary, nullable=False),  # the record in Avro binary, current schema of its type
)

unit_decisions = Table(
    "unit_decisions",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("unit_id", String(200), nullable=False),
    Column("command_type", String(50), nullable=False),
    Column("outcome", String(20), nullable=False),  # accepted | rejected
    Column("rule_id", String(20)),
    Column("reason", Text),
    Column("current_holder", String(200)),
    Column("state_after", JSON, nullable=False),
    Column("fact_event_ids", JSON, nullable=False),
    Column("command_recorded_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

unit_deadlines = Table(
    "unit_deadlines",
    metadata,
    Column("unit_id", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("subscription_id", String(200), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False, index=True),
    Column("expiry_sent_at", DateTime(timezone=True)),  # when the timer last put an EXPIRE_DEADLINE on the log
)
