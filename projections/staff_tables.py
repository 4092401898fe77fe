"""Tables of the staff read side (migration 0006), filled by projections/staff.py from ``anchang.staff.facts`` and
``anchang.discipline``: judged attendance days, every sanction, leave requests, complaint cases, refusals."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

TZ = DateTime(timezone=True)

# The last judgement of each (staff, day) (AttendanceDayJudged; a reclassified sick day is judged again).
attendance_days = Table(
    "staff_attendance_days",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("staff_id", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("month", String(7), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("leave_type", String(20)),
    Column("late_ms", BigInteger, nullable=False),
    Column("early_ms", BigInteger, nullable=False),
    Column("missing_clock_out", Boolean, nullable=False),
    Column("day_end_at", TZ),
    Column("evidence", JSON, nullable=False),
    Column("event_id", String(36), nullable=False),
)

# Every PenaltyIssued, whoever issued it (the discipline ledger, rules.md §9).
penalties = Table(
    "staff_penalties",
    metadata,
    Column("penalty_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False),
    Column("staff_id", String(200), nullable=False),
    Column("month", String(7), nullable=False, index=True),
    Column("day", Date, nullable=False),
    Column("rule_id", String(30), nullable=False),
    Column("sanction_id", String(30)),
    Column("kind", String(30), nullable=False),
    Column("amount_yuan", Integer),
    Column("suspension_days", Integer),
    Column("issued_by_role", String(50), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("detail", Text, nullable=False),
    Column("occurred_at", TZ, nullable=False),
)

leave_requests = Table(
    "staff_leave_requests",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("request_id", String(200), primary_key=True),
    Column("staff_id", String(200), nullable=False),
    Column("leave_type", String(20), nullable=False),
    Column("days", JSON, nullable=False),  # ["YYYY-MM-DD", …]
    Column("status", String(30), nullable=False),  # REFUSED | AWAITING_APPROVAL | GRANTED | RECLASSIFIED | REVOKED
    Column("rule_id", String(30)),
    Column("reason", Text, nullable=False),
    Column("counts_as", String(20)),  # the type the days count as after a reclassification (ATT-09)
    # Days a later blackout declaration took back (LeaveRevoked, ATT-05; migration 0007). NULL on rows written
    # before 0007: read as none. The status is REVOKED once no day is left, GRANTED while some are.
    Column("revoked_days", JSON),
    Column("updated_at", TZ, nullable=False),
)

complaints = Table(
    "staff_complaints",
    metadata,
    Column("office_id", String(100), primary_key=True),
    Column("complaint_id", String(200), primary_key=True),
    Column("stage", String(20), nullable=False),
    Column("category", String(30), nullable=False),
    Column("subject_staff", String(200)),
    Column("assigned_role", String(50), nullable=False),
    Column("substantiated", Boolean),
    Column("filed_at", TZ, nullable=False),
    Column("filed_month", String(7), nullable=False),
    Column("classify_due_at", TZ),
    Column("resolve_due_at", TZ),
    Column("callback_due_at", TZ),
    Column("escalations", JSON, nullable=False),  # [{deadline, due_at, rule_id, escalate_to}]
    Column("updated_at", TZ, nullable=False),
)

refusals = Table(
    "staff_refusals",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("office_id", String(100), nullable=False, index=True),
    Column("subject_id", String(200), nullable=False),  # staff or complaint id
    Column("refused_event_id", String(36), nullable=False),
    Column("refused_event_type", String(100), nullable=False),
    Column("rule_id", String(30), nullable=False),
    Column("reason", Text, nullable=False),
    Column("occurred_at", TZ, nullable=False),
)
