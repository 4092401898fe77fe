"""The 销控 wire mapping: every fact survives Avro and back unchanged; commands come from Avro records."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from services.core.catalog import Catalogue
from services.ingest.events import build_event
from services.sales import domain as d
from services.sales.policy import DEFAULT_POLICY, SalesPolicy
from services.sales.wire import (
    COMMANDS,
    FACT_EVENT_TYPES,
    InvalidCommand,
    fact_event_id,
    fact_to_record,
    record_to_command,
    record_to_fact,
)

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
OFFICE = "office-a"


def command_body(command_type: str, at_offset: int = 0, role: str = "SALES_MANAGER", **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "UnitCommandIssued",
        "occurred_at": (T0 + timedelta(seconds=at_offset)).isoformat(),
        "actor": {"staff_id": f"staff-{role.lower()}", "role": role},
        "payload": {"unit_id": "u-1", "command_type": command_type, **fields},
    }


def to_command(body: dict[str, Any], catalogue: Catalogue, at: datetime) -> d.Command:
    event, errors = build_event(body, OFFICE, catalogue, at)
    assert event is not None, errors
    return record_to_command(event.record)


LIFECYCLE: list[tuple[str, str, dict[str, Any]]] = [
    ("REQUEST_LOCK", "SALES_CONSULTANT", {"customer_id": "c-1", "staff_id": "s-1"}),
    ("REQUEST_LOCK", "SALES_CONSULTANT", {"customer_id": "c-2", "staff_id": "s-2"}),  # 一房二卖: refused
    ("CONFIRM_LOCK", "SALES_MANAGER", {"customer_id": "c-1"}),
    (
        "SIGN_SUBSCRIPTION",
        "SALES_CONSULTANT",
        {"subscription_id": "sub-1", "customer_id": "c-1", "price_fen": 99_000_000},
    ),
    (
        "RECEIVE_PAYMENT",
        "SALES_CONSULTANT",
        {"subscription_id": "sub-1", "amount_fen": 1, "payment_kind": "DEPOSIT", "receipt_no": "r-0"},
    ),  # SALE-10: refused
    (
        "RECEIVE_PAYMENT",
        "FINANCE",
        {"subscription_id": "sub-1", "amount_fen": 2_000_000, "payment_kind": "DEPOSIT", "receipt_no": "r-1"},
    ),
    ("SIGN_CONTRACT", "SALES_MANAGER", {"subscription_id": "sub-1"}),
    ("REQUEST_REFUND", "SALES_CONSULTANT", {"refund_id": "rf-0", "refund_kind": "RETURN_UNIT"}),
    ("REVIEW_REFUND", "SALES_MANAGER", {"refund_id": "rf-0"}),
    ("SUBMIT_REFUND_TO_DEVELOPER", "SALES_MANAGER", {"refund_id": "rf-0"}),
    ("REJECT_REFUND", "DEVELOPER", {"refund_id": "rf-0", "reason": "outside the refund window"}),
    ("REQUEST_REFUND", "SALES_CONSULTANT", {"refund_id": "rf-1", "refund_kind": "RETURN_UNIT", "reason": "moving"}),
    ("REVIEW_REFUND", "SALES_MANAGER", {"refund_id": "rf-1"}),
    ("PROCESS_REFUND", "FINANCE", {"refund_id": "rf-1"}),  # SALE-19: refused before approval
    ("SUBMIT_REFUND_TO_DEVELOPER", "SALES_MANAGER", {"refund_id": "rf-1"}),
    ("APPROVE_REFUND", "DEVELOPER", {"refund_id": "rf-1"}),
    ("PROCESS_REFUND", "FINANCE", {"refund_id": "rf-1"}),
    ("REQUEST_LOCK", "SALES_CONSULTANT", {"customer_id": "c-3", "staff_id": "s-3"}),
    ("CONFIRM_LOCK", "SALES_MANAGER", {"customer_id": "c-3"}),
    ("SIGN_SUBSCRIPTION", "SALES_CONSULTANT", {"subscription_id": "sub-2", "customer_id": "c-3", "price_fen": 5}),
    ("EXPIRE_DEADLINE", "SYSTEM", {"subscription_id": "sub-2"}),
    ("RELEASE_LOCK", "SALES_MANAGER", {"reason": "MANAGER_RELEASE"}),  # nothing to release: refused
]


def run_lifecycle(catalogue: Catalogue, policy: SalesPolicy = DEFAULT_POLICY) -> list[d.Fact]:
    state, facts = d.INITIAL, []
    for second, (command_type, role, fields) in enumerate(LIFECYCLE):
        # The deadline expiry comes 10 minutes after signing.
        at = (
            T0
            + timedelta(seconds=second)
            + (policy.payment_deadline if command_type == "EXPIRE_DEADLINE" else timedelta())
        )
        command = to_command(command_body(command_type, role=role, **fields), catalogue, at)
        for fact in d.decide(state, command, policy):
            state = d.evolve(state, fact)
            facts.append(fact)
    assert state.status is d.UnitStatus.AVAILABLE
    return facts


def test_the_lifecycle_reaches_every_fact_type(catalogue: Catalogue) -> None:
    reached = {type(fact) for fact in run_lifecycle(catalogue)}
    assert reached >= set(FACT_EVENT_TYPES) - {d.LockRequestLapsed}  # lapsing needs a policy with an expiry


def test_every_fact_round_trips_through_avro(catalogue: Catalogue) -> None:
    for index, fact in enumerate(run_lifecycle(catalogue)):
        event_type, record = fact_to_record(
            fact, event_id=fact_event_id(fact.caused_by, index), office_id=OFFICE, recorded_at=T0
        )
        schema = catalogue.schemas[event_type].parsed
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        buffer.seek(0)
        assert record_to_fact(event_type, fastavro.schemaless_reader(buffer, schema)) == fact  # type: ignore[arg-type]


def test_a_lapsed_request_round_trips(catalogue: Catalogue) -> None:
    policy = SalesPolicy(lock_request_expiry=timedelta(minutes=30))
    request = to_command(
        command_body("REQUEST_LOCK", role="SALES_CONSULTANT", customer_id="c", staff_id="s"), catalogue, T0
    )
    state = d.fold(d.decide(d.INITIAL, request, policy))
    later = to_command(
        command_body("REQUEST_LOCK", role="SALES_CONSULTANT", customer_id="c2", staff_id="s2"),
        catalogue,
        T0 + timedelta(hours=1),
    )
    lapsed = d.decide(state, later, policy)[0]
    assert isinstance(lapsed, d.LockRequestLapsed)
    event_type, record = fact_to_record(lapsed, event_id=fact_event_id("x", 0), office_id=OFFICE, recorded_at=T0)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, catalogue.schemas[event_type].parsed, record)
    buffer.seek(0)
    read_back = fastavro.schemaless_reader(buffer, catalogue.schemas[event_type].parsed)
    assert isinstance(read_back, dict)
    assert record_to_fact(event_type, read_back) == lapsed


def test_fact_ids_are_stable_and_distinct() -> None:
    assert fact_event_id("cmd-1", 0) == fact_event_id("cmd-1", 0)
    assert len({fact_event_id("cmd-1", 0), fact_event_id("cmd-1", 1), fact_event_id("cmd-2", 0)}) == 3


def test_a_command_takes_the_server_time_not_the_claimed_time(catalogue: Catalogue) -> None:
    recorded = T0 + timedelta(minutes=11)
    body = command_body(
        "RECEIVE_PAYMENT", role="FINANCE", subscription_id="s", amount_fen=1, payment_kind="DEPOSIT", receipt_no="r"
    )
    body["occurred_at"] = T0.isoformat()  # a backdated claim
    assert to_command(body, catalogue, recorded).at == recorded


@pytest.mark.parametrize("command_type", sorted(COMMANDS))
def test_each_command_type_names_what_it_misses(command_type: str, catalogue: Catalogue) -> None:
    _, required = COMMANDS[command_type]
    if not required:
        assert isinstance(to_command(command_body(command_type), catalogue, T0), d.ReleaseLock)
        return
    with pytest.raises(InvalidCommand) as missing:
        to_command(command_body(command_type), catalogue, T0)
    assert missing.value.field in required.values()
