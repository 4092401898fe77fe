"""The 销控 read side: ``anchang.units`` folded into the inventory, every unit's history, the 销控表 (unit board),
refunds by stage and the decision audit log, plus the queries the API serves from them.

Ownership and scoping. A unit belongs to the office that registered it (UnitRegistered; a later registration of
the same unit id by another office is ignored and logged). The board row of a unit carries that office, or, for a
unit that has facts but no registration yet, the office of its first fact. History and audit rows carry the office
of the fact itself (the office whose command it answers), refunds the office that requested them.

Why the board folds the whole history: every time a unit is touched the board row is rebuilt with the pure domain
``evolve``/``fold`` over all of the unit's facts, so it can never disagree with what the decider decided (SALE-06: at
most one claim; SALE-09: the deadline). Histories are short (tens of facts), so this costs little.

Idempotence: the runner applies each event id once, but every projection here also tolerates seeing an event again
(history skips stored event ids; the others upsert rows recomputed from the log).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import Connection, Row, Select, func, select

from projections.base import ConsumedEvent, Projection, upsert
from projections.sales_tables import decision_audit, refunds, unit_board, unit_history, units
from services.core.clock import stored_utc
from services.sales import domain as d
from services.sales.wire import FACT_CLASSES, record_to_fact

log = logging.getLogger(__name__)

REGISTERED = "UnitRegistered"
REJECTIONS = {"UnitLockRejected": "RequestLock", "UnitCommandRejected": None}  # → the refused command's type
PENDING_REFUND_STAGES = ("requested", "reviewed", "submitted", "approved")
REFUND_STAGES = (*PENDING_REFUND_STAGES, "rejected", "processed")
SQL_CHUNK = 900  # stay under SQLite's bound-parameter limit

UNITS_BY_STATUS = Gauge(
    "anchang_units_by_status",
    "Units on the 销控表 by owning office and status (locked + subscribed are the active claims).",
    ["office_id", "status"],
)
REFUNDS_PENDING = Gauge(
    "anchang_refunds_pending",
    "Refund applications (退订/退房) still in their approval chain, by office and stage (SALE-17…19).",
    ["office_id", "stage"],
)
# Blocked double sales and missed payment deadlines are counted where they are decided, once, by the decision
# processor (anchang_double_sales_blocked_total, anchang_payment_deadlines_missed_total): counting them here
# too would count them again on every rebuild.


# ---------------------------------------------------------------------------------------------------------------
# Records as JSON, and back


JsonPath = list[str | int]


def record_to_json(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[JsonPath]]:
    """(the record with datetimes as ISO strings and UUIDs as strings, the paths of the datetimes)."""
    paths: list[JsonPath] = []

    def walk(value: Any, path: JsonPath) -> Any:
        if isinstance(value, datetime):
            paths.append(path)
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)  # record_to_fact and ConsumedEvent read uuids through str() anyway
        if isinstance(value, Mapping):
            return {key: walk(item, [*path, key]) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item, [*path, index]) for index, item in enumerate(value)]
        return value

    return walk(record, []), paths


def json_to_record(stored: Mapping[str, Any], datetime_paths: Sequence[Sequence[str | int]]) -> dict[str, Any]:
    """The inverse of ``record_to_json``: ``record_to_fact`` on the result equals it on the decoded record."""
    record: dict[str, Any] = copy.deepcopy(dict(stored))
    for path in datetime_paths:
        container: Any = record
        for key in path[:-1]:
            container = container[key]
        container[path[-1]] = datetime.fromisoformat(container[path[-1]])
    return record


def to_fact(event_type: str, record: Mapping[str, Any]) -> d.Fact | None:
    """The domain fact a unit record carries, or None (logged) for a record that is no well-formed fact."""
    if event_type not in FACT_CLASSES:
        return None
    try:
        return record_to_fact(event_type, dict(record))
    except (KeyError, TypeError, ValueError) as error:
        log.warning("%s %s is not a well-formed fact, left out of the fold: %s", event_type, _event_id(record), error)
        return None


def _event_id(record: Mapping[str, Any]) -> str:
    return str(record.get("envelope", {}).get("event_id"))


def fold_facts(facts: Iterable[d.Fact]) -> d.UnitState:
    """``domain.fold``, except that a fact that cannot follow the state is skipped (and logged) instead of
    stopping every projection: such a fact was not produced by the decider (someone published it by hand)."""
    state = d.INITIAL
    for fact in facts:
        try:
            state = d.evolve(state, fact)
        except d.InconsistentHistory as error:
            log.warning("unit %s: fact caused by %s skipped: %s", fact.unit_id, fact.caused_by, error)
    return state


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _plain(row: Row[Any]) -> dict[str, Any]:
    return {key: stored_utc(value) for key, value in row._mapping.items()}


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(items))
    for start in range(0, len(ordered), SQL_CHUNK):
        yield ordered[start : start + SQL_CHUNK]


def _rows_for(connection: Connection, query: Callable[[list[str]], Select[Any]], ids: Iterable[str]) -> list[Row[Any]]:
    return [row for chunk in _chunks(ids) for row in connection.execute(query(chunk))]


def _unit_id(event: ConsumedEvent) -> str:
    return str(event.record["unit_id"])


def _is_fact(event: ConsumedEvent) -> bool:
    return event.event_type in FACT_CLASSES


def _is_unit_event(event: ConsumedEvent) -> bool:
    return event.event_type == REGISTERED or _is_fact(event)


def _actor(record: Mapping[str, Any]) -> dict[str, Any]:
    return dict(record["envelope"].get("actor") or {})


# ---------------------------------------------------------------------------------------------------------------
# Inventory


INVENTORY_FIELDS = (
    "project_id",
    "project_name",
    "building",
    "floor",
    "number",
    "layout",
    "area_sqm",
    "list_price_fen",
)


def _load_units(connection: Connection, unit_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = _rows_for(connection, lambda chunk: select(units).where(units.c.unit_id.in_(chunk)), unit_ids)
    return {row.unit_id: _plain(row) for row in rows}


def merge_registrations(
    stored: Mapping[str, dict[str, Any]], events: Iterable[ConsumedEvent]
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(inventory rows after the registrations among ``events``, ids of the units they changed). A later
    registration by the owning office corrects the attributes; one by another office is ignored."""
    current = dict(stored)
    changed: set[str] = set()
    for event in events:
        if event.event_type != REGISTERED:
            continue
        payload = event.payload()
        unit_id = str(payload["unit_id"])
        before = current.get(unit_id)
        if before is not None and before["office_id"] != event.office_id:
            log.warning(
                "unit %s belongs to office %s; registration %s by office %s ignored",
                unit_id,
                before["office_id"],
                event.event_id,
                event.office_id,
            )
            continue
        current[unit_id] = {
            "unit_id": unit_id,
            "office_id": event.office_id,
            **{name: payload.get(name) for name in INVENTORY_FIELDS},
            "registered_at": before["registered_at"] if before is not None else event.occurred_at,
            "updated_at": event.occurred_at,
            "event_id": event.event_id,
        }
        changed.add(unit_id)
    return current, changed


