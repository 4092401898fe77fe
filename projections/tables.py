"""Tables of the read side. Migrations in ``migrations/versions`` create them; keep both in step."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

# Where each processor has got to: the next offset to read, committed in the same transaction as the
# rows that processing produced. This, not Kafka's committed offsets, is what a restart resumes from.
projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("processor", String(100), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Event ids already folded in, so a re-published event (a client retry) is applied once.
processed_events = Table(
    "processed_events",
    metadata,
    Column("processor", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
)

event_register = Table(
    "event_register",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("event_type", String(100), primary_key=True),
    Column("event_count", BigInteger, nullable=False),
    Column("last_event_id", String(36), nullable=False),
    Column("last_occurred_at", DateTime(timezone=True), nullable=False),
    Column("last_recorded_at", DateTime(timezone=True), nullable=False),
    Column("last_topic", String(200), nullable=False),
    Column("last_partition", Integer, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
)

visit_register = Table(
    "visit_register",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("visit_id", String(100), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("project_id", String(100)),
    Column("customer_name", String(200), nullable=False),
    Column("phone", String(50), nullable=False),
    Column("arrived_at", DateTime(timezone=True), nullable=False),
    Column("visit_type", String(50), nullable=False),
    Column("received_by", String(100)),
    Column("details", JSON, nullable=False),  # the remaining payload fields, as sent
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

call_register = Table(
    "call_register",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("call_id", String(100), primary_key=True),
    Column("caller_number", String(50)),
    Column("ring_started_at", DateTime(timezone=True)),
    Column("answered_at", DateTime(timezone=True)),
    Column("answered_by", String(100)),
    Column("ring_count", Integer),
    Column("logged_by", String(100)),
    Column("customer_name", String(200)),
    Column("phone", String(50)),
    Column("wanted_unit_type", String(100)),
    Column("awareness_channel", String(50)),
    Column("caller_class", String(50)),
    Column("visit_invited", Boolean),
    Column("blank_fields", JSON),
    Column("received_event_id", String(36)),
    Column("logged_event_id", String(36)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),  # sha256 of the key; the key itself is never stored
    Column("office_id", String(100), nullable=False, index=True),
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)
