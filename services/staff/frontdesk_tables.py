"""Tables of the front-desk processor (migration 0005), all written in the same transaction as its consumed offsets.

- ``frontdesk_facts``: the rotation facts it emitted per office (each office's 轮序表 state is folded from them).
- ``frontdesk_calls``: the daily call register (来电登记) as judged: rings, fines, callback owner, SMS clock.
- ``frontdesk_sms``: every SmsSent, with the call it was matched to.
- ``frontdesk_visits``: the visit register as routed (电转访): receiver, basis, quota count, owner to notify.
- ``frontdesk_tally``: quota units per staff and day (KPI-07): counted receptions, duty receptions, waivers.
- ``frontdesk_deals``: subscriptions from the 销控 facts, to link deals to visits (KPI-02) and SALE-09 (KPI-10).
- ``frontdesk_call_logs`` (migration 0008): each answered call's 来电登记 deadline and whether it was met (CALL-03 /
  PEN-26 漏登 reconciliation), with the timer's bookkeeping. A table of its own so that 0005, which creates the tables
  above from these declarations, never has to change."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()
TZ = DateTime(timezone=True)

frontdesk_facts = Table(
    "frontdesk_facts",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("office_id", String(100), nullable=False),
    Column("day", Date, nullable=False),  # office-local day of the fact: the fold starts at the last published day
    Column("event_type", String(100), nullable=False),
    Column("caused_by", String(36), nullable=False),
    Column("occurred_at", TZ, nullable=False),
    Column("avro", LargeBinary, nullable=False),
    Index("ix_frontdesk_facts_office_day", "office_id", "day"),
)

frontdesk_calls = Table(
    "frontdesk_calls",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("call_id", String(200), primary_key=True),
    Column("day", Date, index=True),  # office-local day the call rang (or was logged, if the exchange never told)
    Column("ring_started_at", TZ),
    Column("caller_number", String(50)),
    Column("customer_key", String(200), index=True),
    Column("answered_at", TZ),
    Column("answered_by", String(100)),
    Column("rings", Integer),
    Column("answered_in_time", Boolean),  # CALL-01
    Column("ended_at", TZ),
    Column("duration_seconds", Float),
    Column("over_target", Boolean),  # CALL-08
    Column("logged_by", String(100)),
    Column("logged_at", TZ),
    Column("caller_class", String(30)),
    Column("visit_invited", Boolean),
    Column("blank_fields", JSON),
    Column("fine_yuan", Integer, nullable=False, default=0),  # CALL-03 / PEN-26
    Column("capture_gaps", JSON),  # CALL-07
    Column("callback_owner", String(100)),  # CALL-05
    Column("callback_conflict", Boolean),
    Column("sms_required", Boolean),
    Column("sms_deadline_at", TZ, index=True),
    Column("sms_sent_at", TZ),
    Column("sms_state", String(20)),  # services.staff.calls.SmsState
    Column("timer_sent_at", TZ),  # when the SMS timer last put SmsDeadlineReached on the log
    Column("updated_at", TZ, nullable=False),
)

frontdesk_sms = Table(
    "frontdesk_sms",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("staff_id", String(100), nullable=False),
    Column("call_id", String(200)),  # the call it was matched to, if any
    Column("customer_key", String(200)),
    Column("sent_at", TZ, nullable=False),
)

frontdesk_visits = Table(
    "frontdesk_visits",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("visit_id", String(200), primary_key=True),
    Column("day", Date, nullable=False, index=True),
    Column("arrived_at", TZ, nullable=False),
    Column("visit_type", String(30), nullable=False),
    Column("customer_id", String(200)),
    Column("customer_key", String(200), index=True),
    Column("product_category", String(100)),
    Column("receiver", String(100)),
    Column("owner_id", String(100)),
    Column("basis", String(20), nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("owner_to_notify", String(100)),
    Column("routing_rule", String(20), nullable=False),
    Column("reception", String(20), nullable=False),  # started | rejected | none | already
    Column("reception_rule", String(20)),
    Column("blank_fields", JSON, nullable=False),
    Column("fine_yuan", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
)

frontdesk_tally = Table(
    "frontdesk_tally",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("ref_id", String(200), primary_key=True),  # the visit id, or the TurnWaived fact id
    Column("kind", String(20), primary_key=True),  # RECEPTION (counted) | UNCOUNTED (owner, duty, excluded) | WAIVER
    Column("staff_id", String(100), nullable=False),
    Column("day", Date, nullable=False, index=True),
    Column("weight", Integer, nullable=False),  # quota units: 1 a counted reception, 0 an uncounted one, 2 a waiver
    Column("at", TZ, nullable=False),
)

frontdesk_deals = Table(
    "frontdesk_deals",
    metadata,
    Column("office_id", String(100), primary_key=True),  # ids are the office's own: two offices may share one
    Column("subscription_id", String(200), primary_key=True),
    Column("unit_id", String(200)),
    Column("customer_id", String(200)),
    Column("staff_id", String(100)),
    Column("signed_at", TZ),
    Column("paid_at", TZ),  # the first payment, which the 销控 processor accepts only within the deadline
    Column("abandoned_at", TZ),  # SALE-09 PAYMENT_TIMEOUT
)

frontdesk_call_logs = Table(
    "frontdesk_call_logs",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("call_id", String(200), primary_key=True),
    Column("received_event_id", String(36), nullable=False),  # the CallReceived: evidence of the fine
    Column("staff_id", String(100)),  # the answerer, who owes the log (CALL-05)
    Column("day", Date, nullable=False, index=True),  # office-local day the call rang
    Column("answered_at", TZ, nullable=False),
    Column("deadline_at", TZ, nullable=False, index=True),  # frontdesk_call_log.call_log_deadline
    Column("status", String(10), nullable=False),  # PENDING | LOGGED (in time) | MISSING (the 漏登 was decided)
    Column("timer_sent_at", TZ),  # when the timer last put CallLogDeadlineReached on the log
    Column("missing_event_id", String(36)),  # the CallLogMissing fact
    Column("fine_yuan", Integer, nullable=False, default=0),
    Column("updated_at", TZ, nullable=False),
)