class UnitInventory:
    """UnitRegistered → ``units`` (the 房源 inventory)."""

    tables = (units,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        registrations = [event for event in events if event.event_type == REGISTERED]
        if not registrations:
            return
        stored = _load_units(connection, {_unit_id(event) for event in registrations})
        merged, changed = merge_registrations(stored, registrations)
        upsert(connection, units, [merged[unit_id] for unit_id in sorted(changed)], keys=("unit_id",))


# ---------------------------------------------------------------------------------------------------------------
# History


@dataclass(frozen=True)
class HistoryEntry:
    """One fact of a unit's history, with its record as decoded from Avro."""

    event_id: str
    office_id: str
    event_type: str
    occurred_at: datetime
    record: dict[str, Any]

    @property
    def fact(self) -> d.Fact | None:
        return to_fact(self.event_type, self.record)

    @classmethod
    def of_event(cls, event: ConsumedEvent) -> HistoryEntry:
        return cls(event.event_id, event.office_id, event.event_type, event.occurred_at, event.record)

    @classmethod
    def of_row(cls, row: Row[Any]) -> HistoryEntry:
        record = json_to_record(row.record, row.datetime_paths)
        return cls(row.event_id, row.office_id, row.event_type, stored_utc(row.occurred_at), record)


def _stored_histories(connection: Connection, unit_ids: Iterable[str]) -> dict[str, list[Row[Any]]]:
    """The stored history rows of ``unit_ids``, each unit's in log order."""
    rows = _rows_for(
        connection,
        lambda chunk: (
            select(unit_history)
            .where(unit_history.c.unit_id.in_(chunk))
            .order_by(unit_history.c.unit_id, unit_history.c.seq)
        ),
        unit_ids,
    )
    histories: dict[str, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        histories[row.unit_id].append(row)
    return histories


def histories_with(
    connection: Connection, unit_ids: Iterable[str], events: Sequence[ConsumedEvent]
) -> dict[str, list[HistoryEntry]]:
    """Each unit's whole history including the facts of this batch, whether or not UnitHistory stored them
    already: the stored facts that are not in the batch (all earlier in the log), then the batch's, in order."""
    in_batch = {event.event_id for event in events}
    histories: dict[str, list[HistoryEntry]] = defaultdict(list)
    for unit_id, rows in _stored_histories(connection, unit_ids).items():
        histories[unit_id] = [HistoryEntry.of_row(row) for row in rows if row.event_id not in in_batch]
    wanted = set(unit_ids)
    for event in events:
        if _is_fact(event) and _unit_id(event) in wanted:
            histories[_unit_id(event)].append(HistoryEntry.of_event(event))
    return histories


class UnitHistory:
    """Every fact of every unit → ``unit_history``, numbered 1, 2, … in log order per unit."""

    tables = (unit_history,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        facts = [event for event in events if _is_fact(event)]
        if not facts:
            return
        known = {
            row.event_id
            for row in _rows_for(
                connection,
                lambda chunk: select(unit_history.c.event_id).where(unit_history.c.event_id.in_(chunk)),
                (event.event_id for event in facts),
            )
        }
        next_seq = self._next_seqs(connection, {_unit_id(event) for event in facts})
        rows = []
        for event in facts:
            if event.event_id in known:
                continue
            known.add(event.event_id)
            unit_id = _unit_id(event)
            record, paths = record_to_json(event.record)
            rows.append(
                {
                    "event_id": event.event_id,
                    "office_id": event.office_id,
                    "unit_id": unit_id,
                    "seq": next_seq[unit_id],
                    "event_type": event.event_type,
                    "occurred_at": event.occurred_at,
                    "recorded_at": event.recorded_at,
                    "topic": event.topic,
                    "partition": event.partition,
                    "offset": event.offset,
                    "record": record,
                    "datetime_paths": paths,
                }
            )
            next_seq[unit_id] += 1
        if rows:
            connection.execute(unit_history.insert(), rows)

    @staticmethod
    def _next_seqs(connection: Connection, unit_ids: set[str]) -> dict[str, int]:
        rows = _rows_for(
            connection,
            lambda chunk: (
                select(unit_history.c.unit_id, func.max(unit_history.c.seq).label("last"))
                .where(unit_history.c.unit_id.in_(chunk))
                .group_by(unit_history.c.unit_id)
            ),
            unit_ids,
        )
        stored: dict[str, int] = {row.unit_id: row.last for row in rows}
        return {unit_id: stored.get(unit_id, 0) + 1 for unit_id in unit_ids}


# ---------------------------------------------------------------------------------------------------------------
# The 销控表


def state_columns(state: d.UnitState) -> dict[str, Any]:
    """Board columns of a unit state: its status and its one active claim (SALE-06)."""
    sub, holder, pending, refund = state.subscription, state.holder, state.pending, state.refund
    if sub is not None:
        staff_id: str | None = sub.staff_id  # the consultant who signed with the customer
    elif holder is not None:
        staff_id = holder.staff_id
    else:
        staff_id = pending.staff_id if pending is not None else None
    running = sub is not None and state.status is d.UnitStatus.SUBSCRIBED
    return {
        "status": state.status.value,
        "customer_id": state.claimant or (sub.customer_id if sub is not None else None),
        "staff_id": staff_id,
        "confirmed_by": holder.confirmed_by if holder is not None else None,
        "subscription_id": sub.subscription_id if sub is not None else None,
        "signed_at": sub.signed_at if sub is not None else None,
        # SALE-09: the deadline matters only while the clock runs; a qualifying payment stops it.
        "payment_deadline_at": sub.deadline_at if running and sub is not None else None,
        "price_fen": sub.price_fen if sub is not None else None,
        "paid_fen": sub.paid_fen if sub is not None else None,
        "deposit_paid_at": sub.deposit_paid_at if sub is not None else None,
        "refund_id": refund.refund_id if refund is not None else None,
        "refund_stage": refund.stage.value if refund is not None else None,
    }


def board_row(unit_id: str, inventory: Mapping[str, Any] | None, history: Sequence[HistoryEntry]) -> dict[str, Any]:
    """The unit_board row of a unit: its inventory placement and the fold of its history."""
    state = fold_facts(fact for fact in (entry.fact for entry in history) if fact is not None)
    last = history[-1] if history else None
    moments = [moment for moment in (inventory and inventory["updated_at"], last and last.occurred_at) if moment]
    owner = inventory["office_id"] if inventory is not None else history[0].office_id
    return {
        "unit_id": unit_id,
        "office_id": owner,
        **{name: inventory.get(name) if inventory else None for name in ("project_id", "building", "floor", "number")},
        **state_columns(state),
        "fact_count": len(history),
        "last_event_id": last.event_id if last is not None else None,
        "updated_at": max(moments),
    }


class UnitBoard:
    """The 销控表: for each unit touched by the batch, its state rebuilt by folding its whole history.

    Reads ``units`` and ``unit_history`` (overlaid with the batch itself, so it does not depend on running after
    UnitInventory and UnitHistory), which therefore must be projected by the same processor."""

    tables = (unit_board,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        unit_ids = {_unit_id(event) for event in events if _is_unit_event(event)}
        if not unit_ids:
            return
        inventory, _ = merge_registrations(_load_units(connection, unit_ids), events)
        histories = histories_with(connection, unit_ids, events)
        rows = [board_row(unit_id, inventory.get(unit_id), histories.get(unit_id, [])) for unit_id in sorted(unit_ids)]
        previous = _rows_for(
            connection,
            lambda chunk: select(unit_board.c.office_id).where(unit_board.c.unit_id.in_(chunk)),
            unit_ids,
        )
        upsert(connection, unit_board, rows, keys=("unit_id",))
        # A unit can change owner (facts first, registration later): refresh the old owner's counts too.
        refresh_unit_gauges(connection, {row["office_id"] for row in rows} | {row.office_id for row in previous})


def refresh_unit_gauges(connection: Connection, offices: Iterable[str]) -> None:
    offices = sorted(set(offices))
    if not offices:
        return
    counts = {
        (office, status): count
        for office, status, count in connection.execute(
            select(unit_board.c.office_id, unit_board.c.status, func.count())
            .where(unit_board.c.office_id.in_(offices))
            .group_by(unit_board.c.office_id, unit_board.c.status)
        )
    }
    for office in offices:
        for status in d.UnitStatus:
            UNITS_BY_STATUS.labels(office, status.value).set(counts.get((office, status.value), 0))


# ---------------------------------------------------------------------------------------------------------------
# Refunds by stage


REFUND_STEPS = {
    "RefundRequested": "requested",
    "RefundReviewed": "reviewed",
    "RefundSubmittedToDeveloper": "submitted",
    "RefundApproved": "approved",
    "RefundRejected": "rejected",
    "RefundProcessed": "processed",
}
REFUND_COLUMNS = tuple(column.name for column in refunds.c)


def _step_columns(event: ConsumedEvent) -> dict[str, Any]:
    """What a refund fact adds to its row (SALE-17 request, SALE-18 review, SALE-19 developer and finance)."""
    payload, actor, at = event.payload(), _actor(event.record).get("staff_id"), event.occurred_at
    match event.event_type:
        case "RefundRequested":
            return {"reason": payload.get("reason"), "requested_by": actor, "requested_at": at}
        case "RefundReviewed":
            return {"reviewed_by": actor, "reviewed_at": at}
        case "RefundSubmittedToDeveloper":
            return {"submitted_at": at}
        case "RefundApproved":
            return {"decided_by": actor, "decided_at": at, "approved_amount_fen": payload.get("approved_amount_fen")}
        case "RefundRejected":
            return {"decided_by": actor, "decided_at": at, "rejection_reason": payload.get("reason")}
        case _:  # RefundProcessed
            return {
                "processed_by": actor,
                "processed_at": at,
                "refunded_amount_fen": payload.get("refunded_amount_fen"),
            }


def refund_step(row: Mapping[str, Any] | None, event: ConsumedEvent) -> dict[str, Any]:
    """The refund row after ``event``. A request (re)starts the row; a step without a stored row (its request
    was never seen) starts one from what the step itself says."""
    payload = event.payload()
    if row is None or event.event_type == "RefundRequested":
        row = {
            **dict.fromkeys(REFUND_COLUMNS),
            "unit_id": payload["unit_id"],
            "refund_id": payload["refund_id"],
            "office_id": event.office_id,
            "subscription_id": payload["subscription_id"],
            "customer_id": payload.get("customer_id"),
            "kind": str(payload["kind"]),
        }
    return {
        **row,
        **_step_columns(event),
        "stage": REFUND_STEPS[event.event_type],
        "updated_at": event.occurred_at,
        "last_event_id": event.event_id,
    }


class RefundsByStage:
    """Refund facts → ``refunds``: one row per application, at its latest stage."""

    tables = (refunds,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        steps = [event for event in events if event.event_type in REFUND_STEPS]
        if not steps:
            return
        stored = _rows_for(
            connection, lambda chunk: select(refunds).where(refunds.c.unit_id.in_(chunk)), map(_unit_id, steps)
        )
        current = {(row.unit_id, row.refund_id): _plain(row) for row in stored}
        changed: set[tuple[str, str]] = set()
        for event in steps:
            key = (_unit_id(event), str(event.record["refund_id"]))
            current[key] = refund_step(current.get(key), event)
            changed.add(key)
        upsert(connection, refunds, [current[key] for key in sorted(changed)], keys=("unit_id", "refund_id"))
        refresh_refund_gauges(connection, {current[key]["office_id"] for key in changed})


def refresh_refund_gauges(connection: Connection, offices: Iterable[str]) -> None:
    offices = sorted(set(offices))
    if not offices:
        return
    counts = {
        (office, stage): count
        for office, stage, count in connection.execute(
            select(refunds.c.office_id, refunds.c.stage, func.count())
            .where(refunds.c.office_id.in_(offices), refunds.c.stage.in_(PENDING_REFUND_STAGES))
            .group_by(refunds.c.office_id, refunds.c.stage)
        )
    }
    for office in offices:
        for stage in PENDING_REFUND_STAGES:
            REFUNDS_PENDING.labels(office, stage).set(counts.get((office, stage), 0))


# ---------------------------------------------------------------------------------------------------------------
# Decision audit


def audit_row(event: ConsumedEvent) -> dict[str, Any]:
    """Who asked (the actor of the command the fact answers), what came of it, under which rule."""
    payload, envelope, actor = event.payload(), event.envelope, _actor(event.record)
    rejected = event.event_type in REJECTIONS
    causation = envelope.get("causation_id")
    reason = payload.get("reason")
    return {
        "event_id": event.event_id,
        "office_id": event.office_id,
        "unit_id": _unit_id(event),
        "command_id": str(causation) if causation is not None else None,
        "event_type": event.event_type,
        "command_type": (payload.get("command_type") or REJECTIONS[event.event_type]) if rejected else None,
        "outcome": "rejected" if rejected else "accepted",
        "rule_id": payload.get("rule_id") if rejected else None,
        "reason": str(reason) if reason is not None else None,
        "customer_id": payload.get("customer_id"),
        "current_holder": payload.get("current_holder"),
        "actor_staff_id": str(actor.get("staff_id")),
        "actor_role": str(actor.get("role")),
        "occurred_at": event.occurred_at,
        "recorded_at": event.recorded_at,
        "partition": event.partition,
        "offset": event.offset,
    }


class DecisionAudit:
    """Every fact → ``decision_audit``: who asked, who decided, the rule and the outcome."""

    tables = (decision_audit,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        facts = [event for event in events if _is_fact(event)]
        upsert(connection, decision_audit, [audit_row(event) for event in facts], keys=("event_id",))


def sales_projections() -> list[Projection]:
    """The 销控 read side, in an order that keeps each table's inputs ready (the board also works alone)."""
    return [UnitInventory(), UnitHistory(), UnitBoard(), RefundsByStage(), DecisionAudit()]


# ---------------------------------------------------------------------------------------------------------------
# Queries (all office-scoped; the API calls them in a worker thread)


INVENTORY_VIEW = ("project_name", "layout", "area_sqm", "list_price_fen")


def _board_query() -> Select[Any]:
    extra = [units.c[name] for name in INVENTORY_VIEW]
    return select(unit_board, *extra).select_from(unit_board.outerjoin(units, units.c.unit_id == unit_board.c.unit_id))


def _board_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["project_id"] or "", row["building"] or "", row["floor"] or 0, row["number"] or "", row["unit_id"])


def board(
    connection: Connection, office_id: str, project_id: str | None = None, building: str | None = None
) -> list[dict[str, Any]]:
    """The office's 销控表 now: every unit it owns with its status, holder and inventory attributes."""
    query = _board_query().where(unit_board.c.office_id == office_id)
    if project_id is not None:
        query = query.where(unit_board.c.project_id == project_id)
    if building is not None:
        query = query.where(unit_board.c.building == building)
    return sorted((_plain(row) for row in connection.execute(query)), key=_board_order)


def unit_visible(connection: Connection, office_id: str, unit_id: str) -> bool:
    """An office sees a unit it owns, or one it has acted on (a fact answering one of its commands)."""
    owned = select(unit_board.c.unit_id).where(unit_board.c.unit_id == unit_id, unit_board.c.office_id == office_id)
    registered = select(units.c.unit_id).where(units.c.unit_id == unit_id, units.c.office_id == office_id)
    acted = select(unit_history.c.unit_id).where(
        unit_history.c.unit_id == unit_id, unit_history.c.office_id == office_id
    )
    return any(connection.execute(query.limit(1)).first() is not None for query in (owned, registered, acted))


def unit_view(connection: Connection, office_id: str, unit_id: str) -> dict[str, Any] | None:
    """One unit's board row with its inventory attributes, or None if the office may not see it."""
    if not unit_visible(connection, office_id, unit_id):
        return None
    row = connection.execute(_board_query().where(unit_board.c.unit_id == unit_id)).first()
    return _plain(row) if row is not None else None


def history_view(connection: Connection, unit_id: str) -> list[dict[str, Any]]:
    """Every fact of the unit in log order, decoded, with the unit's status after each."""
    rows = _stored_histories(connection, [unit_id]).get(unit_id, [])
    state, view = d.INITIAL, []
    for row in rows:
        entry = HistoryEntry.of_row(row)
        fact = entry.fact
        if fact is not None:
            state = _evolve_or_keep(state, fact)
        envelope = row.record["envelope"]
        view.append(
            {
                "seq": row.seq,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "office_id": row.office_id,
                "occurred_at": stored_utc(row.occurred_at),
                "recorded_at": stored_utc(row.recorded_at),
                "actor": envelope.get("actor"),
                "command_id": envelope.get("causation_id"),
                "payload": {key: value for key, value in row.record.items() if key != "envelope"},
                "status_after": state.status.value,
            }
        )
    return view


def _evolve_or_keep(state: d.UnitState, fact: d.Fact) -> d.UnitState:
    try:
        return d.evolve(state, fact)
    except d.InconsistentHistory:
        return state  # skipped by the board too (fold_facts)


def board_as_of(
    connection: Connection, office_id: str, at: datetime, project_id: str | None = None
) -> list[dict[str, Any]]:
    """The office's 销控表 as it was at ``at``, rebuilt from the log-derived history with the pure fold.

    A unit's state at ``at`` is the fold of the longest start of its history whose facts all occurred at or
    before ``at`` (a prefix, so the fold is always a history the decider produced). Units registered later are
    left out; inventory attributes are today's."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(UTC)
    owned = select(unit_board.c.unit_id).where(unit_board.c.office_id == office_id)
    registered = select(units.c.unit_id).where(units.c.office_id == office_id)
    if project_id is not None:
        owned = owned.where(unit_board.c.project_id == project_id)
        registered = registered.where(units.c.project_id == project_id)
    unit_ids = set(connection.execute(owned).scalars()) | set(connection.execute(registered).scalars())
    inventory = _load_units(connection, unit_ids)
    histories = _stored_histories(connection, unit_ids)
    rows = []
    for unit_id in unit_ids:
        history = list(_prefix_until(histories.get(unit_id, []), at))
        unit = inventory.get(unit_id)
        if not history and (unit is None or unit["registered_at"] > at):
            continue
        row = board_row(unit_id, unit, history)
        row.update({name: unit.get(name) if unit else None for name in INVENTORY_VIEW})
        # As of ``at``: the last fact by then, or the registration (a later correction is not "then").
        row["updated_at"] = history[-1].occurred_at if history else unit["registered_at"] if unit else None
        rows.append(row)
    return sorted(rows, key=_board_order)


def _prefix_until(rows: Sequence[Row[Any]], at: datetime) -> Iterator[HistoryEntry]:
    for row in rows:
        if stored_utc(row.occurred_at) > at:
            return
        yield HistoryEntry.of_row(row)


def open_subscriptions(connection: Connection, office_id: str) -> list[dict[str, Any]]:
    """Subscriptions (认购) awaiting payment at finance, soonest deadline first (SALE-09)."""
    query = (
        _board_query()
        .where(unit_board.c.office_id == office_id, unit_board.c.status == d.UnitStatus.SUBSCRIBED.value)
        .order_by(unit_board.c.payment_deadline_at, unit_board.c.unit_id)
    )
    return [_plain(row) for row in connection.execute(query)]


def refunds_of(connection: Connection, office_id: str, stage: str | None = None) -> list[dict[str, Any]]:
    """The office's refund applications, most recently moved first."""
    query = select(refunds).where(refunds.c.office_id == office_id)
    if stage is not None:
        query = query.where(refunds.c.stage == stage)
    query = query.order_by(refunds.c.updated_at.desc(), refunds.c.unit_id, refunds.c.refund_id)
    return [_plain(row) for row in connection.execute(query)]


def decisions_of(
    connection: Connection,
    office_id: str,
    unit_id: str | None = None,
    outcome: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The office's decision audit log, newest first."""
    query = select(decision_audit).where(decision_audit.c.office_id == office_id)
    if unit_id is not None:
        query = query.where(decision_audit.c.unit_id == unit_id)
    if outcome is not None:
        query = query.where(decision_audit.c.outcome == outcome)
    # A command's facts share their time; their offsets (one unit, one partition) keep them in log order.
    query = query.order_by(
        decision_audit.c.occurred_at.desc(), decision_audit.c.offset.desc(), decision_audit.c.event_id
    ).limit(limit)
    return [_plain(row) for row in connection.execute(query)]
