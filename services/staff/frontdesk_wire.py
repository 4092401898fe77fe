"""Between the pure rotation core (services/staff/rotation.py) and the Avro wire of the front desk: rotation commands
from ``RotationCommandIssued`` records, rotation facts to and from their records on ``anchang.frontdesk.facts``.

A fact's ``caused_by`` is its envelope's ``causation_id``, ``at`` its ``occurred_at`` and the actor its ``actor``.
Fact ids are derived from the causing event id and the fact's index, so deciding the same input again (a crash
between producing and committing) re-emits identical events that consumers drop as duplicates."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.staff import rotation as r
from services.staff.penalties import Penalty
from services.staff.policy import StaffPolicy
from services.staff.refusal import INPUT_RULE, ROLE_RULE
from services.staff.rotation import VisitType

FACTS_TOPIC = "anchang.frontdesk.facts"
INPUT_TOPIC = "anchang.frontdesk"
FACT_ID_NAMESPACE = uuid.UUID("3e0c9a7d-51b4-4f0a-9c8e-2d7b6a1f4e93")

FACT_EVENT_TYPES: dict[type[Any], str] = {
    r.QueuePublished: "RotationQueuePublished",
    r.PostStood: "PostStood",
    r.PostLeft: "PostLeft",
    r.ReceptionStarted: "ReceptionStarted",
    r.ReceptionEnded: "ReceptionEnded",
    r.TurnWaived: "TurnWaived",
    r.SuspensionStarted: "ReceptionSuspensionStarted",
    r.SuspensionLifted: "ReceptionSuspensionLifted",
    r.RotationRejected: "RotationCommandRejected",
}
ROTATION_EVENT_TYPES = frozenset(FACT_EVENT_TYPES.values())
SUSPENSION_EVENT_TYPES = ("ReceptionSuspensionStarted", "ReceptionSuspensionLifted")


def fact_event_id(cause_id: str, index: int) -> str:
    """The id of the ``index``-th fact answering ``cause_id``: the same whenever it is decided."""
    return str(uuid.uuid5(FACT_ID_NAMESPACE, f"{cause_id}/{index}"))


def envelope(
    event_type: str, *, event_id: str, office_id: str, at: datetime, recorded_at: datetime, actor: tuple[str, str],
    caused_by: str | None,
) -> dict[str, Any]:  # fmt: skip
    cause = _uuid_or_none(caused_by)
    return {
        "event_id": event_id,
        "event_type": event_type,
        "office_id": office_id,
        "occurred_at": at,
        "recorded_at": recorded_at,
        "actor": {"staff_id": actor[0], "role": actor[1]},
        "correlation_id": cause or event_id,
        "causation_id": cause,
    }


def _uuid_or_none(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _payload(fact: r.RotationFact) -> dict[str, Any]:
    match fact:
        case r.QueuePublished():
            return {"day": fact.day, "ordered_staff": list(fact.staff), "valid_from": fact.valid_from,
                    "valid_until": fact.valid_until}  # fmt: skip
        case r.PostStood() | r.SuspensionLifted():
            return {"staff_id": fact.staff_id}
        case r.PostLeft():
            return {"staff_id": fact.staff_id, "busy": fact.busy, "notified": fact.notified}
        case r.ReceptionStarted():
            return {"staff_id": fact.staff_id, "visit_id": fact.visit_id, "visit_type": str(fact.visit_type),
                    "counted": fact.counted, "owner_id": fact.owner_id, "skipped": list(fact.skipped)}  # fmt: skip
        case r.ReceptionEnded():
            return {"staff_id": fact.staff_id, "visit_id": fact.visit_id}
        case r.TurnWaived():
            return {"staff_id": fact.staff_id, "until": fact.until, "weight": fact.weight}
        case r.SuspensionStarted():
            s = fact.suspension
            return {"staff_id": s.staff_id, "start": s.start, "end": s.end, "rule_id": s.rule_id,
                    "evidence_event_ids": list(s.evidence)}  # fmt: skip
        case r.RotationRejected():
            return {"command_type": fact.command_type, "rule_id": fact.rule_id, "reason": fact.reason,
                    "expected": fact.expected}  # fmt: skip


def fact_to_record(
    fact: r.RotationFact, *, event_id: str, office_id: str, recorded_at: datetime
) -> tuple[str, dict[str, Any]]:
    """(event type, Avro record) for a rotation fact."""
    event_type = FACT_EVENT_TYPES[type(fact)]
    head = envelope(event_type, event_id=event_id, office_id=office_id, at=fact.at, recorded_at=recorded_at,
                    actor=(fact.actor_id, str(fact.actor_role)), caused_by=fact.caused_by)  # fmt: skip
    return event_type, {"envelope": head, **_payload(fact)}


def record_to_fact(event_type: str, record: dict[str, Any]) -> r.RotationFact:
    """The rotation fact a record carries (the inverse of ``fact_to_record``)."""
    env = record["envelope"]
    meta: dict[str, Any] = {"caused_by": str(env["causation_id"]), "at": env["occurred_at"],
                            "actor_id": env["actor"]["staff_id"], "actor_role": env["actor"]["role"]}  # fmt: skip
    match event_type:
        case "RotationQueuePublished":
            return r.QueuePublished(**meta, day=record["day"], staff=tuple(record["ordered_staff"]),
                                    valid_from=record["valid_from"], valid_until=record["valid_until"])  # fmt: skip
        case "PostStood":
            return r.PostStood(**meta, staff_id=record["staff_id"])
        case "PostLeft":
            return r.PostLeft(**meta, staff_id=record["staff_id"], busy=record["busy"], notified=record["notified"])
        case "ReceptionStarted":
            return r.ReceptionStarted(**meta, staff_id=record["staff_id"], visit_id=record["visit_id"],
                                      visit_type=VisitType(record["visit_type"]), counted=record["counted"],
                                      owner_id=record["owner_id"], skipped=tuple(record["skipped"]))  # fmt: skip
        case "ReceptionEnded":
            return r.ReceptionEnded(**meta, staff_id=record["staff_id"], visit_id=record["visit_id"])
        case "TurnWaived":
            return r.TurnWaived(**meta, staff_id=record["staff_id"], until=record["until"], weight=record["weight"])
        case "ReceptionSuspensionStarted":
            suspension = r.Suspension(record["staff_id"], record["start"], record["end"], record["rule_id"],
                                      tuple(record["evidence_event_ids"]))  # fmt: skip
            return r.SuspensionStarted(**meta, suspension=suspension)
        case "ReceptionSuspensionLifted":
            return r.SuspensionLifted(**meta, staff_id=record["staff_id"])
        case "RotationCommandRejected":
            return r.RotationRejected(**meta, command_type=record["command_type"], rule_id=record["rule_id"],
                                      reason=record["reason"], expected=record["expected"])  # fmt: skip
    raise ValueError(f"{event_type} is not a rotation fact")


class InvalidCommand(ValueError):
    """A RotationCommandIssued record that cannot become a command: ``rule_id`` is INPUT when it lacks what its
    command type needs (``field`` names it), §12 when the actor's role may not ask for it."""

    def __init__(self, field: str, message: str, rule_id: str = INPUT_RULE) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule_id = rule_id


