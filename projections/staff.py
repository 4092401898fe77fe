"""The staff read side: judged attendance days, leave requests, complaint cases and refusals from
``anchang.staff.facts``, and the discipline ledger from every ``PenaltyIssued`` on ``anchang.discipline`` (whoever
issued it: the staff processor, the front desk's 漏登 fines, a manager's recorded sanction).

Each projection keeps the last word per row in log order; the runner drops events it has seen. The queries the
API serves are in projections/staff_views.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from projections.base import ConsumedEvent, Projection, upsert
from projections.staff_tables import attendance_days, complaints, leave_requests, penalties, refusals
from services.staff.localtime import local_day, month_of
from services.staff.policy import DEFAULT_STAFF_POLICY

DISCIPLINE_TOPIC = "anchang.discipline"
FACTS_TOPIC = "anchang.staff.facts"


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _local_month(moment: datetime) -> str:
    # The read-models processor knows no office policy: months are those of the handbook's default timezone.
    return month_of(local_day(moment, DEFAULT_STAFF_POLICY.timezone))


def _last_per_key(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per key, the last in log order (a batch may hold several facts about one row)."""
    return list({tuple(row[k] for k in keys): row for row in rows}.values())


class AttendanceDays:
    """The last AttendanceDayJudged of each (office, staff, day): the attendance ledger's input (ATT-13)."""

    tables = (attendance_days,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        rows = [
            {"office_id": e.office_id, "staff_id": r["staff_id"], "day": r["day"], "month": month_of(r["day"]),
             "status": r["status"], "leave_type": r["leave_type"], "late_ms": r["late_ms"], "early_ms": r["early_ms"],
             "missing_clock_out": r["missing_clock_out"], "day_end_at": _utc(r["day_end_at"]),
             "evidence": list(r["evidence_event_ids"]), "event_id": e.event_id}
            for e in events if e.event_type == "AttendanceDayJudged" for r in [e.record]
        ]  # fmt: skip
        upsert(connection, attendance_days, _last_per_key(rows, ("office_id", "staff_id", "day")),
               keys=("office_id", "staff_id", "day"))  # fmt: skip


class DisciplineLedger:
    """Every PenaltyIssued, once (its id is the sanction's identity, services/staff/penalty_wire.py)."""

    tables = (penalties,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        rows = [
            {"penalty_id": r["penalty_id"], "office_id": e.office_id, "staff_id": r["staff_id"],
             "month": month_of(r["day"]), "day": r["day"], "rule_id": r["rule_id"], "sanction_id": r["sanction_id"],
             "kind": r["kind"], "amount_yuan": r["amount_yuan"], "suspension_days": r["suspension_days"],
             "issued_by_role": r["issued_by_role"], "evidence": list(r["evidence_event_ids"]), "detail": r["detail"],
             "occurred_at": _utc(e.occurred_at)}
            for e in events if e.event_type == "PenaltyIssued" for r in [e.record]
        ]  # fmt: skip
        upsert(connection, penalties, _last_per_key(rows, ("penalty_id",)), keys=("penalty_id",))


class LeaveRequests:
    """Each leave request with its latest decision (LeaveDecided), its reclassification (ATT-09) or the days a
    blackout declared later took back (LeaveRevoked, ATT-05: REVOKED once no day is left)."""

    tables = (leave_requests,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        for e in events:
            r = e.record
            if e.event_type == "LeaveDecided":
                row = {"office_id": e.office_id, "request_id": r["request_id"], "staff_id": r["staff_id"],
                       "leave_type": r["leave_type"], "days": [d.isoformat() for d in r["days"]],
                       "status": r["status"], "rule_id": r["rule_id"], "reason": r["reason"], "counts_as": None,
                       "revoked_days": [], "updated_at": _utc(e.occurred_at)}  # fmt: skip
                upsert(connection, leave_requests, [row], keys=("office_id", "request_id"))
            elif e.event_type == "SickLeaveReclassified":
                connection.execute(
                    update(leave_requests)
                    .where(leave_requests.c.office_id == e.office_id, leave_requests.c.request_id == r["request_id"])
                    .values(status="RECLASSIFIED", rule_id="ATT-09", counts_as=r["reclassified_as"],
                            reason="no medical certificate by the end of the first day back",
                            updated_at=_utc(e.occurred_at))
                )  # fmt: skip
            elif e.event_type == "LeaveRevoked":
                # The fact carries every revoked day and what is left: no read needed, and a copy changes nothing.
                values: dict[str, Any] = {
                    "revoked_days": [d.isoformat() for d in r["revoked_days"]], "rule_id": r["rule_id"],
                    "reason": r["reason"], "updated_at": _utc(e.occurred_at),
                }  # fmt: skip
                if not r["remaining_days"]:
                    values["status"] = "REVOKED"
                connection.execute(
                    update(leave_requests)
                    .where(leave_requests.c.office_id == e.office_id, leave_requests.c.request_id == r["request_id"])
                    .values(**values)
                )


class ComplaintCases:
    """Each complaint case: stage, SLA deadlines and escalations (CMP-02/08/09)."""

    tables = (complaints,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        for e in events:
            if e.event_type == "ComplaintStageChanged":
                self._stage(connection, e)
            elif e.event_type == "ComplaintEscalated":
                self._escalated(connection, e)

    def _current(self, connection: Connection, office_id: str, complaint_id: str) -> dict[str, Any] | None:
        row = connection.execute(
            select(complaints).where(complaints.c.office_id == office_id, complaints.c.complaint_id == complaint_id)
        ).first()
        return None if row is None else dict(row._mapping)

    def _stage(self, connection: Connection, e: ConsumedEvent) -> None:
        r = e.record
        current = self._current(connection, e.office_id, r["complaint_id"])
        filed_at = e.occurred_at if current is None else current["filed_at"]
        row = {"office_id": e.office_id, "complaint_id": r["complaint_id"], "stage": r["stage"],
               "category": r["category"], "subject_staff": r["subject_staff"], "assigned_role": r["assigned_role"],
               "substantiated": r["substantiated"], "filed_at": _utc(filed_at),
               "filed_month": _local_month(e.occurred_at) if current is None else current["filed_month"],
               "classify_due_at": _utc(r["classify_due_at"]), "resolve_due_at": _utc(r["resolve_due_at"]),
               "callback_due_at": _utc(r["callback_due_at"]),
               "escalations": [] if current is None else current["escalations"],
               "updated_at": _utc(e.occurred_at)}  # fmt: skip
        upsert(connection, complaints, [row], keys=("office_id", "complaint_id"))

    def _escalated(self, connection: Connection, e: ConsumedEvent) -> None:
        r = e.record
        current = self._current(connection, e.office_id, r["complaint_id"])
        if current is None:
            return
        entry = {"deadline": r["deadline"], "due_at": r["due_at"].astimezone(UTC).isoformat(),
                 "rule_id": r["rule_id"], "escalate_to": r["escalate_to"],
                 "escalated_at": e.occurred_at.astimezone(UTC).isoformat()}  # fmt: skip
        connection.execute(
            update(complaints)
            .where(complaints.c.office_id == e.office_id, complaints.c.complaint_id == r["complaint_id"])
            .values(escalations=[*current["escalations"], entry])
        )


class Refusals:
    """StaffInputRefused and ComplaintStepRefused: what was refused, under which rule."""

    tables = (refusals,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        rows = []
        for e in events:
            r = e.record
            if e.event_type == "StaffInputRefused":
                subject, refused_type = r["staff_id"], r["refused_event_type"]
            elif e.event_type == "ComplaintStepRefused":
                subject, refused_type = r["complaint_id"], "complaint step"
            else:
                continue
            rows.append({"event_id": e.event_id, "office_id": e.office_id, "subject_id": subject,
                         "refused_event_id": r["refused_event_id"], "refused_event_type": refused_type,
                         "rule_id": r["rule_id"], "reason": r["reason"],
                         "occurred_at": _utc(e.occurred_at)})  # fmt: skip
        upsert(connection, refusals, rows, keys=("event_id",))


def staff_projections() -> list[Projection]:
    return [AttendanceDays(), DisciplineLedger(), LeaveRequests(), ComplaintCases(), Refusals()]
