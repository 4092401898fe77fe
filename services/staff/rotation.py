"""The 轮序表 (reception rotation, rules.md §3.1) as a pure state machine: ``decide(state, command, policy)`` answers
every command with facts (or one ``RotationRejected`` naming the rule), ``evolve`` applies a fact, and
``next_receiver(state, at)`` says who receives the next visitor.

The model (docs/staff-policy.md, "Rotation queue"):

- The 销售主管 publishes the day's order (ROT-02). ``order`` is always a permutation of the published staff.
- The next receiver is the first in ``order`` who is standing at the post, not waiving and not suspended. Someone
  busy with work (ROT-09), receiving a customer, waiving or suspended (ROT-05/11/17) keeps their place and is
  skipped, so a busy first lets the second receive and is first again once back.
- A counted reception (a NEW visit by a customer with no owner, ROT-12) must go to the next receiver; it adds one
  to the receiver's count and moves only the receiver to the back. Other receptions take no turn and count nothing.
- A waiver (ROT-03) is made by the one whose turn it is, lasts at least 30 minutes, adds two to the count and moves
  them to the back, like a reception.
- The first post is never to be empty (ROT-07): ``first_post_check`` names who is accountable along the cascade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias, TypedDict, TypeVar, assert_never

from services.sales.policy import Role
from services.staff.localtime import day_last_instant, day_start, local_day, require_aware
from services.staff.penalties import Penalty, PenaltyKind
from services.staff.policy import StaffPolicy
from services.staff.refusal import INPUT_RULE, ROLE_RULE, Refusal


class VisitType(StrEnum):
    """Symbols of VisitType in schemas/events/VisitRegistered.avsc."""

    UNKNOWN = "UNKNOWN"
    NEW = "NEW"
    RETURN = "RETURN"  # 老客户回访
    CLOSED_CUSTOMER = "CLOSED_CUSTOMER"  # 已成交客户
    TOP_UP_DEPOSIT = "TOP_UP_DEPOSIT"  # 补定
    PEER_RESEARCH = "PEER_RESEARCH"  # 同行调研


class PostStatus(StrEnum):
    STANDING = "STANDING"  # at the post, available
    BUSY = "BUSY"  # away on work (正处理工作事务, ROT-09): keeps the place, excused
    AWAY = "AWAY"  # away without a reason: keeps the place, not excused (ROT-07)
    RECEIVING = "RECEIVING"  # with a customer


def counts_toward_quota(visit_type: VisitType, owner_id: str | None) -> bool:
    """ROT-12/13/14: only a NEW visit of a customer nobody owns takes a turn and counts as a reception."""
    return visit_type is VisitType.NEW and owner_id is None


# ---------------------------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class Suspension:
    """停接客户: the staff member receives nobody from ``start`` until ``end`` (None: until re-qualified, ROT-17)."""

    staff_id: str
    start: datetime
    end: datetime | None
    rule_id: str
    evidence: tuple[str, ...]

    def active(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)

    @classmethod
    def of(cls, penalty: Penalty) -> Suspension:
        """A 停接 penalty as a suspension: N days are N × 24 h from the moment it was issued, which covers exactly N
        days' worth of standing hours (08:30–17:30) whatever the hour of issue."""
        if penalty.kind is not PenaltyKind.SUSPENSION:
            raise ValueError(f"{penalty.rule_id}: not a 停接 penalty")
        days = penalty.suspension_days
        end = None if days is None else penalty.at + timedelta(days=days)
        return cls(penalty.staff_id, penalty.at, end, penalty.rule_id, penalty.evidence)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RotationState:
    """One office's queue for one day, plus the suspensions that outlive the day. Mappings are never mutated."""

    day: date | None = None
    valid_from: datetime | None = None  # the office-local day the queue is for
    valid_until: datetime | None = None
    published_by: str | None = None
    published: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    status: Mapping[str, PostStatus] = field(default_factory=_empty)
    since: Mapping[str, datetime] = field(default_factory=_empty)  # when the current status began
    notified: Mapping[str, str] = field(default_factory=_empty)  # an AWAY staff member → whom they told to take over
    waived_until: Mapping[str, datetime] = field(default_factory=_empty)
    receiving: Mapping[str, str] = field(default_factory=_empty)  # staff → visit id
    receptions: Mapping[str, int] = field(default_factory=_empty)  # quota units today: counted receptions + 2 × waivers
    recent_receivers: tuple[str, ...] = ()  # counted receptions, most recent last (ROT-13/14)
    suspensions: tuple[Suspension, ...] = ()

    def in_force(self, at: datetime) -> bool:
        return (
            self.valid_from is not None and self.valid_until is not None and self.valid_from <= at <= self.valid_until
        )

    def suspension(self, staff_id: str, at: datetime) -> Suspension | None:
        return next((s for s in self.suspensions if s.staff_id == staff_id and s.active(at)), None)

    def waiving(self, staff_id: str, at: datetime) -> bool:
        until = self.waived_until.get(staff_id)
        return until is not None and at < until

    def available(self, staff_id: str, at: datetime) -> bool:
        return (
            self.status.get(staff_id) is PostStatus.STANDING
            and not self.waiving(staff_id, at)
            and self.suspension(staff_id, at) is None
        )


