"""The ownership read side, written by the attribution processor in the transaction that decides (so it is never
behind the decisions it shows): the current owner, channel reports with their latest verdict, the commission
ledger per deal and 业绩 per consultant and month (COM-06).

Everything here is recomputed from a customer's folded state and the 认购 the processor learnt from 销控, so
writing it twice gives the same rows. Tables: projections/ownership_tables.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql

from projections.base import upsert
from projections.ownership_tables import (
    channel_reports,
    commission_ledger,
    customer_owners,
    sales_performance,
    sales_targets,
)
from services.ownership.customers import mask_phone
from services.ownership.ledger import Deal, Entry, LedgerLine, Party
from services.ownership.ledger import commission_ledger as ledger_lines
from services.ownership.policy import OwnershipPolicy
from services.ownership.state import CustomerState

PerformanceKey = tuple[str, str, str]  # office, staff, month
_CHUNK = 500  # keys per IN (…), well under SQLite's bound-parameter limit
# Built once: the per-deal ledger statements run for every deal of every customer a batch touches.
_OLD_STAFF_LINES = select(commission_ledger.c.party_id, commission_ledger.c.month).where(
    commission_ledger.c.deal_id == bindparam("b_deal_id"), commission_ledger.c.party == str(Party.STAFF)
)
_DELETE_LINES = delete(commission_ledger).where(commission_ledger.c.deal_id == bindparam("b_deal_id"))
_INSERT_LINES = commission_ledger.insert()


def write_customer(
    connection: Connection,
    office_id: str,
    key: str,
    state: CustomerState,
    policy: OwnershipPolicy,
    subscriptions: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> set[PerformanceKey]:
    """Bring one customer's read rows up to ``state``; return the 业绩 months whose totals may have changed."""
    return write_customers(connection, [(office_id, key, state, policy)], subscriptions, now)


