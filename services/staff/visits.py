"""Visits at the door (rules.md §3.2 and ROT-06/12/13/14/15): who receives a visitor, whether the owner must be told,
register completeness, and receptions that never reached the register."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.staff.calls import blank_field_fines
from services.staff.penalties import Penalty
from services.staff.policy import StaffPolicy
from services.staff.rotation import RotationState, VisitType, counts_toward_quota, duty_receiver, next_receiver


@dataclass(frozen=True)
class DoorAnswers:
    """The front desk's questions (VIS-03) as recorded on VisitRegistered."""

    visit_type: VisitType
    prior_consultant_named: str | None = None  # a staff id, when the desk resolved the name
    sms_evidence_shown: bool = False


class RoutingBasis(StrEnum):
    OWNER = "OWNER"  # VIS-03: the owner receives their own customer
    DUTY = "DUTY"  # ROT-13/14, VIS-03: the last receiver stands in (义务接待)
    ROTATION = "ROTATION"  # a natural walk-in (自然到访): the next in the 轮序表


@dataclass(frozen=True)
class Routing:
    receiver: str | None  # None: nobody can receive right now
    basis: RoutingBasis
    counted: bool  # takes a turn and counts as a reception (ROT-12)
    owner_to_notify: str | None  # ROT-15: the owner must be told at once
    rule_id: str


def owner_evidence(answers: DoorAnswers) -> bool:
    """VIS-03 (§13.13, default "SMS or name evidence only"): a first-time visitor who says they phoned is the owner's
    only if they name the consultant or show the SMS; return, closed-customer and 补定 visits are the owner's
    customers already."""
    if answers.visit_type is VisitType.NEW:
        return answers.prior_consultant_named is not None or answers.sms_evidence_shown
    return answers.visit_type in (VisitType.RETURN, VisitType.CLOSED_CUSTOMER, VisitType.TOP_UP_DEPOSIT)


def route_visit(answers: DoorAnswers, owner_id: str | None, state: RotationState, at: datetime) -> Routing:
    """Who receives a visitor arriving at ``at``. ``owner_id`` comes from the attribution projection.

    - 同行调研 → the last receiver, not counted (ROT-14).
    - an owned customer with evidence → the owner if available (VIS-03); otherwise the last receiver as duty
      reception, and the owner is notified (ROT-13, ROT-15).
    - anyone else → the next in the 轮序表, counted (a natural walk-in)."""
    if answers.visit_type is VisitType.PEER_RESEARCH:
        return Routing(duty_receiver(state, at), RoutingBasis.DUTY, False, None, "ROT-14")
    owner = owner_id if owner_id is not None and owner_evidence(answers) else None
    if owner is not None:
        if state.available(owner, at):
            return Routing(owner, RoutingBasis.OWNER, False, None, "VIS-03")
        return Routing(duty_receiver(state, at), RoutingBasis.DUTY, False, owner, "ROT-13")
    counted = counts_toward_quota(answers.visit_type, None)
    return Routing(next_receiver(state, at), RoutingBasis.ROTATION, counted, None, "ROT-02")


def owner_to_notify(receiver: str, owner_id: str | None) -> str | None:
    """ROT-15 「必须立刻与原销售人员联络」: another salesperson's customer → that owner is to be notified."""
    return owner_id if owner_id is not None and owner_id != receiver else None


def register_fines(
    staff_id: str, blank_fields: Iterable[str], at: datetime, evidence: tuple[str, ...], policy: StaffPolicy
) -> list[Penalty]:
    """VIS-02 / PEN-26: 10 元 per blank required field of the visit register, charged to the receiving consultant."""
    return blank_field_fines(
        staff_id, blank_fields, policy.visit_register_required_fields, at, evidence, policy, rule_id="VIS-02"
    )


def unregistered_receptions(receptions: Iterable[tuple[str, str]], registered_visit_ids: Iterable[str]) -> list[str]:
    """ROT-06 / VIS-01: visit ids of receptions (staff id, visit id) with no VisitRegistered, in input order."""
    registered = set(registered_visit_ids)
    return [visit for _, visit in receptions if visit not in registered]
