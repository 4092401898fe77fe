"""The nightly 来电登记 reconciliation (CALL-03 / PEN-26 漏登, VIS-02), pure: when an answered call's log is due and
what it costs when it never came.

The handbook: 「内业于每天晚上下班之前收存好」 (VIS-02, the registers are collected every night) and 「如出现漏登现象则
每空10元」 (CALL-03). Rules.md CALL-03: "An answered call with no ``CallLogged`` → ``PenaltyIssued{10}``" by a daily
reconciliation. The deadline is therefore the night of the call's office-local day:

- ``due`` (a local wall-clock time on the call's day) — default None, meaning the end of that day (local midnight):
  the working day ends at 17:30 or later (ATT-01, §13.1), and 内业 collects the forms before going home, so a log
  written by midnight is in that night's register whatever time the 晚会 ends.
- ``grace``: a call that ends close to (or after) the cut-off still gets this long after its hang-up (default
  30 minutes); without a hang-up, after the pickup.

Limits are inclusive like every deadline of the front desk: a log at exactly the deadline is in time, the timer
fires after it. The fine is ``calls.unlogged_call_fines``: every required field blank (10 元 each, 40 元 with the
four CALL-07 fields) or the office's flat ``missing_log_fine_yuan``, charged to the answerer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from services.staff.calls import Call, unlogged_call_fines
from services.staff.localtime import at_local, day_start, local_day, require_aware
from services.staff.penalties import Penalty
from services.staff.policy import StaffPolicy

RULE_ID = "CALL-03"
SANCTION_ID = "PEN-26"
DEFAULT_GRACE = timedelta(minutes=30)


@dataclass(frozen=True)
class CallLogDeadline:
    """An office's call-log deadline (StaffPolicy.call_log_due / call_log_grace)."""

    due: time | None = None  # local cut-off on the call's day; None: the end of the day (local midnight)
    grace: timedelta = DEFAULT_GRACE  # at least this long after the hang-up

    def __post_init__(self) -> None:
        if self.grace < timedelta(0):
            raise ValueError("call_log_grace: must not be negative")

    @classmethod
    def of(cls, policy: StaffPolicy) -> CallLogDeadline:
        return cls(policy.call_log_due, policy.call_log_grace)


def call_log_deadline(
    day: date, answered_at: datetime, ended_at: datetime | None, rule: CallLogDeadline, timezone: str
) -> datetime:
    """The last instant a log of the call rung on ``day`` is in time: the cut-off of that day, but never sooner than
    ``grace`` after the hang-up (the pickup if the hang-up is unknown). In UTC, as the tables store instants."""
    cutoff = day_start(day + timedelta(days=1), timezone) if rule.due is None else at_local(day, rule.due, timezone)
    end = require_aware(ended_at if ended_at is not None else answered_at)
    return max(cutoff, end + rule.grace).astimezone(UTC)


def log_is_late(deadline: datetime, logged_recorded_at: datetime) -> bool:
    """A log Anchang accepted after the deadline missed that night's register: it is a 漏登 too. Its
    ``recorded_at`` decides (a client cannot backdate it)."""
    return require_aware(logged_recorded_at) > deadline


def timer_holds(stored_deadline: datetime | None, timer_deadline: datetime, timer_recorded_at: datetime) -> bool:
    """The timer's command holds when the call is still unlogged with that very deadline (a CallEnded may have moved
    it) and the deadline had passed when Anchang accepted the command (a forged early one changes nothing)."""
    return stored_deadline is not None and stored_deadline == timer_deadline and timer_recorded_at > stored_deadline


@dataclass(frozen=True)
class MissingLog:
    """The decision: the fact's content and the fines (empty when nobody answered or the office has no fine)."""

    call_id: str
    staff_id: str | None
    answered_at: datetime
    deadline_at: datetime
    evidence: tuple[str, ...]
    penalties: tuple[Penalty, ...]
    late_log_event_id: str | None = None
    rule_id: str = RULE_ID
    sanction_id: str = SANCTION_ID

    @property
    def fine_yuan(self) -> int:
        return sum(p.amount_yuan or 0 for p in self.penalties)


def missing_log(
    call: Call, deadline: datetime, shown_by: str, decided_at: datetime, policy: StaffPolicy, *, late_log: bool = False
) -> MissingLog:
    """CALL-03 / PEN-26 for an answered call with no log by ``deadline``. ``shown_by`` is the event that showed it
    (the timer, or the late CallLogged); the fines are dated on the call's day and stated at ``decided_at``."""
    if call.answered_at is None:
        raise ValueError(f"{call.call_id}: an unanswered call owes no log")
    fines = unlogged_call_fines(call, shown_by, decided_at, policy)
    day = local_day(call.answered_at, policy.timezone)
    # The blank-field path dates a fine on the day it is decided; the 漏登 belongs to the call's day (and month).
    fines = [replace(p, day=day) for p in fines]
    return MissingLog(
        call_id=call.call_id,
        staff_id=call.answered_by,
        answered_at=call.answered_at,
        deadline_at=deadline,
        evidence=(call.event_id, shown_by),
        penalties=tuple(fines),
        late_log_event_id=shown_by if late_log else None,
    )
