"""Working memory of the attribution processor (migration 0004), written in the same transaction as its consumed
offsets: every fact it decided per customer (folded to rebuild a customer's state; raw phones stay here, never on
Kafka), a lock row per customer, the 认购 it learnt from 销控, its answer to every input, the running OWN-05
expiry timers and the project blocklist of barred channel agents (OWN-15)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

TZ = DateTime(timezone=True)

ownership_facts = Table(
    "ownership_facts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("office_id", String(100), nullable=False),
    Column("customer_key", String(200), nullable=False, index=True),
    Column("event_type", String(100), nullable=False),
    Column("caused_by", String(64), nullable=False),
    Column("rule_id", String(20)),
    Column("occurred_at", TZ, nullable=False),
    Column("body", JSON, nullable=False),  # wire.fact_to_json: the whole fact, raw phones included
)

# One row per customer: the row the processor locks (SELECT … FOR UPDATE on PostgreSQL) so two instances on
# different partitions never decide the same customer at once; also the registry of known customer keys.
ownership_customers = Table(
    "ownership_customers",
    metadata,
    Column("customer_key", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("phone_masked", String(30)),
    Column("dispute_open", Boolean, nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
)

# 认购 seen on anchang.units: the 销控 customer_id is the ownership customer key (docs/ownership-policy.md).
ownership_subscriptions = Table(
    "ownership_subscriptions",
    metadata,
    Column("subscription_id", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("customer_key", String(200), nullable=False, index=True),
    Column("unit_id", String(200), nullable=False),
    Column("staff_id", String(100), nullable=False),
    Column("price_fen", BigInteger, nullable=False),
    Column("signed_at", TZ, nullable=False),
    Column("deposit_paid_at", TZ),  # the payment that stopped the SALE-09 clock: the deal counts from here
    Column("contracted_at", TZ),
    Column("refunded_at", TZ),
)

ownership_decisions = Table(
    "ownership_decisions",
    metadata,
    Column("input_id", String(64), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("customer_key", String(200)),
    Column("input_type", String(60), nullable=False),  # command type, or the consumed event type
    Column("outcome", String(20), nullable=False),  # accepted | rejected | skipped
    Column("rule_id", String(20)),
    Column("reason", Text),
    Column("fact_event_ids", JSON, nullable=False),
    Column("decided_at", TZ, nullable=False),
)

ownership_timers = Table(
    "ownership_timers",
    metadata,
    Column("customer_key", String(200), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("expires_at", TZ, nullable=False, index=True),
    Column("expiry_sent_at", TZ),  # when the timer last put an EXPIRE_OWNERSHIP on the log
)

barred_agents = Table(
    "ownership_barred_agents",
    metadata,
    Column("project_id", String(100), primary_key=True),
    Column("agent_id", String(200), primary_key=True),
    Column("barred_at", TZ, nullable=False),
    Column("event_id", String(36), nullable=False),
)
