"""Calls (rules.md §4): how fast a call was answered, 漏登 fines for blank register fields, the 5-minute SMS, the
3-minute target and who owns the callback. Limits are inclusive: an SMS at exactly 5:00 after hang-up is in time, a
call of exactly 3:00 is on target, a pickup during the 3rd ring is in time."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.staff.localtime import local_day, require_aware
from services.staff.penalties import Penalty, fine
from services.staff.policy import StaffPolicy


class CallerClass(StrEnum):
    """Symbols of CallerClass in schemas/events/CallLogged.avsc."""

    UNKNOWN = "UNKNOWN"
    GENUINE_CUSTOMER = "GENUINE_CUSTOMER"
    MARKET_RESEARCH = "MARKET_RESEARCH"
    UNIDENTIFIED = "UNIDENTIFIED"


@dataclass(frozen=True)
class Call:
    """CallReceived (and CallEnded's hang-up time, when known)."""

    event_id: str
    call_id: str
    ring_started_at: datetime
    answered_at: datetime | None = None
    ring_count: int | None = None  # as reported by the exchange
    answered_by: str | None = None
    ended_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.ring_started_at, "Call.ring_started_at")


@dataclass(frozen=True)
class CallLog:
    """CallLogged (来电登记)."""

    event_id: str
    call_id: str
    staff_id: str
    logged_at: datetime
    caller_class: CallerClass = CallerClass.UNKNOWN
    blank_fields: tuple[str, ...] = ()
    visit_invited: bool = False


# ---------------------------------------------------------------------------------------------------------------
# CALL-01: 2–3 rings


def rings_before_answer(call: Call, policy: StaffPolicy) -> int | None:
    """The ring during which the call was picked up: the exchange's count if it gives one, else derived from the
    seconds with the policy's ring period (rings start at 0, P, 2P, …: a pickup at exactly 3P is in the 4th ring).
    None for a call never answered."""
    if call.answered_at is None:
        return None
    if call.ring_count is not None:
        return call.ring_count
    elapsed = max(call.answered_at - call.ring_started_at, timedelta(0))
    return math.floor(elapsed / policy.ring_period) + 1


@dataclass(frozen=True)
class AnswerCheck:
    answered: bool
    rings: int | None
    in_time: bool  # answered within ``answer_within_rings``
    rule_id: str = "CALL-01"
    penalties: tuple[Penalty, ...] = ()  # only with a pack that fines late answers (PEN-C02)


def check_answer(call: Call, policy: StaffPolicy) -> AnswerCheck:
    """CALL-01 「一般在铃响2~3声之间接听」: in time up to the 3rd ring. Answering on the 1st ring is not a fault (the
    handbook's 2 is etiquette). The core office has no fine; a pack's ``late_answer_fine_yuan`` is charged to the
    answerer."""
    rings = rings_before_answer(call, policy)
    if rings is None:
        return AnswerCheck(answered=False, rings=None, in_time=False)
    in_time = rings <= policy.answer_within_rings
    penalties: list[Penalty] = []
    if not in_time and call.answered_by is not None and call.answered_at is not None:
        penalties = fine(
            policy.late_answer_fine_yuan,
            staff_id=call.answered_by,
            rule_id="CALL-01",
            sanction_id="PEN-C02",
            day=local_day(call.answered_at, policy.timezone),
            at=call.answered_at,
            evidence=(call.event_id,),
            detail=f"answered in ring {rings}",
        )
    return AnswerCheck(answered=True, rings=rings, in_time=in_time, penalties=tuple(penalties))


# ---------------------------------------------------------------------------------------------------------------
# CALL-03 / PEN-26: 漏登, 10 元 per blank


def blank_field_fines(
    staff_id: str,
    blank_fields: Iterable[str],
    required: Iterable[str],
    at: datetime,
    evidence: tuple[str, ...],
    policy: StaffPolicy,
    rule_id: str = "CALL-03",
) -> list[Penalty]:
    """「如出现漏登现象则每空10元」 (§13.8: per blank field): one fine line per distinct blank *required* field, in
    name order. Used for the call log (CALL-03) and the visit register (VIS-02)."""
    required_set = set(required)
    blanks = sorted({f for f in blank_fields if f in required_set})
    return [
        line
        for name in blanks
        for line in fine(
            policy.blank_field_fine_yuan,
            staff_id=staff_id,
            rule_id=rule_id,
            sanction_id="PEN-26",
            day=local_day(at, policy.timezone),
            at=at,
            evidence=evidence,
            detail=name,
        )
    ]


def call_log_fines(log: CallLog, policy: StaffPolicy) -> list[Penalty]:
    """PEN-26 for a CallLogged with blank fields."""
    return blank_field_fines(
        log.staff_id, log.blank_fields, policy.call_log_required_fields, log.logged_at, (log.event_id,), policy
    )