INITIAL = RotationState()


def next_receiver(state: RotationState, at: datetime) -> str | None:
    """Who receives the next (counted) visitor at ``at``: the first in the order who is available; None when no queue
    is in force or nobody is available."""
    if not state.in_force(require_aware(at)):
        return None
    return next((s for s in state.order if state.available(s, at)), None)


def duty_receiver(state: RotationState, at: datetime) -> str | None:
    """ROT-13/14: the colleague who most recently received a (counted) customer and can receive now; when nobody has
    received yet, the next receiver. Duty receptions count nothing and take no turn."""
    for staff in reversed(state.recent_receivers):
        if state.available(staff, at):
            return staff
    return next_receiver(state, at)


@dataclass(frozen=True)
class QueueEntry:
    staff_id: str
    position: int  # 1-based place in the order
    status: PostStatus
    available: bool
    receptions: int
    waived_until: datetime | None
    suspended_until: datetime | None
    suspended: bool


def queue_view(state: RotationState, at: datetime) -> tuple[QueueEntry, ...]:
    """The 轮序表 as the front desk sees it at ``at``."""
    entries = []
    for position, staff in enumerate(state.order, start=1):
        suspension = state.suspension(staff, at)
        entries.append(
            QueueEntry(
                staff_id=staff,
                position=position,
                status=state.status[staff],
                available=state.available(staff, at),
                receptions=state.receptions.get(staff, 0),
                waived_until=state.waived_until.get(staff) if state.waiving(staff, at) else None,
                suspended_until=None if suspension is None else suspension.end,
                suspended=suspension is not None,
            )
        )
    return tuple(entries)


# ---------------------------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, kw_only=True)
class _Command:
    command_id: str
    at: datetime
    actor_id: str
    actor_role: str

    def __post_init__(self) -> None:
        require_aware(self.at, f"{type(self).__name__}.at")


@dataclass(frozen=True, kw_only=True)
class PublishQueue(_Command):
    staff: tuple[str, ...]  # the order: first receiver first (RotationQueuePublished.ordered_staff)


@dataclass(frozen=True, kw_only=True)
class StandPost(_Command):
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class LeavePost(_Command):
    staff_id: str
    busy: bool  # away on work (ROT-09) rather than without a reason
    notified: str | None = None  # whom they told to take over the first post (ROT-07)


@dataclass(frozen=True, kw_only=True)
class StartReception(_Command):
    staff_id: str
    visit_id: str
    visit_type: VisitType
    owner_id: str | None = None  # the customer's owner per the attribution projection, if any


@dataclass(frozen=True, kw_only=True)
class EndReception(_Command):
    staff_id: str
    visit_id: str


@dataclass(frozen=True, kw_only=True)
class WaiveTurn(_Command):
    staff_id: str
    until: datetime | None = None  # None: the minimum (30 minutes)


@dataclass(frozen=True, kw_only=True)
class Suspend(_Command):
    penalty: Penalty  # a 停接 penalty (see ``suspension_penalty``)


