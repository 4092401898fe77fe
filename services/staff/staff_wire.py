"""Between the Avro records of ``anchang.staff`` / ``anchang.complaints`` and the staff processor's pure step:
records → inputs (services/staff/staff_decide.py), decided facts → ``anchang.staff.facts`` records, timers → the
timer events the processor puts on its own input topics.

Which instant an input counts at: a clock device's time for ClockedIn/ClockedOut and PremisesLeft's ``left_at``
(the moment it happened); ``recorded_at`` (when Anchang accepted it) for requests, approvals and certificates, so
nobody can backdate a leave request past 07:30 or an approval past the first day of leave."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from services.staff import complaints as c
from services.staff import staff_decide as sd
from services.staff.penalties import PenaltyKind
from services.staff.policy import DayKind, LeaveType
from services.staff.staff_state import Fact, Timer

STAFF_TOPIC = "anchang.staff"
COMPLAINTS_TOPIC = "anchang.complaints"
FACTS_TOPIC = "anchang.staff.facts"
OFFICE_EVENT_TYPES = frozenset({"SpecialDayDeclared", "DayEnded"})
COMPLAINT_EVENT_TYPES = frozenset({"ComplaintFiled", "ComplaintResolved", "ComplaintStepRecorded", "ComplaintTimerDue"})
# Fixed namespaces: ids must be the same on every machine and every run.
FACT_NAMESPACE = uuid.UUID("3c0f8a7e-51d2-4b9a-9e3f-2d6b7c1a8e54")
TIMER_NAMESPACE = uuid.UUID("a4e2d9b1-7c35-4f08-b6a1-e09c3f5d7b26")


class BadInput(ValueError):
    """A record that lacks or garbles what its type needs."""


def fact_event_id(cause_id: str, index: int) -> str:
    """The id of the ``index``-th fact or penalty-free fact decided from ``cause_id``: the same on every replay."""
    return str(uuid.uuid5(FACT_NAMESPACE, f"{cause_id}/{index}"))


def timer_event_id(timer: Timer, office_id: str) -> str:
    """One id per (office, slot, due instant): a timer sent twice is one event, dropped the second time. The office
    is part of it: staff ids are only unique within an office."""
    return str(uuid.uuid5(TIMER_NAMESPACE, f"{office_id}/{timer.slot}@{timer.due_at.isoformat()}"))


def _day(text: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise BadInput(f"{field}: {text!r} is not a day YYYY-MM-DD") from None


def _enum(kind: type[LeaveType] | type[PenaltyKind] | type[c.ComplaintCategory], value: Any, field: str) -> Any:
    try:
        result = kind(value)
    except ValueError:
        raise BadInput(f"{field}: unknown value {value!r}") from None
    if result == "UNKNOWN":
        raise BadInput(f"{field}: UNKNOWN is not a decision input")
    return result


def record_to_staff_input(event_type: str, record: dict[str, Any]) -> sd.StaffCommand:
    """The staff input of a record of ``anchang.staff`` (not the office-wide types, see ``OFFICE_EVENT_TYPES``).
    A record the processor cannot use becomes ``Malformed``, which it answers with StaffInputRefused."""
    envelope = record["envelope"]
    common: dict[str, Any] = {
        "event_id": str(envelope["event_id"]),
        "staff_id": record["staff_id"],
        "at": envelope["recorded_at"],
        "actor_role": envelope["actor"]["role"],
    }
    try:
        return _staff_input(event_type, record, common)
    except BadInput as problem:
        return sd.Malformed(**common, event_type=event_type, reason=str(problem))


def _staff_input(event_type: str, record: dict[str, Any], common: dict[str, Any]) -> sd.StaffCommand:
    match event_type:
        case "ClockedIn":
            return sd.ClockIn(**{**common, "at": record["clocked_at"]})
        case "ClockedOut":
            return sd.ClockOut(**{**common, "at": record["clocked_at"]})
        case "LeaveRequested":
            days = tuple(_day(d, "days") for d in record["days"])
            return sd.AskLeave(**common, request_id=record["request_id"],
                               leave_type=_enum(LeaveType, record["leave_type"], "leave_type"), days=days,
                               addressed_to_role=record["addressed_to_role"])  # fmt: skip
        case "LeaveApproved":
            return sd.ApproveLeave(**common, request_id=record["request_id"], handover_done=record["handover_done"])
        case "SickCertificateSubmitted":
            return sd.SubmitCertificate(**common, request_id=record["request_id"])
        case "PremisesExitApproved":
            return sd.ApproveExit(**common, day=_day(record["day"], "day"))
        case "PremisesLeft":
            return sd.LeavePremises(**{**common, "at": record["left_at"]})
        case "ShiftSwapApproved":
            return sd.ApproveSwap(
                **common, rostered_staff_id=record["rostered_staff_id"], day=_day(record["day"], "day")
            )
        case "ShiftSwapped":
            return sd.ObserveSwap(
                **common, rostered_staff_id=record["rostered_staff_id"], day=_day(record["day"], "day")
            )
        case "RestDayScheduled":
            return sd.ScheduleRest(**common, day=_day(record["day"], "day"))
        case "StaffSanctionRecorded":
            return sd.RecordSanction(**common, rule_id=record["rule_id"], sanction_id=record["sanction_id"],
                                     kind=_enum(PenaltyKind, record["kind"], "kind"), day=_day(record["day"], "day"),
                                     amount_yuan=record["amount_yuan"], suspension_days=record["suspension_days"],
                                     detail=record["detail"])  # fmt: skip
        case "AttendanceTimerDue":
            if record["timer"] == "DAY_END":
                return sd.DayDue(**common, day=_day(record["day"], "day"))
            if record["timer"] == "CERTIFICATE" and record["request_id"]:
                return sd.CertificateDue(**common, request_id=record["request_id"])
            raise BadInput(f"timer: {record['timer']!r} without what it needs")
    raise BadInput(f"{event_type} is not a staff input")


def record_to_office_input(event_type: str, record: dict[str, Any]) -> sd.OfficeCommand | None:
    """The office-wide input of a SpecialDayDeclared or DayEnded record (``OFFICE_EVENT_TYPES``), or None when
    its day is not YYYY-MM-DD (the API cannot check it; the record stays on the log and changes nothing)."""
    envelope = record["envelope"]
    try:
        day = _day(record["day"], "day")
    except BadInput:
        return None
    common: dict[str, Any] = {"event_id": str(envelope["event_id"]), "at": envelope["recorded_at"], "day": day}
    if event_type == "SpecialDayDeclared":
        kind = record["kind"]
        return sd.DeclareSpecialDay(**common, kind=None if kind == "UNKNOWN" else DayKind(kind))
    if event_type == "DayEnded":
        return sd.EndDay(**common, last_visitor_left_at=record["last_visitor_left_at"],
                         evening_meeting_ended_at=record["evening_meeting_ended_at"])  # fmt: skip
    raise ValueError(f"{event_type} is not an office-wide input")


def record_to_complaint_input(event_type: str, record: dict[str, Any]) -> sd.ComplaintCommand:
    envelope = record["envelope"]
    event_id, at, role = str(envelope["event_id"]), envelope["recorded_at"], envelope["actor"]["role"]
    complaint_id = record["complaint_id"]
    try:
        match event_type:
            case "ComplaintFiled":
                category = c.ComplaintCategory(record["category"])
                return sd.FileComplaint(event_id=event_id, complaint_id=complaint_id, at=at, category=category,
                                        subject_staff=record["subject_staff"])  # fmt: skip
            case "ComplaintResolved":
                step: c.ComplaintStep = c.Resolve(event_id=event_id, at=at, actor_role=role,
                                                  substantiated=record["substantiated"])  # fmt: skip
                return sd.ComplaintStepIn(complaint_id=complaint_id, step=step)
            case "ComplaintStepRecorded":
                return sd.ComplaintStepIn(complaint_id=complaint_id, step=_step(record, event_id, at, role))
            case "ComplaintTimerDue":
                return sd.ComplaintDue(event_id=event_id, complaint_id=complaint_id, at=at)
    except BadInput as problem:
        return sd.ComplaintMalformed(event_id=event_id, complaint_id=complaint_id, at=at, reason=str(problem))
    raise ValueError(f"{event_type} is not a complaint input")


def _step(record: dict[str, Any], event_id: str, at: datetime, role: str) -> c.ComplaintStep:
    match record["step"]:
        case "CLASSIFY":
            if record["valid"] is None:
                raise BadInput("valid: required for CLASSIFY")
            category = (
                None if record["category"] is None else _enum(c.ComplaintCategory, record["category"], "category")
            )
            return c.Classify(event_id=event_id, at=at, actor_role=role, valid=record["valid"], category=category)
        case "FORWARD":
            if not record["department"]:
                raise BadInput("department: required for FORWARD")
            return c.Forward(event_id=event_id, at=at, actor_role=role, department=record["department"])
        case "CALLBACK":
            return c.RecordCallback(event_id=event_id, at=at, actor_role=role)
        case "CLOSE":
            return c.Close(event_id=event_id, at=at, actor_role=role)
    raise BadInput(f"step: unknown step {record['step']!r}")


def fact_to_record(
    fact: Fact, *, event_id: str, office_id: str, cause_id: str, processor_id: str, recorded_at: datetime
) -> dict[str, Any]:
    """The full record of a decided fact (envelope included), ready for ``EventCodec.encode``."""
    return {
        "envelope": {
            "event_id": event_id,
            "event_type": fact.event_type,
            "office_id": office_id,
            "occurred_at": fact.at,
            "recorded_at": recorded_at,
            "actor": {"staff_id": processor_id, "role": "SYSTEM"},
            "correlation_id": cause_id,
            "causation_id": cause_id,
        },
        **fact.payload,
    }


def timer_body(timer: Timer, office_id: str, processor_id: str, now: datetime) -> dict[str, Any]:
    """The API-shaped body of a timer event (``services.ingest.events.build_event`` validates it)."""
    payload = {key: value.isoformat() if isinstance(value, datetime) else value for key, value in timer.payload.items()}
    return {
        "event_type": timer.event_type,
        "event_id": timer_event_id(timer, office_id),
        "occurred_at": now,
        "actor": {"staff_id": processor_id, "role": "SYSTEM"},
        "payload": payload,
    }