def unlogged_call_fines(call: Call, closed_by: str, closed_at: datetime, policy: StaffPolicy) -> list[Penalty]:
    """An answered call with no CallLogged when the day's register is collected (VIS-02, ``closed_by`` is that
    event): every required field is blank, or the office's flat ``missing_log_fine_yuan``."""
    if call.answered_at is None or call.answered_by is None:
        return []
    evidence = (call.event_id, closed_by)
    if policy.missing_log_fine_yuan is not None:
        return fine(
            policy.missing_log_fine_yuan,
            staff_id=call.answered_by,
            rule_id="CALL-03",
            sanction_id="PEN-26",
            day=local_day(call.answered_at, policy.timezone),
            at=closed_at,
            evidence=evidence,
            detail="call not logged",
        )
    required = policy.call_log_required_fields
    return blank_field_fines(call.answered_by, required, required, closed_at, evidence, policy)


# ---------------------------------------------------------------------------------------------------------------
# CALL-04: SMS within 5 minutes of hanging up


def needs_sms(caller_class: CallerClass) -> bool:
    """CALL-04 applies to 正常客户. A caller left UNKNOWN counts as genuine: leaving the class blank must not excuse
    the SMS. Market research and unidentified callers need none."""
    return caller_class in (CallerClass.GENUINE_CUSTOMER, CallerClass.UNKNOWN)


def sms_deadline(hung_up_at: datetime, policy: StaffPolicy) -> datetime:
    """The last instant an SMS is in time: hang-up + 5 minutes (the overdue timer fires after it)."""
    return require_aware(hung_up_at) + policy.sms_within


class SmsState(StrEnum):
    NOT_REQUIRED = "NOT_REQUIRED"
    PENDING = "PENDING"  # no SMS yet, deadline not passed
    IN_TIME = "IN_TIME"
    LATE = "LATE"  # sent after the deadline
    OVERDUE = "OVERDUE"  # none sent and the deadline has passed: the alert


def sms_state(
    caller_class: CallerClass, hung_up_at: datetime, sms_sent_at: datetime | None, at: datetime, policy: StaffPolicy
) -> SmsState:
    """Where a call stands on CALL-04 at ``at``. ``sms_sent_at`` is the first SMSSent to the caller by the answerer
    after the call was answered (``first_sms``). An SMS sent before the hang-up is in time."""
    if not needs_sms(caller_class):
        return SmsState.NOT_REQUIRED
    deadline = sms_deadline(hung_up_at, policy)
    if sms_sent_at is not None and sms_sent_at <= at:
        return SmsState.IN_TIME if sms_sent_at <= deadline else SmsState.LATE
    return SmsState.PENDING if require_aware(at) <= deadline else SmsState.OVERDUE


def first_sms(answered_at: datetime, sent_times: Iterable[datetime]) -> datetime | None:
    """The first SMS at or after the pickup (earlier ones belong to earlier contacts)."""
    return min((t for t in sent_times if t >= answered_at), default=None)


# ---------------------------------------------------------------------------------------------------------------
# CALL-05/07/08


def over_call_target(duration: timedelta, policy: StaffPolicy) -> bool:
    """CALL-08 「尽量控制在3分钟以内」: a soft target; exactly 3:00 is on target."""
    return duration > policy.call_target


@dataclass(frozen=True)
class CallbackOwner:
    staff_id: str
    evidence: tuple[str, ...]
    conflict: bool  # the exchange's answerer and the logging staff differ
    rule_id: str = "CALL-05"


def callback_owner(call: Call, log: CallLog | None) -> CallbackOwner | None:
    """CALL-05 / CMP-05 「由该电话接听人负责回访该客户」: the answerer owns the callback. The exchange's
    ``answered_by`` wins over the log when both are known and differ (flagged as a conflict)."""
    evidence = (call.event_id,) if log is None else (call.event_id, log.event_id)
    if call.answered_by is not None:
        return CallbackOwner(call.answered_by, evidence, log is not None and log.staff_id != call.answered_by)
    if log is not None:
        return CallbackOwner(log.staff_id, evidence, False)
    return None


def capture_gaps(log: CallLog, policy: StaffPolicy) -> tuple[str, ...]:
    """CALL-07: what a genuine call's log lacks — required fields left blank and, if no visit was booked,
    ``visit_invited``. Non-genuine callers are only asked for a number."""
    if not needs_sms(log.caller_class):
        return ("phone",) if "phone" in log.blank_fields else ()
    gaps = sorted(f for f in set(log.blank_fields) if f in policy.call_log_required_fields)
    return (*gaps, *(() if log.visit_invited else ("visit_invited",)))
