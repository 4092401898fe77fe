"""Tables of the staff decision processor (migration 0006): its working memory, written in the same transaction as
its consumed offsets. Each staff member's and each complaint's state (JSON of services/staff/staff_state.py), the
office calendar (special days, day ends) and the pending timers."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Date, DateTime, MetaData, String, Table

metadata = MetaData()

TZ = DateTime(timezone=True)

staff_states = Table(
    "staff_states",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("staff_id", String(200), primary_key=True),
    Column("state", JSON, nullable=False),  # StaffState.model_dump(mode="json")
    Column("updated_at", TZ, nullable=False),
)

complaint_states = Table(
    "complaint_states",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("complaint_id", String(200), primary_key=True),
    Column("stage", String(20), nullable=False),  # the case's stage, for the complaints-open gauge
    Column("state", JSON, nullable=False),  # ComplaintState.model_dump(mode="json")
    Column("updated_at", TZ, nullable=False),
)

# SpecialDayDeclared (ATT-05) and DayEnded (ATT-01): office-wide, whoever's partition they came on.
office_days = Table(
    "staff_office_days",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("kind", String(30)),
    Column("last_visitor_left_at", TZ),
    Column("evening_meeting_ended_at", TZ),
)

# One pending timer per slot (e.g. "day-end/<staff>", "complaint/<id>"): at ``due_at`` the tick puts the event
# (``event_type`` + ``payload``, id ``timer_id``) on ``topic`` keyed by ``key``; deciding it replaces or clears it.
staff_timers = Table(
    "staff_timers",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("slot", String(300), primary_key=True),
    Column("timer_id", String(36), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("due_at", TZ, nullable=False, index=True),
    Column("sent_at", TZ),  # when the tick last put it on the log
)