@dataclass(frozen=True, kw_only=True)
class LiftSuspension(_Command):
    staff_id: str  # ends an open-ended suspension once re-qualified (ROT-17)


RotationCommand: TypeAlias = (
    PublishQueue | StandPost | LeavePost | StartReception | EndReception | WaiveTurn | Suspend | LiftSuspension
)


# ---------------------------------------------------------------------------------------------------------------
# Facts


@dataclass(frozen=True, kw_only=True)
class _Fact:
    caused_by: str
    at: datetime
    actor_id: str
    actor_role: str


@dataclass(frozen=True, kw_only=True)
class QueuePublished(_Fact):
    day: date
    staff: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, kw_only=True)
class PostStood(_Fact):
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class PostLeft(_Fact):
    staff_id: str
    busy: bool
    notified: str | None


@dataclass(frozen=True, kw_only=True)
class ReceptionStarted(_Fact):
    staff_id: str
    visit_id: str
    visit_type: VisitType
    counted: bool  # took a turn and counts one reception
    owner_id: str | None
    skipped: tuple[str, ...]  # ahead of the receiver in the order but not available (ROT-09)


@dataclass(frozen=True, kw_only=True)
class ReceptionEnded(_Fact):
    staff_id: str
    visit_id: str


@dataclass(frozen=True, kw_only=True)
class TurnWaived(_Fact):
    staff_id: str
    until: datetime
    weight: int


@dataclass(frozen=True, kw_only=True)
class SuspensionStarted(_Fact):
    suspension: Suspension


@dataclass(frozen=True, kw_only=True)
class SuspensionLifted(_Fact):
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class RotationRejected(_Fact):
    command_type: str
    rule_id: str
    reason: str
    expected: str | None = None  # who should have received, for an out-of-turn reception


RotationFact: TypeAlias = (
    QueuePublished
    | PostStood
    | PostLeft
    | ReceptionStarted
    | ReceptionEnded
    | TurnWaived
    | SuspensionStarted
    | SuspensionLifted
    | RotationRejected
)


# ---------------------------------------------------------------------------------------------------------------
# decide


class _Meta(TypedDict):
    caused_by: str
    at: datetime
    actor_id: str
    actor_role: str


def _meta(command: RotationCommand) -> _Meta:
    return _Meta(caused_by=command.command_id, at=command.at, actor_id=command.actor_id, actor_role=command.actor_role)


def _reject(command: RotationCommand, rule_id: str, reason: str, expected: str | None = None) -> list[RotationFact]:
    return [
        RotationRejected(
            caused_by=command.command_id,
            at=command.at,
            actor_id=command.actor_id,
            actor_role=command.actor_role,
            command_type=type(command).__name__,
            rule_id=rule_id,
            reason=reason,
            expected=expected,
        )
    ]


