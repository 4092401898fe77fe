"""From consumed records to the ownership core's inputs (events.py): the translation half of the shell.

Pure given a ``Context`` (the lookups the processor answers from SQL: a customer's owner, the project blocklist, the
认购 it learnt from 销控). Each record becomes one of:

- ``Decide``: a core event for one customer;
- ``Refuse``: an input about a known customer that lacks what its command needs (answered with ``Rejected`` INPUT);
- ``Skip``: an input that names no customer Anchang can identify (an invalid phone, an unknown 销控 customer): a
  decision row, a counter and a log line with the reason, never silence;
- ``SetTarget``: a 销售经理's sales target (COM-06), which concerns no customer;
- ``None``: a record the ownership core does not read (e.g. a payment that did not stop the clock).

Times: observations carry their event time (the WeChat message time of a 报备, the register's arrival time);
decisions by people and the expiry timer take ``recorded_at``, so nobody backdates a renewal or a confirmation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any, Protocol

from services.ownership import events as e
from services.ownership.customers import InvalidPhone
from services.ownership.facts import INPUT_RULE

__all__ = ["Context", "Decide", "Input", "Refuse", "SetTarget", "Skip", "translate"]

COM_06_RULE = "COM-06"  # sales targets (业绩达成率)
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")

# Commands whose time is the event's own (occurred_at); the others are decisions taken when recorded.
OBSERVATIONS = frozenset(
    {
        "REPORT_CHANNEL_CUSTOMER",
        "MENTION_CHANNEL",
        "RECORD_REFERRAL",
        "DECLARE_RELATION",
        "REPORT_EMPLOYEE_REFERRAL",
        "START_PRICE_NEGOTIATION",
        "RECORD_CALLBACK",
        "SIGN_VISIT_CONFIRMATION_SLIP",
    }
)


class Context(Protocol):
    def customer_key(self, project_id: str, phone: str) -> str: ...

    def known_customer(self, key: str) -> bool: ...

    def owner_of(self, key: str) -> str | None: ...

    def barred_at(self, project_id: str, agent_id: str) -> datetime | None: ...

    def subscription(self, subscription_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Decide:
    event: e.Event


@dataclass(frozen=True)
class Refuse:
    customer_key: str
    event_type: str
    field: str
    reason: str
    rule_id: str = INPUT_RULE


@dataclass(frozen=True)
class Skip:
    reason: str  # a short label (metric label)
    detail: str  # never a raw phone


@dataclass(frozen=True)
class SetTarget:
    staff_id: str
    month: str
    target_amount_fen: int


Input = Decide | Refuse | Skip | SetTarget


class _Missing(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _need(record: dict[str, Any], field: str, command_type: str) -> Any:
    value = record.get(field)
    if value is None or value == "":
        raise _Missing(field, f"{field} is required for {command_type}")
    return value


def project_of(key: str) -> str:
    return key.split(":", 1)[0]


def _key(record: dict[str, Any], office_id: str, context: Context) -> str | None:
    """The customer of a command: its customer_key, or the key of its phone in its project (or office)."""
    if record.get("customer_key"):
        return str(record["customer_key"])
    if record.get("phone"):
        return context.customer_key(record.get("project_id") or office_id, record["phone"])
    return None


def _base(record: dict[str, Any], key: str, at: datetime) -> dict[str, Any]:
    envelope = record["envelope"]
    return {
        "event_id": str(envelope["event_id"]),
        "customer_key": key,
        "at": at,
        "actor_id": envelope["actor"]["staff_id"],
        "actor_role": envelope["actor"]["role"],
    }


def translate(event_type: str, record: dict[str, Any], context: Context) -> Input | None:
    envelope = record["envelope"]
    office_id = envelope["office_id"]
    try:
        if event_type == "OwnershipCommandIssued":
            return _command(record, office_id, context)
        if event_type == "VisitRegistered":
            return _visit(record, office_id, context)
        if event_type == "CallLogged":
            if not record.get("phone"):
                return Skip("no_phone", f"call {record['call_id']} logged without the caller's phone")
            key = context.customer_key(office_id, record["phone"])
            return Decide(e.CallAnswered(**_base(record, key, envelope["occurred_at"]), staff_id=record["staff_id"]))
        if event_type == "CallReceived":
            if not (record.get("answered_at") and record.get("answered_by") and record.get("caller_number")):
                return None  # unanswered or withheld: nobody to own (CALL-05)
            key = context.customer_key(office_id, record["caller_number"])
            return Decide(e.CallAnswered(**_base(record, key, record["answered_at"]), staff_id=record["answered_by"]))
        return _units(event_type, record, context)
    except InvalidPhone as problem:
        return Skip("invalid_phone", f"{event_type} {envelope['event_id']}: {problem}")


def _visit(record: dict[str, Any], office_id: str, context: Context) -> Input:
    if not record.get("received_by"):
        return Skip("no_receiver", f"visit {record['visit_id']} registered without received_by (OWN-01)")
    key = context.customer_key(record.get("project_id") or office_id, record["phone"])
    named = record.get("prior_consultant_named")
    sms = bool(record.get("sms_evidence_shown"))
    referrer = record.get("referrer")
    referrer_key = referrer if referrer and context.known_customer(referrer) else None
    kind = record.get("visit_type") or "UNKNOWN"
    return Decide(
        e.VisitReceived(
            **_base(record, key, record["arrived_at"]),
            visit_id=record["visit_id"],
            customer_name=record["customer_name"],
            phone=record["phone"],
            received_by=record["received_by"],
            kind=e.VisitKind(kind) if kind in e.VisitKind.__members__ else e.VisitKind.UNKNOWN,
            named_staff_id=named if named and not sms else None,
            sms_from_staff_id=named if named and sms else None,
            channel_mentioned=record.get("channel_mentioned"),
            referrer_key=referrer_key,
            referrer_owner_id=context.owner_of(referrer_key) if referrer_key else None,
        )
    )


def _units(event_type: str, record: dict[str, Any], context: Context) -> Input | None:
    """销控 facts: the 认购 whose deposit stopped the clock is the deal; a processed refund reverses it."""
    if event_type == "PaymentReceived" and record.get("stops_clock"):
        subscription = context.subscription(record["subscription_id"])
        if subscription is None:
            return Skip(
                "unknown_subscription", f"认购 {record['subscription_id']} of a customer not known to ownership"
            )
        return Decide(
            e.DealSubscribed(
                **_base(record, subscription["customer_key"], subscription["signed_at"]),
                deal_id=record["subscription_id"],
                unit_id=record["unit_id"],
                signed_by=subscription["staff_id"],
            )
        )
    if event_type == "RefundProcessed":
        subscription = context.subscription(record["subscription_id"])
        if subscription is None:
            return Skip("unknown_subscription", f"refund of 认购 {record['subscription_id']} not known to ownership")
        base = _base(record, subscription["customer_key"], record["envelope"]["occurred_at"])
        return Decide(e.DealRefunded(**base, deal_id=record["subscription_id"]))
    return None


def _shares(raw: list[dict[str, Any]] | None) -> tuple[tuple[str, Fraction], ...] | None:
    if raw is None:
        return None
    try:
        return tuple((item["staff_id"], Fraction(item["share"])) for item in raw)
    except (ValueError, ZeroDivisionError) as problem:
        raise _Missing("shares", f'each share is a fraction "num/den": {problem}') from problem


def _command(record: dict[str, Any], office_id: str, context: Context) -> Input:
    envelope = record["envelope"]
    command_type = str(record["command_type"])
    if command_type == "SET_SALES_TARGET":
        return _target(record)
    key = _key(record, office_id, context)
    if key is None:
        return Skip("no_customer", f"{command_type} {envelope['event_id']} names no customer_key or phone")
    at = envelope["occurred_at"] if command_type in OBSERVATIONS else envelope["recorded_at"]
    base = _base(record, key, at)
    try:
        return Decide(_event(command_type, record, base, key, context))
    except _Missing as missing:
        return Refuse(key, command_type, missing.field, str(missing))


def _target(record: dict[str, Any]) -> Input:
    staff, month, amount = record.get("staff_id"), record.get("month"), record.get("target_amount_fen")
    if not staff or not month or not MONTH.fullmatch(month) or amount is None or amount <= 0:
        detail = "SET_SALES_TARGET needs staff_id, month (YYYY-MM) and a positive target_amount_fen"
        return Skip("invalid_target", f"{COM_06_RULE}: {detail}")
    return SetTarget(staff, month, int(amount))


def _event(command_type: str, r: dict[str, Any], base: dict[str, Any], key: str, context: Context) -> e.Event:

    def need(field: str) -> Any:
        return _need(r, field, command_type)

    match command_type:
        case "REPORT_CHANNEL_CUSTOMER":
            agent = need("agent_id")
            group = r.get("report_group") or "CHANNEL"
            if group not in e.ReportGroup.__members__:
                raise _Missing("report_group", "report_group is CHANNEL or KONGJIANJIA")
            return e.ChannelReported(
                **base, channel_id=need("channel_id"), agent_id=agent, customer_name=need("customer_name"),
                phone=need("phone"), group=e.ReportGroup(group), pre_arranged_staff_id=r.get("pre_arranged_staff_id"),
                agent_barred_at=context.barred_at(project_of(key), agent),
            )  # fmt: skip
        case "MENTION_CHANNEL":
            return e.ChannelMentioned(**base, visit_id=need("visit_id"), channel_id=need("channel_id"))
        case "RECORD_REFERRAL":
            referring = need("referring_customer_key")
            owner = context.owner_of(referring)
            if owner is None:
                raise _Missing("referring_customer_key", "the referring customer has no owner to inherit (OWN-03)")
            return e.ReferralRecorded(**base, referring_customer_key=referring, referrer_owner_id=owner)
        case "DECLARE_RELATION":
            return e.RelationDeclared(**base, staff_id=need("staff_id"), relation=r.get("relation") or "relative")
        case "REPORT_EMPLOYEE_REFERRAL":
            return e.EmployeeReferralReported(
                **base, employee_id=need("employee_id"), recommended_staff_id=r.get("recommended_staff_id"),
                form_id=r.get("form_id"),
            )  # fmt: skip
        case "START_PRICE_NEGOTIATION":
            return e.PriceNegotiationStarted(**base, visit_id=need("visit_id"), staff_id=need("staff_id"))
        case "RECORD_CALLBACK":
            return e.CallbackMade(**base, staff_id=need("staff_id"))
        case "APPROVE_RENEWAL":
            return e.RenewalApproved(**base, staff_id=need("staff_id"))
        case "REQUEST_SWITCH":
            return e.SwitchRequested(
                **base, from_staff_id=need("from_staff_id"), to_staff_id=need("to_staff_id"),
                requested_by_customer=bool(need("requested_by_customer")),
            )  # fmt: skip
        case "RAISE_DISPUTE":
            return e.DisputeRaised(**base, raised_by=need("raised_by"))
        case "RESOLVE_DISPUTE":
            return e.DisputeResolved(**base, shares=_shares(r.get("shares")))
        case "CONFIRM_POACHING":
            return e.PoachingConfirmed(**base, channel_id=need("channel_id"), agent_id=need("agent_id"))
        case "SIGN_VISIT_CONFIRMATION_SLIP":
            return e.VisitConfirmationSlipSigned(
                **base, channel_id=need("channel_id"), agent_id=need("agent_id"), staff_id=need("staff_id")
            )
        case "CONFIRM_ORDER_DUMPING":
            return e.OrderDumpingConfirmed(**base, staff_id=need("staff_id"), channel_id=need("channel_id"))
        case "EXPIRE_OWNERSHIP":
            return e.ExpiryDue(**base)
    raise _Missing("command_type", f"unknown command type {command_type!r}")
