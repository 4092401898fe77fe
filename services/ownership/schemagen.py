"""The Avro schemas of the ownership facts, derived from the fact dataclasses (facts.py) so the two never drift.

``python -m services.ownership.schemagen`` (re)writes ``schemas/events/<EventType>.avsc`` for every fact type;
tests/test_ownership_wire.py checks the files on disk are what this module derives. Changing a fact class means
regenerating, and tests/test_schemas.py then checks the change is backward compatible.

Mapping (documented in docs/ownership-policy.md, "Wire"): ``str`` → string, ``bool`` → boolean, ``datetime`` →
timestamp-millis, a ``StrEnum`` → string (its values listed in the doc: the core's enums are lowercase, and a string
lets the core add values without an Avro enum migration), ``tuple[str, ...]`` → array of string, ``Share`` →
record {staff_id, share "num/den"}, ``ChannelClaim`` → record with ``phone_masked`` instead of the raw phone, ``X |
None`` → ["null", X] with default null. A raw ``phone`` field becomes ``phone_masked`` (mask_phone): analytics
read this topic, and raw numbers stay in the processor's SQL tables.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

from services.ownership import facts as f
from services.ownership.wire import FACT_EVENT_TYPES, META_FIELDS, wire_name

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"
NAMESPACE = "anchang.events"

# One doc per fact type: what it says, the Chinese term, the rule ids it serves (tests/test_schemas.py wants both).
RECORD_DOCS: dict[type[Any], str] = {
    f.CallRecorded: "A call answered by a consultant (来电), kept as ownership evidence. Serves OWN-07, OWN-09.",
    f.VisitRecorded: "A visit (客户到访) kept as ownership evidence; the phone is masked. Serves OWN-01, OWN-08.",
    f.ChannelMentionRecorded: "The customer named a channel (提到渠道) before reception began. Serves OWN-14.",
    f.ChannelReportRecorded: "A channel 报备 kept as evidence; the phone is masked. Serves OWN-10, OWN-13.",
    f.FollowUpRecorded: "A consultant's follow-up (追访记录) kept as evidence. Serves OWN-09.",
    f.PriceNegotiationRecorded: "Price negotiation (价格谈判) began for the customer. Serves OWN-09, COM-03.",
    f.EmployeeReferralRecorded: "An employee referral (员工推荐) awaiting the visit. Serves OWN-09, COM-03.",
    f.OwnershipAssigned: "A staff member owns the customer (客户归属) from since until expires_at. Serves OWN-01…09.",
    f.OwnershipFirstContactCorrected: "An earlier arrival (先到访) read late takes first contact from a later visit's "
    "receiver. Serves OWN-01, OWN-02.",
    f.OwnershipProven: "A phone owner's claim honoured at the door (电转访确认). Serves OWN-08, OWN-09.",
    f.OwnershipExpired: "The 3-month ownership (时效性) ended: the customer is free. Serves OWN-05.",
    f.OwnershipExtended: "A return visit restarted the ownership period (回访延期). Serves OWN-05.",
    f.OwnershipRenewed: "The 售楼部主管 signed a renewal (重新登记) of the ownership. Serves OWN-06.",
    f.ServedForAbsentOwner: "A helper served an absent owner's customer (协助成交, 不计业绩). Serves OWN-02, COM-02.",
    f.RotationTurnReturned: "The receiving consultant gets their rotation turn back (还轮排). Serves OWN-09.",
    f.ChannelAttributed: "The earliest valid 报备 wins the customer for its channel (渠道归属). Serves OWN-10…13.",
    f.ChannelReportRejected: "A 报备 earns the channel nothing (自然到访), with the rule and why. Serves OWN-10…16.",
    f.CommissionWithheld: "The channel's commission is not paid (佣金不予发放). Serves COM-05, OWN-12, OWN-15, OWN-17.",
    f.ChannelBarred: "The channel agent may bring no more customers to this project (停止带客). Serves OWN-15.",
    f.ConfirmationSlipChecked: "A 带访确认单 checked against the attribution; a mismatch is a 甩单 suspicion. "
    "Serves OWN-17.",
    f.OrderDumpingFlagged: "甩单 confirmed: the consultant is to be dismissed (一律开除). Serves OWN-17.",
    f.SwitchRecorded: "The customer asked for another consultant (换销售员). Serves OWN-19.",
    f.DisputeOpened: "A consultant of a switch objected to the credit (异议). Serves COM-01, OWN-20.",
    f.CommissionSplit: "Shares of the staff credit (佣金分配, default 5:5). Serves COM-01, OWN-20.",
    f.DisputeClosed: "The superior (上级领导) settled the dispute. Serves OWN-20.",
    f.DealAttributed: "Who is credited for a 认购 and what the channel is owed (业绩归属). Serves COM-01…05, OWN-02.",
    f.DealReversed: "A processed refund (退订/退房) reverses the deal's credit. Serves SALE-19, COM-06.",
    f.Noted: "An ownership input accepted that changes nothing (备注). Serves OWN-01…20.",
    f.Rejected: "An ownership input refused (拒绝), with the rule and the reason. Serves OWN-01…20, COM-01.",
}

FIELD_DOCS: dict[str, str] = {
    "customer_key": "The customer (<project>:<digest of the phone>); the topic key. Never a phone number.",
    "staff_id": "Staff id of the consultant concerned.",
    "visit_id": "The visit registration.",
    "customer_name": "Customer name as registered or reported.",
    "phone_masked": "The phone, masked (138****0000): raw numbers never leave the office's database.",
    "received_by": "Staff id of the consultant who received the visit.",
    "kind": "Kind of visit (VisitType symbol).",
    "named_staff_id": "The consultant the customer named at the door (OWN-08).",
    "sms_from_staff_id": "The consultant whose SMS the customer showed (OWN-08).",
    "channel_mentioned": "The channel the customer mentioned on arrival (OWN-14).",
    "reception_started_at": "When the standard reception began, if recorded (OWN-14).",
    "employee_mentioned": "An employee the customer said referred them (OWN-09a).",
    "channel_id": "The channel company.",
    "agent_id": "The channel person (agent).",
    "group": "The WeChat group of the 报备: CHANNEL or KONGJIANJIA (空间家, OWN-16).",
    "pre_arranged_staff_id": "The consultant a 空间家 report pre-arranged (OWN-16).",
    "agent_barred_at": "When the agent was barred from the project, if before (OWN-15).",
    "employee_id": "The referring company employee.",
    "recommended_staff_id": "The consultant the employee nominated, if any yet.",
    "form_id": "The 员工推荐表 (employee referral form), if produced.",
    "basis": "Why the staff member owns the customer: first_contact, call_answerer, proven_at_door, natural_visit, "
    "referral_chain, relative or employee_referral.",
    "rule_id": "The rule applied, e.g. OWN-11 (rules.md).",
    "evidence": "Event ids the decision rests on, in order.",
    "since": "When the ownership began.",
    "expires_at": "When the ownership ends (OWN-05); the customer is free from this instant.",
    "previous_owner": "Whoever owned the customer just before, for a transfer.",
    "on_record": "Honoured at the door without proof (false only for an untraced phone contact, OWN-08).",
    "proof": "How the claim was proven: named, sms, received or documents.",
    "expired_at": "The expiry instant that passed.",
    "owner_id": "The customer's owner.",
    "helper_id": "The consultant who served for the absent owner (no credit).",
    "claim": "The winning 报备.",
    "replaces": "The report id this one beat, if another had won before.",
    "report_id": "The 报备 (its event id).",
    "reason": "Why, in words.",
    "detail": "Details of the verdict.",
    "deal_id": "The deal: the 认购 (subscription id); null means every deal of the ownership.",
    "matches": "The slip matches the winning 报备.",
    "from_staff_id": "The consultant the customer leaves.",
    "to_staff_id": "The consultant the customer asked for.",
    "raised_by": "Who objected.",
    "shares": "Shares of the staff credit.",
    "share": 'A share as an exact fraction "num/den", e.g. "1/2".',
    "unit_id": "The unit (房源) of the deal.",
    "signed_by": "Staff id of the consultant who signed the order.",
    "channel": "The winning 报备 on the deal, if any.",
    "channel_status": "The channel's commission: payable, withheld or not_applicable (COM-04).",
    "channel_rule": "The rule deciding the channel's commission.",
    "channel_reason": "Why the channel's commission is payable, withheld or not applicable.",
    "freezes_ownership": "The ownership stops expiring while the deal stands.",
    "owner_expires_at": "The ownership's new expiry when the refund ends the freeze, else null.",
    "event_type": "The input refused or noted (its decider class name).",
    "note": "What was noted.",
    "current_owner": "The customer's owner when the input was refused.",
    "reported_at": "When the 报备 was posted.",
}


def _primitive(hint: Any, name: str) -> Any:
    if hint is str or hint is Fraction or (isinstance(hint, type) and issubclass(hint, StrEnum)):
        return "string"
    if hint is bool:
        return "boolean"
    if hint is datetime:
        return {"type": "long", "logicalType": "timestamp-millis"}
    if hint is f.ChannelClaim:
        return _record(f.ChannelClaim, "OwnershipChannelClaim", "The winning 报备 (channel claim).")
    if hint is f.Share:
        return _record(f.Share, "OwnershipShare", "One staff member's share of the credit.")
    origin = typing.get_origin(hint)
    if origin is tuple:
        return {"type": "array", "items": _primitive(typing.get_args(hint)[0], name)}
    raise TypeError(f"no Avro type for {name}: {hint!r}")


def _field(name: str, hint: Any) -> dict[str, Any]:
    wire = wire_name(name)
    doc = FIELD_DOCS[wire]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return {"name": wire, "type": ["null", _primitive(inner, name)], "default": None, "doc": doc}
    return {"name": wire, "type": _primitive(hint, name), "doc": doc}


def _record(cls: type[Any], name: str, doc: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(f))
    fields = [_field(fld.name, hints[fld.name]) for fld in dataclasses.fields(cls)]
    return {"type": "record", "name": name, "doc": doc, "fields": fields}


def fact_schema(cls: type[Any]) -> dict[str, Any]:
    event_type = FACT_EVENT_TYPES[cls]
    hints = typing.get_type_hints(cls, vars(f))
    fields: list[dict[str, Any]] = [
        {"name": "envelope", "type": "anchang.events.Envelope", "doc": "Shared event metadata (ids, office, times, "
         "actor); causation_id is the input decided, occurred_at its time."},
        {"name": "customer_key", "type": "string", "doc": FIELD_DOCS["customer_key"]},
    ]  # fmt: skip
    fields += [_field(fld.name, hints[fld.name]) for fld in dataclasses.fields(cls) if fld.name not in META_FIELDS]
    return {"type": "record", "name": event_type, "namespace": NAMESPACE, "doc": RECORD_DOCS[cls], "fields": fields}


def all_schemas() -> dict[str, dict[str, Any]]:
    return {event_type: fact_schema(cls) for cls, event_type in FACT_EVENT_TYPES.items()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    for event_type, schema in all_schemas().items():
        (SCHEMA_DIR / f"{event_type}.avsc").write_text(render(schema), encoding="utf-8")


if __name__ == "__main__":
    main()