def decide(state: RotationState, command: RotationCommand, policy: StaffPolicy) -> list[RotationFact]:
    """The facts answering ``command``: never empty; a refusal is a single RotationRejected and changes nothing."""
    c, at = command, command.at
    base = _meta(c)
    if isinstance(c, PublishQueue):
        if c.actor_role not in policy.queue_publishers:
            return _reject(c, ROLE_RULE, f"role {c.actor_role} may not publish the 轮序表 (ROT-02: 销售主管)")
        if not c.staff or len(set(c.staff)) != len(c.staff) or not all(c.staff):
            return _reject(c, INPUT_RULE, "the 轮序表 names each staff member once, at least one")
        day = local_day(at, policy.timezone)
        start, end = day_start(day, policy.timezone), day_last_instant(day, policy.timezone)
        return [QueuePublished(**base, day=day, staff=c.staff, valid_from=start, valid_until=end)]
    if isinstance(c, Suspend):
        return _decide_suspend(c, base, policy)
    if isinstance(c, LiftSuspension):
        if c.actor_role not in policy.requalifiers:
            return _reject(c, ROLE_RULE, f"role {c.actor_role} may not re-qualify (ROT-17: 项目统一负责人)")
        open_ended = [s for s in state.suspensions if s.staff_id == c.staff_id and s.end is None and s.start <= at]
        if not open_ended:
            return _reject(c, "ROT-17", f"{c.staff_id} has no open-ended suspension; timed ones run their course")
        return [SuspensionLifted(**base, staff_id=c.staff_id)]
    if not state.in_force(at):
        return _reject(c, "ROT-02", f"no 轮序表 published for {local_day(at, policy.timezone)}")
    if c.staff_id not in state.status:
        return _reject(c, "ROT-02", f"{c.staff_id} is not on today's 轮序表")
    match c:
        case StandPost():
            return _decide_stand(state, c, base)
        case LeavePost():
            if state.status[c.staff_id] is PostStatus.RECEIVING:
                return _reject(c, INPUT_RULE, f"{c.staff_id} is receiving a customer")
            if c.notified is not None and (c.notified == c.staff_id or c.notified not in state.status):
                return _reject(c, INPUT_RULE, f"{c.notified} is not a colleague on today's 轮序表")
            return [PostLeft(**base, staff_id=c.staff_id, busy=c.busy, notified=c.notified)]
        case StartReception():
            return _decide_reception(state, c, base)
        case EndReception():
            if state.receiving.get(c.staff_id) != c.visit_id:
                return _reject(c, INPUT_RULE, f"{c.staff_id} is not receiving visit {c.visit_id}")
            return [ReceptionEnded(**base, staff_id=c.staff_id, visit_id=c.visit_id)]
        case WaiveTurn():
            return _decide_waiver(state, c, base, policy)
        case _:
            assert_never(c)


def _decide_suspend(c: Suspend, base: _Meta, policy: StaffPolicy) -> list[RotationFact]:
    if c.actor_role not in policy.violation_observers | {Role.SYSTEM}:
        return _reject(c, ROLE_RULE, f"role {c.actor_role} may not issue 停接 (ROT-05: 销售主管 or 销售经理)")
    if c.penalty.kind is not PenaltyKind.SUSPENSION:
        return _reject(c, INPUT_RULE, f"{c.penalty.rule_id} is a {c.penalty.kind.label}, not a 停接")
    return [SuspensionStarted(**base, suspension=Suspension.of(c.penalty))]


def _decide_stand(state: RotationState, c: StandPost, base: _Meta) -> list[RotationFact]:
    if state.status[c.staff_id] is PostStatus.RECEIVING:
        return _reject(c, INPUT_RULE, f"{c.staff_id} is receiving a customer")
    if state.waiving(c.staff_id, c.at):
        until = state.waived_until[c.staff_id]
        return _reject(c, "ROT-03", f"{c.staff_id} waived until {until.isoformat()} (放弃最短30分钟)")
    return [PostStood(**base, staff_id=c.staff_id)]


def _decide_reception(state: RotationState, c: StartReception, base: _Meta) -> list[RotationFact]:
    if c.visit_type is VisitType.UNKNOWN:
        return _reject(c, INPUT_RULE, "the visit type decides whether the reception counts (ROT-12)")
    suspension = state.suspension(c.staff_id, c.at)
    if suspension is not None:
        until = "re-qualified" if suspension.end is None else suspension.end.isoformat()
        return _reject(c, suspension.rule_id, f"{c.staff_id} is suspended (停接) until {until}")
    if state.status[c.staff_id] is PostStatus.RECEIVING:
        return _reject(c, INPUT_RULE, f"{c.staff_id} is already receiving visit {state.receiving[c.staff_id]}")
    counted = counts_toward_quota(c.visit_type, c.owner_id)
    skipped: tuple[str, ...] = ()
    if counted:
        expected = next_receiver(state, c.at)
        if expected is not None and expected != c.staff_id:
            return _reject(c, "ROT-02", f"it is {expected}'s turn, not {c.staff_id}'s", expected=expected)
        if expected is None and state.waiving(c.staff_id, c.at):
            return _reject(c, "ROT-03", f"{c.staff_id} waived the turn (放弃最短30分钟)")
        skipped = tuple(s for s in state.order[: state.order.index(c.staff_id)] if not state.available(s, c.at))
    fact = ReceptionStarted(
        **base,
        staff_id=c.staff_id,
        visit_id=c.visit_id,
        visit_type=c.visit_type,
        counted=counted,
        owner_id=c.owner_id,
        skipped=skipped,
    )
    return [fact]


