"""Between the pure 销控 domain and the Avro wire: commands from ``UnitCommandIssued`` records, facts to and
from the unit event records on ``anchang.units``.

Facts keep their domain field names on the wire (schemas/events/*.avsc), except for the envelope: a fact's
``caused_by`` is the envelope's ``causation_id``, ``at`` its ``occurred_at`` and the actor its ``actor``.
Fact event ids are derived from the command id, so deciding the same command again (after a crash between
producing and committing) re-emits identical events that projections drop as duplicates."""

from __future__ import annotations

import dataclasses
import typing
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

from services.sales import domain as d

# A fixed namespace: fact ids must be the same on every machine and every run.
FACT_ID_NAMESPACE = uuid.UUID("6f1c6a52-8d5e-4c1e-9a43-5f0b1c2d3e4f")

FACT_EVENT_TYPES: dict[type[Any], str] = {
    d.LockRequested: "UnitLockRequested",
    d.Locked: "UnitLocked",
    d.LockRejected: "UnitLockRejected",
    d.LockRequestLapsed: "UnitLockRequestLapsed",
    d.LockReleased: "UnitLockReleased",
    d.SubscriptionSigned: "SubscriptionSigned",
    d.PaymentReceived: "PaymentReceived",
    d.SubscriptionAbandoned: "SubscriptionAbandoned",
    d.ContractSigned: "ContractSigned",
    d.RefundRequested: "RefundRequested",
    d.RefundReviewed: "RefundReviewed",
    d.RefundSubmittedToDeveloper: "RefundSubmittedToDeveloper",
    d.RefundApproved: "RefundApproved",
    d.RefundRejected: "RefundRejected",
    d.RefundProcessed: "RefundProcessed",
    d.CommandRejected: "UnitCommandRejected",
}
FACT_CLASSES = {event_type: cls for cls, event_type in FACT_EVENT_TYPES.items()}

# Domain field → wire field, where the older schemas named them differently.
RENAMED: dict[str, dict[str, str]] = {"UnitLocked": {"request_id": "requested_event_id"}}

Derived = Callable[[Any], Any]
# Wire fields the domain does not carry, derived from the fact (who acted, when, what it answers).
DERIVED: dict[str, dict[str, Derived]] = {
    "UnitLocked": {"confirmed_by": lambda f: f.actor_id},
    "UnitLockRejected": {"rejected_event_id": lambda f: f.caused_by},
    "UnitLockReleased": {"released_by": lambda f: f.actor_id},
    "SubscriptionSigned": {"staff_id": lambda f: f.actor_id, "signed_at": lambda f: f.at},
    "PaymentReceived": {"received_by": lambda f: f.actor_id},
    "RefundRequested": {"submitted_to": lambda f: "SALES_MANAGER"},
    "RefundReviewed": {"reviewed_by": lambda f: f.actor_id, "forwarded_to_developer": lambda f: False},
    "RefundApproved": {"approved_by": lambda f: f.actor_id},
    "RefundRejected": {"rejected_by": lambda f: f.actor_id},
    "RefundProcessed": {"processed_by": lambda f: f.actor_id},
}

META_FIELDS = frozenset({"unit_id", "caused_by", "at", "actor_id", "actor_role"})


def fact_event_id(command_id: str, index: int) -> str:
    """The id of the ``index``-th fact answering ``command_id``: the same whenever it is decided."""
    return str(uuid.uuid5(FACT_ID_NAMESPACE, f"{command_id}/{index}"))


def fact_to_record(fact: d.Fact, *, event_id: str, office_id: str, recorded_at: datetime) -> tuple[str, dict[str, Any]]:
    """(event type, Avro record) for ``fact``."""
    event_type = FACT_EVENT_TYPES[type(fact)]
    renamed = RENAMED.get(event_type, {})
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
        "unit_id": fact.unit_id,
    }
    for field in dataclasses.fields(fact):
        if field.name not in META_FIELDS:
            value = getattr(fact, field.name)
            record[renamed.get(field.name, field.name)] = value.value if isinstance(value, Enum) else value
    for name, derive in DERIVED.get(event_type, {}).items():
        record[name] = derive(fact)
    return event_type, record


