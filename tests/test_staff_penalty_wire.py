"""PenaltyIssued on the wire: a penalty survives the Avro round trip and keeps one id however often it is decided."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import fastavro

from services.core.catalog import load_catalogue
from services.staff.penalties import Penalty, PenaltyKind
from services.staff.penalty_wire import penalty_id, penalty_to_record, record_to_penalty

AT = datetime(2026, 11, 3, 0, 31, tzinfo=UTC)
EVIDENCE = (str(uuid.UUID(int=7)),)


def _round_trip(record: dict[str, object]) -> dict[str, object]:
    parsed = load_catalogue().schemas["PenaltyIssued"].parsed
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    buffer.seek(0)
    result: dict[str, object] = fastavro.schemaless_reader(buffer, parsed, parsed)  # type: ignore[assignment]
    return result


def test_a_fine_round_trips_through_avro() -> None:
    late = Penalty(staff_id="s-1", rule_id="ATT-03", sanction_id="PEN-01", kind=PenaltyKind.FINE, day=date(2026, 11, 3),
                   at=AT, evidence=EVIDENCE, amount_yuan=50, detail="1 min late")  # fmt: skip
    record = penalty_to_record(late, office_id="o-1", processor_id="anchang-staff", recorded_at=AT)
    decoded = _round_trip(record)
    assert record_to_penalty(decoded) == late
    assert decoded["envelope"]["causation_id"] == uuid.UUID(EVIDENCE[0])  # type: ignore[index]


def test_a_suspension_with_non_uuid_evidence_round_trips() -> None:
    suspension = Penalty(staff_id="s-2", rule_id="ROT-09", sanction_id=None, kind=PenaltyKind.SUSPENSION,
                         day=date(2026, 11, 3), at=AT, evidence=("visit-17",), suspension_days=3)  # fmt: skip
    decoded = _round_trip(penalty_to_record(suspension, office_id="o-1", processor_id="p", recorded_at=AT))
    assert record_to_penalty(decoded) == suspension
    assert decoded["envelope"]["causation_id"] is None  # type: ignore[index]


def test_the_id_depends_on_the_sanction_not_on_when_it_was_decided() -> None:
    base = dict(staff_id="s-1", rule_id="CALL-03", sanction_id="PEN-26", kind=PenaltyKind.FINE, day=date(2026, 11, 3),
                at=AT, evidence=EVIDENCE, amount_yuan=10)  # fmt: skip
    first = Penalty(**base, detail="blank: phone")  # type: ignore[arg-type]
    again = Penalty(**base, detail="blank: phone")  # type: ignore[arg-type]
    other_blank = Penalty(**base, detail="blank: name")  # type: ignore[arg-type]
    assert penalty_id(first) == penalty_id(again)
    assert penalty_id(first) != penalty_id(other_blank)
    records = [
        penalty_to_record(first, office_id="o", processor_id="p", recorded_at=moment)
        for moment in (AT, datetime(2027, 1, 1, tzinfo=UTC))
    ]
    assert records[0]["envelope"]["event_id"] == records[1]["envelope"]["event_id"]
