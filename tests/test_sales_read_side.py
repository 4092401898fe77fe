"""The 销控 read side on the real broker, on SQLite and PostgreSQL: inventory, history, the 销控表 now and as of
past instants, refunds by stage, the decision audit, metrics, duplicates and rebuilds; the board API; the CSV
inventory and the sample project.

Facts are decided by the pure domain from scripted commands and published the way the decision processor does
(fact_to_record, Avro, keyed by unit), so these tests need nothing of the processor itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, Table, select
from typer.testing import CliRunner

from projections import sales_tables
from projections.db import make_engine, migrate
from projections.runner import ProjectionProcessor
from projections.sales import board_as_of, json_to_record, open_subscriptions, refunds_of, sales_projections
from projections.sales_tables import decision_audit, refunds, unit_board, unit_history, units
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ingest.app import create_app
from services.ingest.board import router
from services.ingest.keys import KeyStore, create_key
from services.kafka.deadletter import DeadLetterSink
from services.kafka.direct import DirectPublisher
from services.sales import domain as d
from services.sales.inventory import (
    InventoryError,
    read_units_csv,
    sample_project_rows,
    unit_registered_body,
    units_app,
)
from services.sales.policy import DEFAULT_POLICY
from services.sales.wire import fact_event_id, fact_to_record, record_to_fact
from tests.support import serve_in_thread

UNITS = "anchang.units"
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # facts happen at T0 + seconds
REGISTERED_AT = T0 - timedelta(hours=1)
DEADLINE = T0 + timedelta(seconds=120) + DEFAULT_POLICY.payment_deadline  # signed at T0+120 s (SALE-09)
REPO = Path(__file__).resolve().parent.parent
cli = CliRunner()


# ---------------------------------------------------------------------------------------------------------------
# Scripted units


@dataclass
class Unit:
    """One unit's decision stream: commands decided by the pure domain, facts published as the processor does."""

    unit_id: str
    office: str
    publisher: DirectPublisher
    codec: EventCodec
    state: d.UnitState = d.INITIAL
    published: list[tuple[str, d.Fact]] = field(default_factory=list)

    def register(self, project: str = "p", building: str = "1", floor: int = 3, number: str = "01") -> str:
        row = {
            "unit_id": self.unit_id,
            "project_id": project,
            "project_name": "锦湖雅苑",
            "building": building,
            "floor": floor,
            "number": number,
            "layout": "3室2厅2卫",
            "area_sqm": 118.46,
            "list_price_fen": 338_000_000,
        }
        body = {**unit_registered_body(row, staff_id="clerk-1"), "occurred_at": REGISTERED_AT.isoformat()}
        return self.publisher.publish(body, office_id=self.office)

    def do(self, command: type[Any], seconds: float, role: str, **fields: Any) -> list[d.Fact]:
        made = command(
            command_id=str(uuid.uuid4()),
            unit_id=self.unit_id,
            actor_id=fields.pop("actor", f"{role.lower()}-1"),
            actor_role=role,
            at=T0 + timedelta(seconds=seconds),
            **fields,
        )
        facts: list[d.Fact] = d.decide(self.state, made, DEFAULT_POLICY)
        for index, fact in enumerate(facts):
            self.state = d.evolve(self.state, fact)
            self.publish(fact_event_id(made.command_id, index), fact)
        return facts

    def publish(self, event_id: str, fact: d.Fact) -> None:
        event_type, record = fact_to_record(fact, event_id=event_id, office_id=self.office, recorded_at=fact.at)
        self.publisher.raw(UNITS, self.codec.encode(event_type, record, UNITS), key=self.unit_id.encode())
        if all(known != event_id for known, _ in self.published):
            self.published.append((event_id, fact))

    def lock_and_sign(self, customer: str = "c-1", subscription: str = "sub-1") -> None:
        """Consultant asks at T0, a second consultant is refused (SALE-06), manager locks at T0+60, 认购 at T0+120."""
        self.do(d.RequestLock, 0, "SALES_CONSULTANT", customer_id=customer, staff_id="s-1", actor="s-1")
        self.do(d.RequestLock, 30, "SALES_CONSULTANT", customer_id="c-rival", staff_id="s-2", actor="s-2")
        self.do(d.ConfirmLock, 60, "SALES_MANAGER", customer_id=customer, actor="m-1")
        self.do(
            d.SignSubscription,
            120,
            "SALES_CONSULTANT",
            subscription_id=subscription,
            customer_id=customer,
            price_fen=330_000_000,
            actor="s-1",
        )

    def pay(self, seconds: float, subscription: str = "sub-1", amount_fen: int = 5_000_000) -> list[d.Fact]:
        return self.do(
            d.ReceivePayment,
            seconds,
            "FINANCE",
            subscription_id=subscription,
            amount_fen=amount_fen,
            kind="DEPOSIT",
            receipt_no=f"r-{seconds}",
            actor="f-1",
        )