def _decide_waiver(state: RotationState, c: WaiveTurn, base: _Meta, policy: StaffPolicy) -> list[RotationFact]:
    up = next_receiver(state, c.at)
    if up != c.staff_id:
        return _reject(c, "ROT-03", f"only the consultant whose turn it is may waive it ({up or 'nobody'} is up)")
    minimum = c.at + policy.waiver_minimum
    until = minimum if c.until is None else require_aware(c.until)
    if until < minimum:
        return _reject(c, "ROT-03", f"a waiver lasts at least {policy.waiver_minimum} (最短时间不得低于30分钟)")
    return [TurnWaived(**base, staff_id=c.staff_id, until=until, weight=policy.waiver_reception_weight)]


# ---------------------------------------------------------------------------------------------------------------
# evolve


_V = TypeVar("_V")


def _set(mapping: Mapping[str, _V], key: str, value: _V) -> Mapping[str, _V]:
    return MappingProxyType({**mapping, key: value})


def _drop(mapping: Mapping[str, _V], key: str) -> Mapping[str, _V]:
    return MappingProxyType({k: v for k, v in mapping.items() if k != key})


def _to_back(order: tuple[str, ...], staff_id: str) -> tuple[str, ...]:
    return (*(s for s in order if s != staff_id), staff_id)


def _status(state: RotationState, staff_id: str, status: PostStatus, at: datetime) -> RotationState:
    return replace(
        state,
        status=_set(state.status, staff_id, status),
        since=_set(state.since, staff_id, at),
        notified=_drop(state.notified, staff_id),
    )


def evolve(state: RotationState, fact: RotationFact) -> RotationState:
    match fact:
        case QueuePublished():
            return _published(state, fact)
        case PostStood():
            return _status(state, fact.staff_id, PostStatus.STANDING, fact.at)
        case PostLeft():
            new = _status(state, fact.staff_id, PostStatus.BUSY if fact.busy else PostStatus.AWAY, fact.at)
            if fact.notified is None:
                return new
            return replace(new, notified=_set(new.notified, fact.staff_id, fact.notified))
        case ReceptionStarted():
            new = _status(state, fact.staff_id, PostStatus.RECEIVING, fact.at)
            new = replace(new, receiving=_set(new.receiving, fact.staff_id, fact.visit_id))
            if not fact.counted:
                return new
            return replace(
                new,
                order=_to_back(new.order, fact.staff_id),
                receptions=_set(new.receptions, fact.staff_id, new.receptions.get(fact.staff_id, 0) + 1),
                recent_receivers=(*new.recent_receivers, fact.staff_id),
            )
        case ReceptionEnded():  # ROT-08: back to the front desk at once
            new = _status(state, fact.staff_id, PostStatus.STANDING, fact.at)
            return replace(new, receiving=_drop(new.receiving, fact.staff_id))
        case TurnWaived():
            return replace(
                state,
                order=_to_back(state.order, fact.staff_id),
                waived_until=_set(state.waived_until, fact.staff_id, fact.until),
                receptions=_set(state.receptions, fact.staff_id, state.receptions.get(fact.staff_id, 0) + fact.weight),
            )
        case SuspensionStarted():
            return replace(state, suspensions=(*state.suspensions, fact.suspension))
        case SuspensionLifted():
            kept = tuple(s for s in state.suspensions if not (s.staff_id == fact.staff_id and s.end is None))
            return replace(state, suspensions=kept)
        case RotationRejected():
            return state
        case _:
            assert_never(fact)


