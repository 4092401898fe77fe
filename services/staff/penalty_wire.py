"""A ``Penalty`` of the pure core ↔ the ``PenaltyIssued`` record on ``anchang.discipline``.

Both staff processors (front desk and staff) emit penalties through here, so a sanction has one id whoever
decides it: the event id is derived from the penalty's identity (``Penalty.key``), and deciding the same evidence
again (a replay, a crash between producing and committing) produces the same event, which consumers drop."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.staff.penalties import Penalty, PenaltyKind

DISCIPLINE_TOPIC = "anchang.discipline"
EVENT_TYPE = "PenaltyIssued"
PENALTY_NAMESPACE = uuid.UUID("5b7e2c4a-9d13-4f6e-8a20-7c1d3e5f9b42")


def penalty_id(penalty: Penalty) -> str:
    parts = [penalty.staff_id, penalty.rule_id, str(penalty.kind), penalty.day.isoformat(), *penalty.evidence]
    return str(uuid.uuid5(PENALTY_NAMESPACE, "\x1f".join([*parts, "|", penalty.detail])))


def _uuid_or_none(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def penalty_to_record(penalty: Penalty, *, office_id: str, processor_id: str, recorded_at: datetime) -> dict[str, Any]:
    """The full ``PenaltyIssued`` record (envelope included), ready for ``EventCodec.encode``."""
    event_id = penalty_id(penalty)
    return {
        "envelope": {
            "event_id": event_id,
            "event_type": EVENT_TYPE,
            "office_id": office_id,
            "occurred_at": penalty.at,
            "recorded_at": recorded_at,
            "actor": {"staff_id": processor_id, "role": "SYSTEM"},
            "correlation_id": event_id,
            "causation_id": _uuid_or_none(penalty.evidence[-1]),
        },
        "penalty_id": event_id,
        "staff_id": penalty.staff_id,
        "rule_id": penalty.rule_id,
        "sanction_id": penalty.sanction_id,
        "kind": str(penalty.kind),
        "day": penalty.day,
        "amount_yuan": penalty.amount_yuan,
        "suspension_days": penalty.suspension_days,
        "issued_by_role": str(penalty.issued_by_role),
        "evidence_event_ids": list(penalty.evidence),
        "detail": penalty.detail,
    }


def record_to_penalty(record: dict[str, Any]) -> Penalty:
    """The penalty a decoded ``PenaltyIssued`` record states (for the discipline ledger)."""
    return Penalty(
        staff_id=record["staff_id"],
        rule_id=record["rule_id"],
        sanction_id=record["sanction_id"],
        kind=PenaltyKind(record["kind"]),
        day=record["day"],
        at=record["envelope"]["occurred_at"],
        evidence=tuple(record["evidence_event_ids"]),
        amount_yuan=record["amount_yuan"],
        suspension_days=record["suspension_days"],
        issued_by_role=record["issued_by_role"],
        detail=record["detail"],
    )
