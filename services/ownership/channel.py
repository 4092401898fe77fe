"""The 报备 judge (OWN-10…16): which channel reports are valid for a visit, and which one wins.

Pure functions of the reports and the visit, so the outcome does not depend on the order reports were read in:
reports from different WeChat groups reach Anchang through different partitions, late or out of order.

A report is judged against the first visit of the ownership period (``FirstVisit``). In this order, the first
failing check names the rule:

1. OWN-05 the report was made during an ownership period that has since expired (``stale``);
2. OWN-15 its agent was barred at or before the report;
3. OWN-16 a 空间家 report names no pre-arranged consultant;
4. (no visit yet: pending);
5. OWN-10 it was made at or after the arrival (a report must precede the visit);
6. OWN-11 it precedes the arrival by less than the lead time (30 minutes; exactly 30 counts by default);
7. OWN-12 the reported name or phone differs from the visit register;
8. OWN-14 the customer named no channel before the reception started.

Of the valid reports the earliest (``reported_at``, ties broken by report id) wins; the others lose under OWN-13.
Which channel the customer named does not choose the winner: OWN-13 decides by report order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.ownership.customers import InvalidPhone, normalize_name, normalize_phone
from services.ownership.events import ReportGroup
from services.ownership.facts import (
    OWN_05,
    OWN_10,
    OWN_11,
    OWN_12,
    OWN_13,
    OWN_14,
    OWN_15,
    OWN_16,
    RejectionReason,
)
from services.ownership.policy import OwnershipPolicy
from services.ownership.state import PENDING, FirstVisit, Report, ReportStatus, Verdict

__all__ = ["Judgement", "judge", "judge_all", "same_person", "same_phone"]


@dataclass(frozen=True)
class Judgement:
    verdicts: Mapping[str, Verdict]  # by report id
    winner: Report | None


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} min"


def _reject(reason: RejectionReason, rule_id: str, detail: str) -> Verdict:
    return Verdict(ReportStatus.REJECTED, reason, rule_id, detail)


def same_phone(a: str, b: str) -> bool:
    try:
        return normalize_phone(a) == normalize_phone(b)
    except InvalidPhone:
        return False


def same_person(name_a: str, phone_a: str, name_b: str, phone_b: str) -> bool:
    """OWN-12: same normalised name and same normalised phone."""
    return normalize_name(name_a) == normalize_name(name_b) and same_phone(phone_a, phone_b)


def judge(
    report: Report,
    visit: FirstVisit | None,
    policy: OwnershipPolicy,
    barred: Mapping[str, datetime] | None = None,
    period_start: datetime | None = None,
) -> Verdict:
    """The verdict on one report on its own (without OWN-13): PENDING, REJECTED or WINNING (meaning "valid")."""
    if period_start is not None and report.reported_at < period_start:
        return _reject(RejectionReason.STALE, OWN_05, f"reported before the ownership period began ({period_start})")
    barred_at = min(
        (t for t in (report.agent_barred_at, (barred or {}).get(report.agent_id)) if t is not None), default=None
    )
    if barred_at is not None and barred_at <= report.reported_at:
        return _reject(RejectionReason.AGENT_BARRED, OWN_15, f"agent {report.agent_id} barred since {barred_at}")
    if report.group == ReportGroup.KONGJIANJIA and not report.pre_arranged_staff_id:
        return _reject(RejectionReason.NO_PRE_ARRANGED_CONSULTANT, OWN_16, "空间家 report without a consultant")
    if visit is None:
        return PENDING
    lead = visit.arrived_at - report.reported_at
    if lead <= timedelta(0):
        return _reject(RejectionReason.AFTER_ARRIVAL, OWN_10, f"reported {_minutes(-lead)} after the arrival")
    if not policy.report_in_time(report.reported_at, visit.arrived_at):
        at_least = "at least" if policy.lead_time_inclusive else "more than"
        detail = f"reported {_minutes(lead)} before arrival; {at_least} {_minutes(policy.report_lead_time)} needed"
        return _reject(RejectionReason.LEAD_TIME, OWN_11, detail)
    if not same_person(report.customer_name, report.phone, visit.customer_name, visit.phone):
        return _reject(RejectionReason.MISMATCH, OWN_12, "reported name or phone differs from the visit register")
    if visit.channel_mentioned is None:
        return _reject(RejectionReason.NOT_MENTIONED, OWN_14, "no channel named at arrival: natural visit (自然到访)")
    return Verdict(ReportStatus.WINNING)


def judge_all(
    reports: Iterable[Report],
    visit: FirstVisit | None,
    policy: OwnershipPolicy,
    barred: Mapping[str, datetime] | None = None,
    period_start: datetime | None = None,
) -> Judgement:
    """Verdicts on all reports, with OWN-13 applied: the earliest valid report wins, the other valid ones lose."""
    ordered = sorted(reports, key=lambda r: (r.reported_at, r.event_id))
    verdicts = {r.event_id: judge(r, visit, policy, barred, period_start) for r in ordered}
    valid = [r for r in ordered if verdicts[r.event_id].status is ReportStatus.WINNING]
    winner = valid[0] if valid else None
    for loser in valid[1:]:
        assert winner is not None
        detail = f"{winner.channel_id} reported earlier ({winner.reported_at})"
        verdicts[loser.event_id] = _reject(RejectionReason.EARLIER_REPORT_WON, OWN_13, detail)
    return Judgement(verdicts, winner)