def _published(state: RotationState, fact: QueuePublished) -> RotationState:
    """A new day starts from scratch (suspensions still running carry over); a re-publication the same day keeps the
    counts, statuses and waivers of the staff who stay on the table."""
    same_day = state.day == fact.day
    staff = set(fact.staff)

    def keep(mapping: Mapping[str, _V]) -> Mapping[str, _V]:
        return MappingProxyType({k: v for k, v in mapping.items() if same_day and k in staff})

    status = {s: keep(state.status).get(s, PostStatus.STANDING) for s in fact.staff}
    since = {s: keep(state.since).get(s, fact.at) for s in fact.staff}
    return RotationState(
        day=fact.day,
        valid_from=fact.valid_from,
        valid_until=fact.valid_until,
        published_by=fact.actor_id,
        published=fact.staff,
        order=fact.staff,
        status=MappingProxyType(status),
        since=MappingProxyType(since),
        notified=keep(state.notified),
        waived_until=keep(state.waived_until),
        receiving=keep(state.receiving),
        receptions=keep(state.receptions),
        recent_receivers=tuple(s for s in state.recent_receivers if same_day and s in staff),
        suspensions=tuple(s for s in state.suspensions if s.end is None or s.end > fact.at),
    )


def fold(facts: Iterable[RotationFact], state: RotationState = INITIAL) -> RotationState:
    for fact in facts:
        state = evolve(state, fact)
    return state


# ---------------------------------------------------------------------------------------------------------------
# ROT-07: the first post


@dataclass(frozen=True)
class FirstPostFinding:
    """ROT-07 / PEN-25 「第一接待不得空位」: the first post is empty and ``accountable`` answers for it (the sanction
    is unspecified in the handbook, so this is a finding for a ViolationObserved, not a Penalty)."""

    accountable: str
    since: datetime
    chain: tuple[str, ...]  # the cascade walked: first, then each colleague who was told to take over
    rule_id: str = "ROT-07"
    sanction_id: str = "PEN-25"


def first_post_check(state: RotationState, at: datetime) -> FirstPostFinding | None:
    """Who answers for an empty first post at ``at``, or None when it is staffed (or nobody is expected there).

    Staff who are busy with work (ROT-09), receiving, waiving or suspended are excused and skipped. The first of the
    others holds the first post. If they are standing, all is well. If they are away, they are accountable, unless
    they told the next one (「如第一接待已通知第二接待…则追究第二接待责任,以此类推」): then the next one must stand,
    and so on down the order."""
    if not state.in_force(at):
        return None
    excused = {PostStatus.BUSY, PostStatus.RECEIVING}
    eligible = [
        s
        for s in state.order
        if state.status[s] not in excused and not state.waiving(s, at) and state.suspension(s, at) is None
    ]
    chain: list[str] = []
    for i, staff in enumerate(eligible):
        chain.append(staff)
        if state.status[staff] is PostStatus.STANDING:
            return None
        told = state.notified.get(staff)
        if i + 1 >= len(eligible) or told != eligible[i + 1]:
            since = max(state.since[s] for s in chain)
            return FirstPostFinding(staff, since, tuple(chain))
    return None


# ---------------------------------------------------------------------------------------------------------------
# ROT-05/11/17: 停接 suspensions


def suspension_penalty(
    staff_id: str,
    observer_role: str,
    at: datetime,
    evidence: tuple[str, ...],
    policy: StaffPolicy,
    *,
    refused_customer: bool = False,
) -> Penalty | Refusal:
    """The 停接 for a rotation violation seen by ``observer_role``.

    - ROT-05 / PEN-24 (skipping a turn, dodging the post, picking customers): 1 day if the 销售主管 finds it,
      3 days if the 销售经理 does.
    - ROT-11 / PEN-17 (``refused_customer``: 借故不接待客户): 1 day, whoever of them finds it.
    Other roles may not issue 停接 (§12.1)."""
    if observer_role not in policy.violation_observers:
        return Refusal(ROLE_RULE, f"role {observer_role} may not issue 停接", evidence)
    if refused_customer:
        rule, sanction, days = "ROT-11", "PEN-17", policy.refusal_suspension_days
    else:
        rule, sanction, found = "ROT-05", "PEN-24", policy.suspension_days_for(observer_role)
        if found is None:
            return Refusal(ROLE_RULE, f"ROT-05 names no suspension for a violation found by {observer_role}", evidence)
        days = found
    return Penalty(
        staff_id=staff_id,
        rule_id=rule,
        sanction_id=sanction,
        kind=PenaltyKind.SUSPENSION,
        day=local_day(at, policy.timezone),
        at=at,
        evidence=evidence,
        suspension_days=days,
        issued_by_role=observer_role,
    )