def write_customers(
    connection: Connection,
    customers: Sequence[tuple[str, str, CustomerState, OwnershipPolicy]],
    subscriptions: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> set[PerformanceKey]:
    """``write_customer`` for several customers (office, key, state, policy) with one statement per table where
    the rows allow it (owners and reports); the rows written are the same. Return the 业绩 months touched."""
    _write_owners(connection, customers, now)
    _write_reports(connection, customers, now)
    touched: set[PerformanceKey] = set()
    for office_id, key, state, policy in customers:
        touched |= _write_ledger(connection, office_id, key, state, policy, subscriptions)
    return touched


def _write_owners(
    connection: Connection, customers: Sequence[tuple[str, str, CustomerState, OwnershipPolicy]], now: datetime
) -> None:
    gone: list[str] = []
    rows: list[dict[str, Any]] = []
    for office_id, key, state, _ in customers:
        owner = state.owner
        if owner is None:
            gone.append(key)
            continue
        rows.append(
            {
                "customer_key": key,
                "office_id": office_id,
                "staff_id": owner.staff_id,
                "since": _utc(owner.since),
                "expires_at": _utc(owner.expires_at),
                "basis": str(owner.basis),
                "rule_id": owner.rule_id,
                "updated_at": now,
            }
        )
    for start in range(0, len(gone), _CHUNK):
        connection.execute(
            delete(customer_owners).where(customer_owners.c.customer_key.in_(gone[start : start + _CHUNK]))
        )
    upsert(connection, customer_owners, rows, keys=("customer_key",))


def _write_reports(
    connection: Connection, customers: Sequence[tuple[str, str, CustomerState, OwnershipPolicy]], now: datetime
) -> None:
    rows = [
        {
            "report_id": report.event_id, "office_id": office_id, "customer_key": key,
            "channel_id": report.channel_id, "agent_id": report.agent_id, "reported_at": _utc(report.reported_at),
            "customer_name": report.customer_name, "phone_masked": mask_phone(report.phone),
            "status": str(report.verdict.status),
            "reason": str(report.verdict.reason) if report.verdict.reason is not None else None,
            "rule_id": report.verdict.rule_id, "detail": report.verdict.detail or None, "updated_at": now,
        }
        for office_id, key, state, _ in customers
        for report in state.reports
    ]  # fmt: skip
    upsert(connection, channel_reports, rows, keys=("report_id",))


def _utc(moment: datetime | None) -> datetime | None:
    # Stored in UTC: SQLite compares timestamps as text, so every row must use the same offset.
    return moment.astimezone(UTC) if moment is not None else None


def _deal(subscription: Mapping[str, Any]) -> Deal:
    return Deal(
        deal_id=subscription["subscription_id"],
        price_fen=subscription["price_fen"],
        subscribed_at=subscription["deposit_paid_at"] or subscription["signed_at"],
        contracted_at=subscription["contracted_at"],
        refunded_at=subscription["refunded_at"],
    )


def _line_row(office_id: str, line: LedgerLine) -> dict[str, Any]:
    line_id = f"{line.deal_id}/{line.entry}/{line.party}/{line.party_id or '-'}"
    return {
        "line_id": line_id, "office_id": office_id, "customer_key": line.customer_key, "deal_id": line.deal_id,
        "party": str(line.party), "party_id": line.party_id, "agent_id": line.agent_id, "entry": str(line.entry),
        "status": str(line.status) if line.status is not None else None, "share": str(line.share),
        "units": str(line.units), "sales_fen": line.sales_fen, "commission_fen": line.commission_fen,
        "withheld_fen": line.withheld_fen, "at": _utc(line.at), "month": line.month, "rule_id": line.rule_id,
        "basis": line.basis, "reason": line.reason, "evidence": list(line.evidence),
    }  # fmt: skip


def _write_ledger(
    connection: Connection,
    office_id: str,
    key: str,
    state: CustomerState,
    policy: OwnershipPolicy,
    subscriptions: Mapping[str, Mapping[str, Any]],
) -> set[PerformanceKey]:
    touched: set[PerformanceKey] = set()
    for record in state.deals:
        subscription = subscriptions.get(record.deal_id)
        if subscription is None:  # cannot happen: a deal is decided from a stored 认购
            continue
        old = connection.execute(_OLD_STAFF_LINES, {"b_deal_id": record.deal_id}).all()
        touched.update((office_id, staff, month) for staff, month in old)
        connection.execute(_DELETE_LINES, {"b_deal_id": record.deal_id})
        lines = ledger_lines(_deal(subscription), state, policy)
        if lines:
            connection.execute(_INSERT_LINES, [_line_row(office_id, line) for line in lines])
        touched.update(
            (office_id, line.party_id, line.month)
            for line in lines
            if line.party is Party.STAFF and line.party_id is not None
        )
    return touched


def set_target(
    connection: Connection,
    office_id: str,
    staff_id: str,
    month: str,
    amount_fen: int,
    by: str,
    event_id: str,
    at: datetime,
) -> PerformanceKey:
    row = {"office_id": office_id, "staff_id": staff_id, "month": month, "target_amount_fen": amount_fen,
           "set_by": by, "event_id": event_id, "set_at": at}  # fmt: skip
    upsert(connection, sales_targets, [row], keys=("office_id", "staff_id", "month"))
    return office_id, staff_id, month


def _lock_performance_rows(connection: Connection, ordered: list[PerformanceKey]) -> None:
    """On PostgreSQL, lock the 业绩 rows about to be recomputed (creating missing ones first), in key order.

    A row sums ledger lines of several customers, which two instances may credit at once under their own customer
    locks: without this, both read the ledger before the other commits and the later upsert keeps a stale total
    (a lost update, tests/test_ownership_concurrency.py). Locked, the second waits, and its ledger reads, new
    statements under READ COMMITTED, see the first one's lines. Taken after the customer locks, in key order, so
    two batches never wait on each other in a cycle. SQLite has one writer: nothing to do."""
    if connection.dialect.name != "postgresql" or not ordered:
        return
    placeholders = [{"office_id": o, "staff_id": s, "month": m, "credited_deals": 0, "credited_amount_fen": 0}
                    for o, s, m in ordered]  # fmt: skip
    connection.execute(postgresql.insert(sales_performance).on_conflict_do_nothing(), placeholders)
    performance = sales_performance.c
    for office_id, staff_id, month in ordered:
        connection.execute(
            select(performance.month)
            .where(performance.office_id == office_id, performance.staff_id == staff_id, performance.month == month)
            .with_for_update()
        )


def refresh_performance(connection: Connection, keys: Iterable[PerformanceKey]) -> None:
    """Recompute 业绩 rows from the ledger's staff lines and the targets (COM-06).

    ``credited_deals``: deals credited to the consultant in the month (a shared deal counts for each sharer),
    minus those reversed; ``credited_amount_fen``: their share of the prices, net of reversals."""
    ledger = commission_ledger.c
    ordered = sorted(set(keys))
    _lock_performance_rows(connection, ordered)
    rows = []
    for office_id, staff_id, month in ordered:
        mine = and_(
            ledger.office_id == office_id, ledger.party_id == staff_id, ledger.month == month, ledger.party == "staff"
        )
        credits, reversals, amount = connection.execute(
            select(
                func.count().filter(ledger.entry == str(Entry.CREDIT)),
                func.count().filter(ledger.entry == str(Entry.REVERSAL)),
                func.coalesce(func.sum(ledger.sales_fen), 0),
            ).where(mine)
        ).one()
        target = connection.execute(
            select(sales_targets.c.target_amount_fen).where(
                sales_targets.c.office_id == office_id,
                sales_targets.c.staff_id == staff_id,
                sales_targets.c.month == month,
            )
        ).scalar()
        rows.append(
            {
                "office_id": office_id,
                "staff_id": staff_id,
                "month": month,
                "credited_deals": credits - reversals,
                "credited_amount_fen": int(amount),
                "target_amount_fen": target,
                "achievement_rate": int(amount) / target if target else None,
            }
        )
    upsert(connection, sales_performance, rows, keys=("office_id", "staff_id", "month"))