def record_to_fact(event_type: str, record: dict[str, Any]) -> d.Fact:
    """The domain fact a unit event record carries (the inverse of ``fact_to_record``)."""
    cls = FACT_CLASSES[event_type]
    envelope = record["envelope"]
    renamed = RENAMED.get(event_type, {})
    values: dict[str, Any] = {
        "unit_id": record["unit_id"],
        "caused_by": str(envelope["causation_id"]),
        "at": envelope["occurred_at"],
        "actor_id": envelope["actor"]["staff_id"],
        "actor_role": envelope["actor"]["role"],
    }
    for name, kind in _field_types(event_type).items():
        if name not in META_FIELDS:
            raw = record[renamed.get(name, name)]
            values[name] = kind(raw) if kind is not None and raw is not None else raw
    return typing.cast(d.Fact, cls(**values))


@cache
def _field_types(event_type: str) -> dict[str, type[Enum] | None]:
    """Each field of a fact class, with the enum class to rebuild it with, if it is an enum."""
    cls = FACT_CLASSES[event_type]
    hints = typing.get_type_hints(cls, vars(d))
    return {
        field.name: hints[field.name]
        if isinstance(hints[field.name], type) and issubclass(hints[field.name], Enum)
        else None
        for field in dataclasses.fields(cls)
    }


class InvalidCommand(ValueError):
    """A UnitCommandIssued record that lacks what its command type needs; ``field`` names what is missing."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# Command type → (domain class, its fields taken from the record: domain name → wire name).
COMMANDS: dict[str, tuple[type[Any], dict[str, str]]] = {
    "REQUEST_LOCK": (d.RequestLock, {"customer_id": "customer_id", "staff_id": "staff_id"}),
    "CONFIRM_LOCK": (d.ConfirmLock, {"customer_id": "customer_id"}),
    "SIGN_SUBSCRIPTION": (
        d.SignSubscription,
        {"subscription_id": "subscription_id", "customer_id": "customer_id", "price_fen": "price_fen"},
    ),
    "RECEIVE_PAYMENT": (
        d.ReceivePayment,
        {
            "subscription_id": "subscription_id",
            "amount_fen": "amount_fen",
            "kind": "payment_kind",
            "receipt_no": "receipt_no",
        },
    ),
    "RELEASE_LOCK": (d.ReleaseLock, {}),
    "EXPIRE_DEADLINE": (d.ExpireDeadline, {"subscription_id": "subscription_id"}),
    "SIGN_CONTRACT": (d.SignContract, {"subscription_id": "subscription_id"}),
    "REQUEST_REFUND": (d.RequestRefund, {"refund_id": "refund_id", "kind": "refund_kind"}),
    "REVIEW_REFUND": (d.ReviewRefund, {"refund_id": "refund_id"}),
    "SUBMIT_REFUND_TO_DEVELOPER": (d.SubmitRefundToDeveloper, {"refund_id": "refund_id"}),
    "APPROVE_REFUND": (d.ApproveRefund, {"refund_id": "refund_id"}),
    "REJECT_REFUND": (d.RejectRefund, {"refund_id": "refund_id", "reason": "reason"}),
    "PROCESS_REFUND": (d.ProcessRefund, {"refund_id": "refund_id"}),
}
OPTIONAL_COMMAND_FIELDS: dict[str, dict[str, str]] = {
    "RELEASE_LOCK": {"reason": "reason"},
    "REQUEST_REFUND": {"reason": "reason"},
    "APPROVE_REFUND": {"approved_amount_fen": "amount_fen"},
}


def record_to_command(record: dict[str, Any]) -> d.Command:
    """The domain command of a UnitCommandIssued record. Its time is ``recorded_at``: when Anchang accepted
    it, not a time the client claims, so nobody can backdate a payment past the deadline."""
    envelope = record["envelope"]
    command_type = record["command_type"]
    if command_type not in COMMANDS:
        raise InvalidCommand("command_type", f"unknown command type {command_type!r}")
    cls, required = COMMANDS[command_type]
    values: dict[str, Any] = {
        "command_id": str(envelope["event_id"]),
        "unit_id": record["unit_id"],
        "actor_id": envelope["actor"]["staff_id"],
        "actor_role": envelope["actor"]["role"],
        "at": envelope["recorded_at"],
    }
    for name, wire in required.items():
        if record.get(wire) is None:
            raise InvalidCommand(wire, f"required for {command_type}")
        values[name] = record[wire]
    for name, wire in OPTIONAL_COMMAND_FIELDS.get(command_type, {}).items():
        if record.get(wire) is not None:
            values[name] = record[wire]
    return typing.cast(d.Command, cls(**values))


COMMAND_FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    command_type: frozenset(required.values()) for command_type, (_, required) in COMMANDS.items()
}
