"""Read endpoints of customer ownership, channel 报备 and commissions, office-scoped by the API key: who owns a
customer and until when, why (the evidence chain of rules and event ids), the 报备 with their verdicts, the
commission ledger (JSON or CSV) and 业绩 against targets (COM-06).

Inputs are published with POST /v1/events (``OwnershipCommandIssued``, ``VisitRegistered``, ``CallLogged``); the
attribution processor decides them. Errors name the field and the rule. ``services.ingest.app`` includes ``router``;
the key check is imported at request time, as in board.py."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy import Connection

from projections import ownership_views as views
from services.ingest.readside import Office, ReadSide, Service, run_query
from services.ownership.customers import InvalidPhone

T = TypeVar("T")
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")

router = APIRouter(prefix="/v1", tags=["客户归属 (ownership)"])


def _problem(status: int, field: str, rule_id: str, message: str) -> HTTPException:
    return HTTPException(status, [{"loc": ["query" if status == 422 else "path", field], "msg": message,
                                   "rule_id": rule_id}])  # fmt: skip


def _month(month: str | None) -> str | None:
    if month is not None and not MONTH.fullmatch(month):
        raise _problem(422, "month", "COM-06", f"month={month!r} is not YYYY-MM")
    return month


async def _known(service: ReadSide, office_id: str, key: str) -> None:
    if not await run_query(service, lambda connection: views.customer_known(connection, office_id, key)):
        raise _problem(404, "customer_key", "OWN-01", f"customer {key!r} is unknown to office {office_id!r}")


@router.get("/customers/owner", summary="The current owner of the customer with this phone (OWN-01, OWN-05)")
async def owner_by_phone(
    service: Service,
    office_id: Office,
    phone: Annotated[str, Query(description="Any spelling: +86 138 0000 0000, 138-0000-0000 …")],
    project_id: Annotated[
        str | None, Query(description="The project the customer is keyed in; default the office")
    ] = None,
) -> dict[str, Any]:
    try:
        key = service.customer_keys.key(project_id or office_id, phone)
    except InvalidPhone as problem:
        raise _problem(422, "phone", "OWN-01", str(problem)) from problem
    return await owner(service, office_id, key)


@router.get("/customers/{customer_key}/owner", summary="The current owner of a customer, with the expiry (OWN-05)")
async def owner(service: Service, office_id: Office, customer_key: str) -> dict[str, Any]:
    await _known(service, office_id, customer_key)
    now = service.clock()
    return await run_query(service, lambda connection: views.owner_view(connection, office_id, customer_key, now))


@router.get(
    "/customers/{customer_key}/why",
    summary="Why the customer belongs to whom: every decision with its rule and the event ids it rests on, in order",
)
async def why(service: Service, office_id: Office, customer_key: str) -> dict[str, Any]:
    await _known(service, office_id, customer_key)
    now = service.clock()

    def query(connection: Connection) -> dict[str, Any]:
        return {
            **views.owner_view(connection, office_id, customer_key, now),
            "chain": views.evidence_chain(connection, office_id, customer_key),
        }

    return await run_query(service, query)


@router.get("/channel-reports", summary="Channel 报备 with their latest verdict: rule, reason and detail (OWN-10…16)")
async def channel_reports(
    service: Service,
    office_id: Office,
    customer_key: str | None = None,
    channel_id: str | None = None,
    status: Literal["pending", "winning", "rejected"] | None = None,
) -> list[dict[str, Any]]:
    return await run_query(
        service, lambda connection: views.reports_view(connection, office_id, customer_key, channel_id, status)
    )


@router.get(
    "/commissions",
    summary="The commission ledger (COM-01…05) per staff member, channel and month; format=csv for text/csv",
    response_model=None,
)
async def commissions(
    service: Service,
    office_id: Office,
    staff_id: str | None = None,
    channel_id: str | None = None,
    month: Annotated[str | None, Query(description="YYYY-MM, on the office's wall clock")] = None,
    format: Literal["json", "csv"] = "json",
) -> list[dict[str, Any]] | Response:
    if staff_id is not None and channel_id is not None:
        raise _problem(422, "channel_id", "COM-04", "filter by staff_id or by channel_id, not both")
    month = _month(month)
    rows = await run_query(
        service, lambda connection: views.ledger_view(connection, office_id, staff_id, channel_id, month)
    )
    if format == "csv":
        return Response(views.ledger_csv(rows), media_type="text/csv; charset=utf-8")
    return rows


@router.get("/performance", summary="业绩 per consultant and month against the manager's target (COM-06)")
async def performance(
    service: Service, office_id: Office, month: str | None = None, staff_id: str | None = None
) -> list[dict[str, Any]]:
    month = _month(month)
    return await run_query(service, lambda connection: views.performance_view(connection, office_id, month, staff_id))
