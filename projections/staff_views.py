"""Queries of the staff read side (projections/staff.py fills the tables): the monthly attendance ledger that 内业
exports (ATT-13), the discipline ledger (rules.md §9), leave requests, complaints with their SLA state and the
complaints per staff member per month. The ledgers are computed by the pure core's own functions
(services/staff/attendance.py, penalties.py) over the stored rows."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, case, func, select

from projections.staff_tables import attendance_days, complaints, leave_requests, penalties, refusals
from services.core.clock import stored_utc
from services.staff.attendance import AttendanceDay, AttendanceRow, DayStatus, attendance_ledger
from services.staff.penalties import Penalty, PenaltyKind, discipline_ledger
from services.staff.policy import LeaveType


def _day(row: Row[Any]) -> AttendanceDay:
    return AttendanceDay(
        staff_id=row.staff_id,
        day=row.day,
        status=DayStatus(row.status),
        leave_type=None if row.leave_type is None else LeaveType(row.leave_type),
        late=timedelta(milliseconds=row.late_ms),
        early=timedelta(milliseconds=row.early_ms),
        missing_clock_out=row.missing_clock_out,
        evidence=tuple(row.evidence),
    )


def _penalty(row: Row[Any]) -> Penalty:
    return Penalty(
        staff_id=row.staff_id, rule_id=row.rule_id, sanction_id=row.sanction_id, kind=PenaltyKind(row.kind),
        day=row.day, at=stored_utc(row.occurred_at) or datetime.now(UTC), evidence=tuple(row.evidence),
        amount_yuan=row.amount_yuan, suspension_days=row.suspension_days, issued_by_role=row.issued_by_role,
        detail=row.detail,
    )  # fmt: skip


def _penalty_rows(connection: Connection, office_id: str, month: str) -> list[Row[Any]]:
    query = (
        select(penalties)
        .where(penalties.c.office_id == office_id, penalties.c.month == month)
        .order_by(penalties.c.staff_id, penalties.c.day, penalties.c.occurred_at, penalties.c.penalty_id)
    )
    return list(connection.execute(query))


def attendance_rows(connection: Connection, office_id: str, month: str) -> list[AttendanceRow]:
    """ATT-13: the month's 考勤记录表, one row per staff member (days judged so far, attendance sanctions)."""
    days = connection.execute(
        select(attendance_days).where(attendance_days.c.office_id == office_id, attendance_days.c.month == month)
    )
    sanctions = [_penalty(row) for row in _penalty_rows(connection, office_id, month)]
    return attendance_ledger((_day(row) for row in days), sanctions, month)


def discipline(connection: Connection, office_id: str, month: str) -> list[dict[str, Any]]:
    """The discipline ledger of ``month``: per staff member the fine total, counts by kind and every line with its
    rule id and evidence."""
    rows = _penalty_rows(connection, office_id, month)
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault(row.staff_id, []).append(
            {"penalty_id": row.penalty_id, "day": row.day.isoformat(), "rule_id": row.rule_id,
             "sanction_id": row.sanction_id, "kind": row.kind, "label": PenaltyKind(row.kind).label,
             "amount_yuan": row.amount_yuan, "suspension_days": row.suspension_days,
             "issued_by_role": row.issued_by_role, "evidence": list(row.evidence), "detail": row.detail}
        )  # fmt: skip
    ledger = discipline_ledger((_penalty(row) for row in rows), month)
    out = []
    for entry in ledger:
        totals = {f.name: getattr(entry, f.name) for f in fields(entry)}
        out.append({**totals, "fines_by_rule": dict(entry.fines_by_rule), "lines": lines.get(entry.staff_id, [])})
    return out


DISCIPLINE_CSV_COLUMNS = (
    "staff_id", "month", "day", "rule_id", "sanction_id", "kind", "label", "amount_yuan", "suspension_days",
    "issued_by_role", "evidence", "detail",
)  # fmt: skip


