"""What the staff processor remembers between batches, per staff member and per complaint case (stored as JSON
in services/staff/staff_tables.py), and the values its decisions return: facts, penalties and timers.

Plain pydantic models so that a state round-trips through JSON unchanged (dates, instants, enums)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.staff.complaints import ComplaintCase, Deadline
from services.staff.leave import LeaveStatus
from services.staff.penalties import Penalty
from services.staff.policy import DayKind, LeaveType


class Stamp(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    at: datetime


class Approved(BaseModel):
    """An approval (leave, premises exit, shift swap): who, in which role, when."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    role: str
    at: datetime


class LeaveRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    event_id: str
    leave_type: LeaveType
    days: tuple[date, ...]
    requested_at: datetime
    addressed_to_role: str
    status: LeaveStatus
    rule_id: str | None = None
    evidence: tuple[str, ...] = ()
    returned: Stamp | None = None  # sick leave: the first clock-in after the sick days
    certificate: Stamp | None = None  # sick leave: SickCertificateSubmitted
    reclassified: bool = False  # sick leave: no certificate in time (ATT-09, PEN-05)
    revoked_days: tuple[date, ...] = ()  # granted days a later blackout declaration took back (ATT-05, LeaveRevoked)

    def counts_as(self, reclassified_as: LeaveType) -> LeaveType:
        return reclassified_as if self.reclassified else self.leave_type

    def covers(self, day: date) -> bool:
        """Whether this leave excuses ``day``: granted, for that day, and not revoked since (ATT-05)."""
        return self.status is LeaveStatus.GRANTED and day in self.days and day not in self.revoked_days

    @property
    def remaining_days(self) -> tuple[date, ...]:
        """The days still granted (all of them unless some were revoked)."""
        if self.status is not LeaveStatus.GRANTED:
            return ()
        return tuple(d for d in self.days if d not in self.revoked_days)


class StaffState(BaseModel):
    """One staff member of one office. Days before ``judged_through`` minus ``KEEP_DAYS`` are pruned."""

    model_config = ConfigDict(frozen=True)

    staff_id: str
    first_day: date | None = None  # the first day Anchang saw this person: days are judged from here
    judged_through: date | None = None  # the last day closed by the DAY_END timer
    clock_ins: dict[date, Stamp] = {}  # the first ClockedIn of each day
    clock_outs: dict[date, Stamp] = {}  # the last ClockedOut of each day
    leaves: dict[str, LeaveRecord] = {}
    rest_days: tuple[date, ...] = ()
    exit_approvals: dict[date, Approved] = {}
    swap_approvals: dict[str, Approved] = {}  # "<rostered staff>/<day>"


class ComplaintState(BaseModel):
    model_config = ConfigDict(frozen=True)

    case: ComplaintCase
    escalated: tuple[Deadline, ...] = ()  # deadlines already escalated (each once)


@dataclass(frozen=True)
class OfficeDay:
    """What the office said about one day: SpecialDayDeclared (ATT-05) and DayEnded (ATT-01)."""

    kind: DayKind | None = None
    last_visitor_left_at: datetime | None = None
    evening_meeting_ended_at: datetime | None = None


@dataclass(frozen=True)
class Fact:
    """A decided fact for ``anchang.staff.facts``: its type, when it happened, its payload (Avro field names)."""

    event_type: str
    at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Timer:
    """A pending timer: at ``due_at`` the shell puts ``event_type`` with ``payload`` on the input topic, keyed
    by ``key``. ``slot`` names what it times (one timer per slot: setting it again replaces it)."""

    slot: str
    key: str
    event_type: str
    payload: Mapping[str, Any]
    due_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What deciding one input produced."""

    facts: tuple[Fact, ...] = ()
    penalties: tuple[Penalty, ...] = ()
    timers: tuple[Timer, ...] = ()
    cleared: tuple[str, ...] = ()  # slots whose timer is done
    extra: Mapping[str, Any] = field(default_factory=dict)  # for metrics: e.g. {"leave_refused": "ATT-05"}
