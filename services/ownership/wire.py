"""Between the pure ownership core and storage: facts to Avro records (``anchang.ownership``, phones masked) and
to and from JSON (the processor's SQL memory, phones kept, so folding the stored facts rebuilds the exact state).

Why two forms: the OWN-12 check compares the reported phone with the visit register's, so the state needs the raw
number; but analytics read the topic, so the wire carries ``phone_masked`` only (docs/ownership-policy.md, "Wire").
Fact event ids derive from the input's event id and the fact's index, so deciding the same input again after a
crash re-emits identical ids that consumers drop."""

from __future__ import annotations

import dataclasses
import typing
import uuid
from datetime import datetime
from enum import Enum
from fractions import Fraction
from functools import cache
from typing import Any

from services.ownership import facts as f
from services.ownership.customers import mask_phone

# A fixed namespace: fact ids must be the same on every machine and every run.
FACT_ID_NAMESPACE = uuid.UUID("3a7e9c41-5b2d-4f8a-9c16-7d0e2b4f6a83")

FACT_EVENT_TYPES: dict[type[Any], str] = {
    f.CallRecorded: "OwnershipCallRecorded",
    f.VisitRecorded: "OwnershipVisitRecorded",
    f.ChannelMentionRecorded: "ChannelMentionRecorded",
    f.ChannelReportRecorded: "ChannelReportRecorded",
    f.FollowUpRecorded: "OwnershipFollowUpRecorded",
    f.PriceNegotiationRecorded: "OwnershipPriceNegotiationRecorded",
    f.EmployeeReferralRecorded: "EmployeeReferralRecorded",
    f.OwnershipAssigned: "OwnershipAssigned",
    f.OwnershipFirstContactCorrected: "OwnershipFirstContactCorrected",
    f.OwnershipProven: "OwnershipProven",
    f.OwnershipExpired: "OwnershipExpired",
    f.OwnershipExtended: "OwnershipExtended",
    f.OwnershipRenewed: "OwnershipRenewed",
    f.ServedForAbsentOwner: "ServedForAbsentOwner",
    f.RotationTurnReturned: "OwnershipRotationTurnReturned",
    f.ChannelAttributed: "ChannelAttributed",
    f.ChannelReportRejected: "ChannelReportRejected",
    f.CommissionWithheld: "CommissionWithheld",
    f.ChannelBarred: "ChannelBarred",
    f.ConfirmationSlipChecked: "VisitConfirmationSlipChecked",
    f.OrderDumpingFlagged: "OrderDumpingFlagged",
    f.SwitchRecorded: "SalespersonSwitchRecorded",
    f.DisputeOpened: "OwnershipDisputeOpened",
    f.CommissionSplit: "CommissionSplit",
    f.DisputeClosed: "OwnershipDisputeClosed",
    f.DealAttributed: "DealAttributed",
    f.DealReversed: "DealReversed",
    f.Noted: "OwnershipInputNoted",
    f.Rejected: "OwnershipInputRejected",
}
FACT_CLASSES = {event_type: cls for cls, event_type in FACT_EVENT_TYPES.items()}
META_FIELDS = frozenset({"customer_key", "caused_by", "at", "actor_id", "actor_role"})
PHONE = "phone"


def wire_name(field: str) -> str:
    """The Avro field name of a dataclass field: raw phones travel masked."""
    return "phone_masked" if field == PHONE else field


def fact_event_id(input_id: str, index: int) -> str:
    """The id of the ``index``-th fact answering ``input_id``: the same whenever it is decided."""
    return str(uuid.uuid5(FACT_ID_NAMESPACE, f"{input_id}/{index}"))


def event_type_of(fact: f.Fact) -> str:
    return FACT_EVENT_TYPES[type(fact)]


def rule_of(fact: f.Fact) -> str | None:
    return getattr(fact, "rule_id", None)


# ------------------------------------------------------------------------------- Avro (the topic), JSON (the SQL)


def fact_to_record(fact: f.Fact, *, event_id: str, office_id: str, recorded_at: datetime) -> tuple[str, dict[str, Any]]:
    """(event type, Avro record) for ``fact``, phones masked."""
    event_type, record, _ = fact_to_record_and_json(
        fact, event_id=event_id, office_id=office_id, recorded_at=recorded_at
    )
    return event_type, record


def fact_to_json(fact: f.Fact) -> dict[str, Any]:
    """The whole fact as JSON (raw phones included: this stays in the office's database)."""
    return typing.cast(dict[str, Any], _to_both(fact)[1])


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(f))


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is not None and origin is not tuple:  # X | None
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_json(inner, value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_from_json(item, element) for element in value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint is Fraction:
        return Fraction(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value)
    return value


def _build(cls: Any, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    return cls(**{fld.name: _from_json(hints[fld.name], data[fld.name]) for fld in dataclasses.fields(cls)})


# ------------------------------------------------------------------------------------- both forms in one walk

_PLAIN = frozenset({str, int, float, bool, type(None)})


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(fld.name for fld in dataclasses.fields(cls))
    return names


def _to_both(value: Any) -> tuple[Any, Any]:
    """(the Avro form of ``value``, phones masked; its JSON form, raw phones, datetimes as ISO text) in one walk."""
    kind = type(value)
    if kind in _PLAIN:
        return value, value
    if isinstance(value, datetime):
        return value, value.isoformat()
    if isinstance(value, Enum):
        return value.value, value.value
    if isinstance(value, Fraction):
        text = f"{value.numerator}/{value.denominator}"
        return text, text
    if isinstance(value, tuple):
        pairs = [_to_both(item) for item in value]
        return [avro for avro, _ in pairs], [json for _, json in pairs]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        avro_fields: dict[str, Any] = {}
        json_fields: dict[str, Any] = {}
        for name in _field_names(kind):
            avro_value, json_value = _to_both(getattr(value, name))
            if name == PHONE:
                avro_fields[wire_name(name)] = mask_phone(getattr(value, name))
            else:
                avro_fields[name] = avro_value
            json_fields[name] = json_value
        return avro_fields, json_fields
    return value, value


def fact_to_record_and_json(
    fact: f.Fact, *, event_id: str, office_id: str, recorded_at: datetime
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(event type, Avro record, JSON body) of ``fact`` from one walk over its fields: the processor needs both
    forms of every fact it decides."""
    event_type = event_type_of(fact)
    record: dict[str, Any] = {
        "envelope": {
            "event_id": event_id,
            "event_type": event_type,
            "office_id": office_id,
            "occurred_at": fact.at,
            "recorded_at": recorded_at,
            "actor": {"staff_id": fact.actor_id, "role": str(fact.actor_role)},
            "correlation_id": fact.caused_by,
            "causation_id": fact.caused_by,
        },
        "customer_key": fact.customer_key,
    }
    body, json_body = _to_both(fact)
    record.update({name: value for name, value in body.items() if name not in META_FIELDS})
    return event_type, record, json_body


def json_to_fact(event_type: str, data: dict[str, Any]) -> f.Fact:
    """The inverse of ``fact_to_json``."""
    return typing.cast(f.Fact, _build(FACT_CLASSES[event_type], data))