@pytest.fixture
def office() -> str:
    return f"office-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def publisher(settings: Settings, codec: EventCodec, catalogue: Catalogue) -> DirectPublisher:
    return DirectPublisher(settings.kafka_client_config(), codec, catalogue)


@pytest.fixture
def make_unit(office: str, publisher: DirectPublisher, codec: EventCodec) -> Iterator[Any]:
    def make(name: str, owner: str | None = None) -> Unit:
        return Unit(f"{owner or office}-{name}", owner or office, publisher, codec)

    yield make


@pytest.fixture
def processor(settings: Settings, codec: EventCodec, catalogue: Catalogue) -> ProjectionProcessor:
    """The read side on its own processor, consuming anchang.units into this test's fresh database."""
    migrate(settings.resolved_database_url)
    kafka = settings.kafka_client_config()
    return ProjectionProcessor(
        "sales-read-side",
        sales_projections(),
        engine=make_engine(settings.resolved_database_url),
        codec=codec,
        catalogue=catalogue,
        kafka_config=kafka,
        dead_letters=DeadLetterSink(kafka, catalogue.dead_letter_topic.name, "sales-read-side"),
        topics=[UNITS],
        group_id=settings.projector_group,
    )


def catch_up(processor: ProjectionProcessor, publisher: DirectPublisher) -> None:
    publisher.flush()
    processor.run_until_caught_up()


def rows(engine: Engine, table: Table, **where: Any) -> list[dict[str, Any]]:
    query = select(table).order_by(*table.primary_key)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as connection:
        return [{k: _utc(v) for k, v in row._mapping.items()} for row in connection.execute(query)]


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def as_of(engine: Engine, office: str, seconds: float) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        return {row["unit_id"]: row for row in board_as_of(connection, office, T0 + timedelta(seconds=seconds))}


# ---------------------------------------------------------------------------------------------------------------
# Projections on the broker