def discipline_csv_rows(ledger: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One CSV line per sanction (the header first); evidence ids joined by spaces."""
    out: list[tuple[str, ...]] = [DISCIPLINE_CSV_COLUMNS]
    for entry in ledger:
        for line in entry["lines"]:
            values = {**line, "staff_id": entry["staff_id"], "month": entry["month"],
                      "evidence": " ".join(line["evidence"])}  # fmt: skip
            out.append(tuple("" if values[c] is None else str(values[c]) for c in DISCIPLINE_CSV_COLUMNS))
    return out


def leave_of(connection: Connection, office_id: str, staff_id: str | None, status: str | None) -> list[dict[str, Any]]:
    query = select(leave_requests).where(leave_requests.c.office_id == office_id)
    if staff_id is not None:
        query = query.where(leave_requests.c.staff_id == staff_id)
    if status is not None:
        query = query.where(leave_requests.c.status == status)
    rows = connection.execute(query.order_by(leave_requests.c.updated_at.desc(), leave_requests.c.request_id))
    return [
        {**row._mapping, "revoked_days": list(row.revoked_days or []), "updated_at": stored_utc(row.updated_at)}
        for row in rows
    ]


_DUE = (("CLASSIFY", "classify_due_at"), ("RESOLVE", "resolve_due_at"), ("CALLBACK", "callback_due_at"))
_DONE_AFTER = {"CLASSIFY": "FILED", "RESOLVE": "FORWARDED", "CALLBACK": "RESOLVED"}
_ORDER = ("FILED", "CLASSIFIED", "FORWARDED", "RESOLVED", "CALLED_BACK", "CLOSED")


def _done(stage: str, deadline: str) -> bool:
    if stage == "CLOSED" or (stage == "REJECTED" and deadline == "CLASSIFY"):
        return True
    return stage in _ORDER and _ORDER.index(stage) > _ORDER.index(_DONE_AFTER[deadline])


def _sla(row: dict[str, Any], now: datetime) -> dict[str, str]:
    """Each deadline's state now: met, open (not due yet), overdue (due, not escalated yet) or escalated."""
    escalated = {entry["deadline"] for entry in row["escalations"]}
    out = {}
    for name, column in _DUE:
        due = row[column]
        if due is None:
            continue
        if name in escalated:
            out[name] = "escalated"
        elif _done(row["stage"], name):
            out[name] = "met"
        else:
            out[name] = "overdue" if now > due else "open"
    return out


def complaints_of(connection: Connection, office_id: str, stage: str | None, now: datetime) -> list[dict[str, Any]]:
    query = select(complaints).where(complaints.c.office_id == office_id)
    if stage is not None:
        query = query.where(complaints.c.stage == stage)
    out = []
    for row in connection.execute(query.order_by(complaints.c.filed_at.desc(), complaints.c.complaint_id)):
        item = {key: stored_utc(value) if isinstance(value, datetime) else value for key, value in row._mapping.items()}
        out.append({**item, "sla": _sla(item, now)})
    return out


def complaints_per_staff(connection: Connection, office_id: str, month: str) -> list[dict[str, Any]]:
    """Complaints naming each staff member filed in ``month``: filed and substantiated (CMP-01)."""
    substantiated = func.sum(case((complaints.c.substantiated.is_(True), 1), else_=0))
    rows = connection.execute(
        select(complaints.c.subject_staff, func.count(), substantiated)
        .where(complaints.c.office_id == office_id, complaints.c.filed_month == month)
        .where(complaints.c.subject_staff.is_not(None))
        .group_by(complaints.c.subject_staff)
        .order_by(complaints.c.subject_staff)
    )
    return [{"staff_id": staff, "filed": filed, "substantiated": int(upheld or 0)} for staff, filed, upheld in rows]


def refusals_of(connection: Connection, office_id: str, subject_id: str | None) -> list[dict[str, Any]]:
    query = select(refusals).where(refusals.c.office_id == office_id)
    if subject_id is not None:
        query = query.where(refusals.c.subject_id == subject_id)
    rows = connection.execute(query.order_by(refusals.c.occurred_at, refusals.c.event_id))
    return [{**row._mapping, "occurred_at": stored_utc(row.occurred_at)} for row in rows]


def month_days(month: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM`` (raises ValueError when malformed)."""
    first = date.fromisoformat(f"{month}-01")
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)
