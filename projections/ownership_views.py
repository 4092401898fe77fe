"""Read queries of the ownership read side, office-scoped: the current owner, the evidence chain, channel
reports, the commission ledger (also as CSV) and 业绩. Raw phones never leave here: stored facts are masked."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from projections.ownership_tables import channel_reports, commission_ledger, customer_owners, sales_performance
from services.core.clock import stored_utc
from services.ownership.customers import mask_phone
from services.ownership.tables import ownership_customers, ownership_decisions, ownership_facts

LEDGER_COLUMNS = (
    "month", "deal_id", "customer_key", "party", "party_id", "agent_id", "entry", "status", "share", "units",
    "sales_fen", "commission_fen", "withheld_fen", "at", "rule_id", "basis", "reason", "evidence",
)  # fmt: skip
META = ("customer_key", "caused_by", "at", "actor_id", "actor_role")


def _row(mapping: Any) -> dict[str, Any]:
    return {key: stored_utc(value) for key, value in mapping.items()}


def masked(value: Any) -> Any:
    """A stored fact body with every raw ``phone`` replaced by ``phone_masked``."""
    if isinstance(value, dict):
        return {
            ("phone_masked" if key == "phone" else key): (mask_phone(item) if key == "phone" else masked(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def customer_known(connection: Connection, office_id: str, key: str) -> bool:
    found = connection.execute(
        select(ownership_customers.c.customer_key).where(
            ownership_customers.c.customer_key == key, ownership_customers.c.office_id == office_id
        )
    ).first()
    return found is not None


def owner_view(connection: Connection, office_id: str, key: str, now: datetime) -> dict[str, Any]:
    row = connection.execute(
        select(customer_owners).where(customer_owners.c.customer_key == key, customer_owners.c.office_id == office_id)
    ).first()
    if row is None:
        return {"customer_key": key, "status": "unowned", "owner": None}
    owner = _row(row._mapping)
    expires_at = owner["expires_at"]
    # The timer may not have fired yet: an ownership past its expiry is already free (OWN-05).
    if expires_at is not None and expires_at <= now:
        return {"customer_key": key, "status": "expired", "owner": None, "expired_owner": owner}
    return {"customer_key": key, "status": "owned", "owner": owner}


def evidence_chain(connection: Connection, office_id: str, key: str) -> list[dict[str, Any]]:
    """Every fact decided for the customer, in decision order, with its rule and the event ids it rests on."""
    rows = connection.execute(
        select(ownership_facts, ownership_decisions.c.input_type)
        .join(ownership_decisions, ownership_decisions.c.input_id == ownership_facts.c.caused_by, isouter=True)
        .where(ownership_facts.c.customer_key == key, ownership_facts.c.office_id == office_id)
        .order_by(ownership_facts.c.seq)
    )
    chain = []
    for row in rows:
        body = masked(row.body)
        chain.append(
            {
                "event_id": row.event_id,
                "event_type": row.event_type,
                "at": stored_utc(row.occurred_at),
                "rule_id": row.rule_id,
                "caused_by": row.caused_by,
                "input_type": row.input_type,
                "actor": {"staff_id": body["actor_id"], "role": body["actor_role"]},
                "evidence": body.get("evidence", []),
                "details": {name: value for name, value in body.items() if name not in (*META, "evidence")},
            }
        )
    return chain


def reports_view(
    connection: Connection, office_id: str, customer_key: str | None, channel_id: str | None, status: str | None
) -> list[dict[str, Any]]:
    table = channel_reports
    query = select(table).where(table.c.office_id == office_id)
    if customer_key is not None:
        query = query.where(table.c.customer_key == customer_key)
    if channel_id is not None:
        query = query.where(table.c.channel_id == channel_id)
    if status is not None:
        query = query.where(table.c.status == status)
    return [_row(row._mapping) for row in connection.execute(query.order_by(table.c.reported_at, table.c.report_id))]


def ledger_view(
    connection: Connection, office_id: str, staff_id: str | None, channel_id: str | None, month: str | None
) -> list[dict[str, Any]]:
    table = commission_ledger
    query = select(table).where(table.c.office_id == office_id)
    if staff_id is not None:
        query = query.where(table.c.party == "staff", table.c.party_id == staff_id)
    if channel_id is not None:
        query = query.where(table.c.party == "channel", table.c.party_id == channel_id)
    if month is not None:
        query = query.where(table.c.month == month)
    order = (table.c.month, table.c.at, table.c.deal_id, table.c.entry, table.c.party, table.c.party_id)
    return [_row(row._mapping) for row in connection.execute(query.order_by(*order))]


def ledger_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(LEDGER_COLUMNS)
    for row in rows:
        values = {**row, "at": row["at"].isoformat(), "evidence": " ".join(row["evidence"])}
        writer.writerow([values[column] for column in LEDGER_COLUMNS])
    return buffer.getvalue()


def performance_view(
    connection: Connection, office_id: str, month: str | None, staff_id: str | None
) -> list[dict[str, Any]]:
    table = sales_performance
    query = select(table).where(table.c.office_id == office_id)
    if month is not None:
        query = query.where(table.c.month == month)
    if staff_id is not None:
        query = query.where(table.c.staff_id == staff_id)
    return [dict(row._mapping) for row in connection.execute(query.order_by(table.c.month, table.c.staff_id))]