@pytest.mark.kafka
def test_the_board_follows_a_sale_from_lock_to_deposit(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    sold, untouched = make_unit("u1"), make_unit("u2")
    sold.register(number="01")
    untouched.register(number="02")
    sold.lock_and_sign()
    catch_up(processor, publisher)
    engine = processor.engine

    inventory = rows(engine, units, office_id=office)
    assert [(u["unit_id"], u["floor"], u["number"], u["list_price_fen"]) for u in inventory] == [
        (sold.unit_id, 3, "01", 338_000_000),
        (untouched.unit_id, 3, "02", 338_000_000),
    ]
    assert inventory[0]["registered_at"] == REGISTERED_AT and inventory[0]["project_name"] == "锦湖雅苑"
    board = {row["unit_id"]: row for row in rows(engine, unit_board, office_id=office)}
    assert board[untouched.unit_id]["status"] == "available" and board[untouched.unit_id]["fact_count"] == 0
    subscribed = board[sold.unit_id]
    assert (subscribed["status"], subscribed["customer_id"], subscribed["staff_id"]) == ("subscribed", "c-1", "s-1")
    assert subscribed["confirmed_by"] == "m-1" and subscribed["subscription_id"] == "sub-1"
    assert subscribed["payment_deadline_at"] == DEADLINE and subscribed["price_fen"] == 330_000_000
    with engine.connect() as connection:
        assert [s["unit_id"] for s in open_subscriptions(connection, office)] == [sold.unit_id]
    assert metric("anchang_units_by_status", office_id=office, status="subscribed") == 1
    assert metric("anchang_units_by_status", office_id=office, status="available") == 1

    sold.pay(300)  # SALE-09: a deposit before the deadline stops the clock
    catch_up(processor, publisher)
    (paid,) = rows(engine, unit_board, unit_id=sold.unit_id)
    assert (paid["status"], paid["payment_deadline_at"], paid["paid_fen"]) == ("deposit_paid", None, 5_000_000)
    assert paid["deposit_paid_at"] == T0 + timedelta(seconds=300) and paid["customer_id"] == "c-1"
    assert metric("anchang_units_by_status", office_id=office, status="subscribed") == 0
    assert metric("anchang_units_by_status", office_id=office, status="deposit_paid") == 1

    # The audit: who asked, what came of it, under which rule.
    audit = sorted(rows(engine, decision_audit, office_id=office), key=lambda row: row["occurred_at"])
    assert [(a["event_type"], a["outcome"], a["rule_id"]) for a in audit] == [
        ("UnitLockRequested", "accepted", None),
        ("UnitLockRejected", "rejected", "SALE-06"),
        ("UnitLocked", "accepted", None),
        ("SubscriptionSigned", "accepted", None),
        ("PaymentReceived", "accepted", None),
    ]
    refused = audit[1]
    assert (refused["actor_staff_id"], refused["actor_role"], refused["command_type"]) == (
        "s-2",
        "SALES_CONSULTANT",
        "RequestLock",
    )
    assert refused["current_holder"] == "c-1" and refused["customer_id"] == "c-rival"
    assert refused["command_id"] == sold.published[1][1].caused_by

    # The board as of any past instant, from the history.
    assert as_of(engine, office, -1)[sold.unit_id]["status"] == "available"
    assert as_of(engine, office, 10)[sold.unit_id]["customer_id"] == "c-1"
    assert as_of(engine, office, 45)[sold.unit_id]["status"] == "lock_requested"  # the rival was refused
    assert as_of(engine, office, 90)[sold.unit_id]["status"] == "locked"
    past = as_of(engine, office, 200)
    assert past[sold.unit_id]["status"] == "subscribed" and past[sold.unit_id]["payment_deadline_at"] == DEADLINE
    assert past[untouched.unit_id]["status"] == "available" and past[sold.unit_id]["list_price_fen"] == 338_000_000
    assert as_of(engine, office, 300)[sold.unit_id]["status"] == "deposit_paid"  # at the instant itself
    assert as_of(engine, office, -2 * 3600) == {}  # before the units were registered


@pytest.mark.kafka
def test_a_missed_deadline_frees_the_unit_and_is_counted(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    unit = make_unit("u1")
    unit.register()
    unit.lock_and_sign()
    late = (DEADLINE - T0).total_seconds()
    assert [type(f) for f in unit.pay(late)] == [d.CommandRejected]  # SALE-09: the deadline instant is late
    expired = unit.do(d.ExpireDeadline, late, "SYSTEM", subscription_id="sub-1", actor="anchang-sales")
    assert [type(f) for f in expired] == [d.SubscriptionAbandoned, d.LockReleased]
    catch_up(processor, publisher)

    (row,) = rows(processor.engine, unit_board, unit_id=unit.unit_id)
    assert (row["status"], row["customer_id"], row["subscription_id"], row["payment_deadline_at"]) == (
        "available",
        None,
        None,
        None,
    )
    audit = rows(processor.engine, decision_audit, unit_id=unit.unit_id, outcome="rejected")
    assert [(a["rule_id"], a["command_type"], a["actor_role"]) for a in audit if a["rule_id"] == "SALE-09"] == [
        ("SALE-09", "ReceivePayment", "FINANCE")
    ]
    expiry = [a for a in rows(processor.engine, decision_audit, unit_id=unit.unit_id) if a["actor_role"] == "SYSTEM"]
    assert {a["event_type"] for a in expiry} == {"SubscriptionAbandoned", "UnitLockReleased"}
    assert len({a["command_id"] for a in expiry}) == 1  # one command, two facts
    assert as_of(processor.engine, office, late - 0.001)[unit.unit_id]["status"] == "subscribed"
    assert as_of(processor.engine, office, late)[unit.unit_id]["status"] == "available"


@pytest.mark.kafka
def test_refunds_move_through_their_stages(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    unit = make_unit("u1")
    unit.register()
    unit.lock_and_sign()
    unit.pay(200)
    unit.do(d.SignContract, 300, "SALES_MANAGER", subscription_id="sub-1", actor="m-1")
    # A first application turned down by the developer …
    unit.do(d.RequestRefund, 400, "SALES_CONSULTANT", refund_id="rf-0", kind="RETURN_UNIT", reason="loan refused")
    unit.do(d.ReviewRefund, 410, "SALES_MANAGER", refund_id="rf-0", actor="m-1")
    unit.do(d.SubmitRefundToDeveloper, 420, "SALES_MANAGER", refund_id="rf-0", actor="m-1")
    unit.do(d.RejectRefund, 430, "DEVELOPER", refund_id="rf-0", reason="outside the window", actor="dev-1")
    # … and a second one, which finance cannot pay before the developer approves (SALE-19).
    unit.do(d.RequestRefund, 500, "SALES_CONSULTANT", refund_id="rf-1", kind="RETURN_UNIT", reason="moving")
    unit.do(d.ReviewRefund, 510, "SALES_MANAGER", refund_id="rf-1", actor="m-1")
    refused = unit.do(d.ProcessRefund, 515, "FINANCE", refund_id="rf-1", actor="f-1")
    unit.do(d.SubmitRefundToDeveloper, 520, "SALES_MANAGER", refund_id="rf-1", actor="m-1")
    catch_up(processor, publisher)
    engine = processor.engine

    by_id = {row["refund_id"]: row for row in rows(engine, refunds, office_id=office)}
    assert (by_id["rf-0"]["stage"], by_id["rf-0"]["rejection_reason"], by_id["rf-0"]["decided_by"]) == (
        "rejected",
        "outside the window",
        "dev-1",
    )
    pending = by_id["rf-1"]
    assert (pending["stage"], pending["kind"], pending["reason"], pending["requested_by"]) == (
        "submitted",
        "RETURN_UNIT",
        "moving",
        "sales_consultant-1",
    )
    assert pending["reviewed_by"] == "m-1" and pending["submitted_at"] == T0 + timedelta(seconds=520)
    assert metric("anchang_refunds_pending", office_id=office, stage="submitted") == 1
    (board,) = rows(engine, unit_board, unit_id=unit.unit_id)
    assert (board["status"], board["refund_id"], board["refund_stage"]) == ("refund_pending", "rf-1", "submitted")
    (rule,) = [a for a in rows(engine, decision_audit, office_id=office) if a["event_id"] == _event_id(unit, refused)]
    assert (rule["outcome"], rule["rule_id"], rule["command_type"]) == ("rejected", "SALE-19", "ProcessRefund")

    unit.do(d.ApproveRefund, 600, "DEVELOPER", refund_id="rf-1", actor="dev-1")
    unit.do(d.ProcessRefund, 700, "FINANCE", refund_id="rf-1", actor="f-1")
    catch_up(processor, publisher)
    (done,) = rows(engine, refunds, office_id=office, refund_id="rf-1")
    assert (done["stage"], done["approved_amount_fen"], done["refunded_amount_fen"]) == (
        "processed",
        5_000_000,
        5_000_000,
    )
    assert done["processed_by"] == "f-1" and done["decided_by"] == "dev-1"
    assert metric("anchang_refunds_pending", office_id=office, stage="submitted") == 0
    assert rows(engine, unit_board, unit_id=unit.unit_id)[0]["status"] == "available"  # the refund released it
    with engine.connect() as connection:
        assert [r["refund_id"] for r in refunds_of(connection, office, "rejected")] == ["rf-0"]
    assert as_of(engine, office, 450)[unit.unit_id]["status"] == "contracted"  # rf-0 rejected: back to contracted


def _event_id(unit: Unit, facts: list[d.Fact]) -> str:
    return next(event_id for event_id, fact in unit.published if fact is facts[0])


@pytest.mark.kafka
def test_duplicates_are_harmless_and_a_rebuild_reproduces_every_table(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    unit = make_unit("u1")
    unit.register()
    unit.lock_and_sign()
    for event_id, fact in list(unit.published):  # the processor re-emits after a crash: same ids, same facts
        unit.publish(event_id, fact)
    catch_up(processor, publisher)
    unit.pay(200)
    unit.publish(*unit.published[-1])
    catch_up(processor, publisher)
    engine = processor.engine

    history = rows(engine, unit_history, unit_id=unit.unit_id)
    assert sorted(h["seq"] for h in history) == list(range(1, len(unit.published) + 1))
    by_seq = sorted(history, key=lambda h: h["seq"])
    assert [h["event_id"] for h in by_seq] == [event_id for event_id, _ in unit.published]
    # The stored record rebuilds each fact exactly.
    for stored, (_, fact) in zip(by_seq, unit.published, strict=True):
        record = json_to_record(stored["record"], stored["datetime_paths"])
        assert record_to_fact(stored["event_type"], record) == fact
    assert rows(engine, unit_board, unit_id=unit.unit_id)[0]["status"] == "deposit_paid"
    assert len(rows(engine, decision_audit, unit_id=unit.unit_id)) == len(unit.published)

    tables = (units, unit_history, unit_board, refunds, decision_audit)
    snapshot = [rows(engine, table, office_id=office) for table in tables]
    processor.reset()
    assert rows(engine, unit_board, office_id=office) == []
    processor.run_until_caught_up()
    assert [rows(engine, table, office_id=office) for table in tables] == snapshot


@pytest.mark.kafka
def test_a_unit_belongs_to_the_office_that_registered_it(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    mine = make_unit("u1")
    mine.register(floor=3)
    foreign = Unit(mine.unit_id, f"{office}-other", publisher, mine.codec)
    foreign.register(floor=9)  # another office cannot take the unit over
    mine.register(floor=4)  # the owner corrects its own unit
    catch_up(processor, publisher)
    (row,) = rows(processor.engine, units, unit_id=mine.unit_id)
    assert (row["office_id"], row["floor"]) == (office, 4)
    assert rows(processor.engine, unit_board, unit_id=mine.unit_id)[0]["floor"] == 4


# ---------------------------------------------------------------------------------------------------------------
# The board API


@pytest.mark.kafka
def test_the_board_api_answers_per_office(
    processor: ProjectionProcessor, publisher: DirectPublisher, make_unit: Any, office: str
) -> None:
    unit, other = make_unit("u1"), make_unit("u2")
    unit.register(building="1")
    other.register(building="2")
    unit.lock_and_sign()
    catch_up(processor, publisher)
    engine = processor.engine
    keys = {name: create_key(engine, name, "test", T0) for name in (office, f"{office}-b")}
    app = FastAPI()
    app.include_router(router)
    clock = FrozenClock(T0 + timedelta(seconds=200))
    app.state.ingestion = SimpleNamespace(engine=engine, keys=KeyStore(engine, 0), clock=clock)
    client = TestClient(app)

    def get(path: str, who: str = office, **params: Any) -> Any:
        return client.get(path, params=params, headers={"X-API-Key": keys[who]})

    board = get("/v1/board")
    assert board.status_code == 200, board.text
    by_unit = {row["unit_id"]: row for row in board.json()}
    assert by_unit[unit.unit_id]["seconds_left_to_pay"] == (DEADLINE - clock()).total_seconds() == 520
    assert by_unit[unit.unit_id]["customer_id"] == "c-1" and by_unit[unit.unit_id]["layout"] == "3室2厅2卫"
    assert by_unit[other.unit_id]["status"] == "available" and by_unit[other.unit_id]["seconds_left_to_pay"] is None
    assert [row["unit_id"] for row in get("/v1/board", building="2").json()] == [other.unit_id]
    assert get("/v1/board", who=f"{office}-b").json() == []
    assert client.get("/v1/board").status_code == 401

    clock.advance(timedelta(minutes=30))  # past the deadline, the expiry not yet decided: 0, not negative
    assert get(f"/v1/units/{unit.unit_id}").json()["seconds_left_to_pay"] == 0
    assert get(f"/v1/units/{unit.unit_id}").json()["list_price_fen"] == 338_000_000
    missing = get(f"/v1/units/{unit.unit_id}", who=f"{office}-b")
    assert missing.status_code == 404 and unit.unit_id in missing.json()["detail"]
    assert get("/v1/units/nope").status_code == 404

    history = get(f"/v1/units/{unit.unit_id}/history").json()
    assert [(h["seq"], h["event_type"], h["status_after"]) for h in history] == [
        (1, "UnitLockRequested", "lock_requested"),
        (2, "UnitLockRejected", "lock_requested"),
        (3, "UnitLocked", "locked"),
        (4, "SubscriptionSigned", "subscribed"),
    ]
    assert history[1]["payload"]["rule_id"] == "SALE-06" and history[0]["actor"]["staff_id"] == "s-1"
    assert get(f"/v1/units/{unit.unit_id}/history", who=f"{office}-b").status_code == 404

    unencoded = (T0 + timedelta(seconds=90)).astimezone(timezone(timedelta(hours=8))).isoformat().replace("+", " ")
    past = get("/v1/board/as-of", at=unencoded)  # a '+' sent unencoded arrives as a space
    assert past.status_code == 200, past.text
    assert {row["unit_id"]: row["status"] for row in past.json()}[unit.unit_id] == "locked"
    signed = {
        row["unit_id"]: row for row in get("/v1/board/as-of", at=(T0 + timedelta(seconds=130)).isoformat()).json()
    }
    assert signed[unit.unit_id]["seconds_left_to_pay"] == 590  # counted from the instant asked about
    assert get("/v1/board/as-of", at="2026-11-22T10:00:00").status_code == 422  # no offset
    assert get("/v1/board/as-of", at="yesterday").status_code == 422

    assert [s["unit_id"] for s in get("/v1/subscriptions/open").json()] == [unit.unit_id]
    assert get("/v1/refunds").json() == [] and get("/v1/refunds", stage="bogus").status_code == 422
    decisions = get("/v1/decisions", unit_id=unit.unit_id, outcome="rejected").json()
    assert [(x["rule_id"], x["current_holder"]) for x in decisions] == [("SALE-06", "c-1")]
    assert [x["event_type"] for x in get("/v1/decisions", limit=2).json()] == ["SubscriptionSigned", "UnitLocked"]


# ---------------------------------------------------------------------------------------------------------------
# Importing the inventory


@pytest.mark.kafka
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_units_import_publishes_through_the_api(
    settings: Settings, processor: ProjectionProcessor, publisher: DirectPublisher, office: str, tmp_path: Path
) -> None:
    csv = tmp_path / "units.csv"
    csv.write_text(
        "project_id,project_name,building,floor,number,layout,area_sqm,list_price_yuan\n"
        f"{office},锦湖雅苑,1,3,01,3室2厅2卫,118.46,3380000\n"
        f'{office},锦湖雅苑,1,3,02,2室2厅1卫,89.12,"2,543,100.50"\n'
        f"{office},锦湖雅苑,2,12,01,4室2厅2卫,143.58,4799000\n",
        encoding="utf-8",
    )
    key = create_key(processor.engine, office, "import", T0)
    with serve_in_thread(create_app(settings)) as url:
        result = cli.invoke(units_app, ["import", str(csv), "--api-key", key, "--url", url, "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        assert "registered 3 unit(s) in 1 project(s), 2 building(s); refused 0" in result.output
        bad = tmp_path / "bad.csv"
        bad.write_text("project_id,building,floor,number\np,1,three,01\n", encoding="utf-8")
        refused = cli.invoke(units_app, ["import", str(bad), "--api-key", key, "--url", url])
        assert refused.exit_code == 2 and "line 2, column floor" in refused.output
    catch_up(processor, publisher)
    imported = rows(processor.engine, units, office_id=office)
    assert [(u["unit_id"], u["list_price_fen"], u["area_sqm"]) for u in imported] == [
        (f"{office}-1-0301", 338_000_000, 118.46),
        (f"{office}-1-0302", 254_310_050, 89.12),
        (f"{office}-2-1201", 479_900_000, 143.58),
    ]
    assert {row["status"] for row in rows(processor.engine, unit_board, office_id=office)} == {"available"}


def test_the_migration_matches_the_table_definitions(database_url: str) -> None:
    migrate(database_url)
    with make_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), sales_tables.metadata)
    ours = {table.name for table in sales_tables.SALES_TABLES}
    assert [diff for diff in differences if _table_of(diff) in ours] == []


def _table_of(diff: Any) -> str | None:
    first = diff[0] if isinstance(diff, list) else diff
    kind, subject = first[0], first[1]
    if kind in ("add_table", "remove_table"):
        return str(subject.name)
    if kind in ("add_index", "remove_index"):
        return str(subject.table.name)
    return str(first[2])


# ---------------------------------------------------------------------------------------------------------------
# The CSV reader and the sample project (no broker needed)


def test_read_units_csv_reads_prices_ids_and_blank_cells(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_bytes(
        "\ufeffProject_ID, building ,floor,number,unit_id,layout,area_sqm,list_price_fen\n"  # BOM, odd header case
        "jh,1,3,01,,3室2厅2卫,118.46,338000000\n"
        "\n"
        "jh,B,-1,P7,parking-7,,,\n".encode()
    )
    assert read_units_csv(path) == [
        {
            "unit_id": "jh-1-0301",
            "project_id": "jh",
            "project_name": None,
            "building": "1",
            "floor": 3,
            "number": "01",
            "layout": "3室2厅2卫",
            "area_sqm": 118.46,
            "list_price_fen": 338_000_000,
        },
        {
            "unit_id": "parking-7",
            "project_id": "jh",
            "project_name": None,
            "building": "B",
            "floor": -1,
            "number": "P7",
            "layout": None,
            "area_sqm": None,
            "list_price_fen": None,
        },
    ]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("", ["line 1: the file is empty"]),
        ("project_id,floor,number,colour\n", ["line 1, column building: required", "line 1, column colour: unknown"]),
        ("project_id,building,floor,number,list_price_yuan,list_price_fen\n", ["line 1, column list_price_fen: give"]),
        (
            "project_id,building,floor,number,area_sqm,list_price_yuan\n"
            "p,1,3,01,118.4,100\n"
            "p,1,x,02,-5,1.234\n"
            "p,1 2,4,,abc,\n"
            "p,1,3,01,90,\n"
            "p,1,3,03,90,5,extra\n",
            [
                "line 3, column floor: 'x' is not a whole number",
                "line 3, column area_sqm: -5.0 m² is not a plausible unit area",
                "line 3, column list_price_yuan: '1.234' must be a non-negative amount with at most 2 decimals",
                "line 4, column building: '1 2' may not contain spaces",
                "line 4, column number: required, but empty",
                "line 4, column area_sqm: 'abc' is not a number",
                "line 5, column unit_id: unit p-1-0301 is already on line 2",
                "line 6: more cells than the 6 columns of the header",
            ],
        ),
    ],
)
def test_read_units_csv_names_every_bad_line_and_column(text: str, problems: list[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InventoryError) as error:
        read_units_csv(path)
    found = [str(problem) for problem in error.value.problems]
    assert len(found) == len(problems), found
    for message, expected in zip(found, problems, strict=True):
        assert message.startswith(expected), (message, expected)


def test_the_shipped_sample_is_the_sample_project() -> None:
    rows = sample_project_rows()
    assert read_units_csv(REPO / "deploy" / "sample-project.csv") == rows
    assert len(rows) == 160 and len({row["unit_id"] for row in rows}) == 160
    assert {(row["building"], row["floor"]) for row in rows} == {(b, f) for b in ("1", "2") for f in range(1, 21)}
    assert all(row["list_price_fen"] % 10_000 == 0 and row["area_sqm"] > 80 for row in rows)  # prices end in 00 元
    result = cli.invoke(units_app, ["sample"])
    assert result.exit_code == 0 and result.stdout == (REPO / "deploy" / "sample-project.csv").read_text("utf-8")


def test_unit_registered_bodies_are_valid_events(catalogue: Catalogue) -> None:
    from services.ingest.events import build_event

    for row in sample_project_rows()[:3]:
        event, errors = build_event(unit_registered_body(row), "office-a", catalogue, T0)
        assert event is not None, errors
        assert event.key == row["unit_id"] and event.topic == UNITS
    with pytest.raises(ValueError, match="may not register"):
        unit_registered_body(sample_project_rows()[0], role="SALES_CONSULTANT")