@dataclass(frozen=True)
class CommandMeta:
    command_id: str
    at: datetime  # recorded_at: when Anchang accepted it, so nobody backdates a turn
    actor_id: str
    actor_role: str


def command_meta(record: dict[str, Any]) -> CommandMeta:
    env = record["envelope"]
    return CommandMeta(str(env["event_id"]), env["recorded_at"], env["actor"]["staff_id"], env["actor"]["role"])


def _need(record: dict[str, Any], field: str) -> Any:
    value = record.get(field)
    if value is None or value == "":
        raise InvalidCommand(field, f"required for {record['command_type']}")
    return value


def record_to_command(record: dict[str, Any], policy: StaffPolicy) -> r.RotationCommand:
    """The rotation command of a RotationCommandIssued record. A SUSPEND becomes the 停接 penalty its observer may
    issue (``rotation.suspension_penalty``); an observer who may not is an InvalidCommand naming §12."""
    m = command_meta(record)
    base: dict[str, Any] = {"command_id": m.command_id, "at": m.at, "actor_id": m.actor_id,
                            "actor_role": m.actor_role}  # fmt: skip
    match record["command_type"]:
        case "PUBLISH_QUEUE":
            return r.PublishQueue(**base, staff=tuple(record.get("ordered_staff") or ()))
        case "STAND_POST":
            return r.StandPost(**base, staff_id=_need(record, "staff_id"))
        case "LEAVE_POST":
            return r.LeavePost(**base, staff_id=_need(record, "staff_id"), busy=bool(record.get("busy")),
                               notified=record.get("notified"))  # fmt: skip
        case "START_RECEPTION":
            try:
                visit_type = VisitType(_need(record, "visit_type"))
            except ValueError as problem:
                raise InvalidCommand("visit_type", f"unknown visit type {record['visit_type']!r}") from problem
            return r.StartReception(**base, staff_id=_need(record, "staff_id"), visit_id=_need(record, "visit_id"),
                                    visit_type=visit_type)  # fmt: skip
        case "END_RECEPTION":
            return r.EndReception(**base, staff_id=_need(record, "staff_id"), visit_id=_need(record, "visit_id"))
        case "WAIVE_TURN":
            return r.WaiveTurn(**base, staff_id=_need(record, "staff_id"), until=record.get("waive_until"))
        case "SUSPEND":
            evidence = tuple(record.get("evidence_event_ids") or ()) or (m.command_id,)
            penalty = r.suspension_penalty(_need(record, "staff_id"), m.actor_role, m.at, evidence, policy,
                                           refused_customer=bool(record.get("refused_customer")))  # fmt: skip
            if not isinstance(penalty, Penalty):
                raise InvalidCommand("actor.role", penalty.reason, ROLE_RULE)
            return r.Suspend(**base, penalty=penalty)
        case "LIFT_SUSPENSION":
            return r.LiftSuspension(**base, staff_id=_need(record, "staff_id"))
    raise InvalidCommand("command_type", f"unknown command type {record['command_type']!r}")
