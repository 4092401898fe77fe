"""Read endpoints of the front desk, office-scoped by the API key: who receives the next visitor (and why), the
day's call register for the manager's check after the 晚会, reception counts and the month's KPIs.

Clients publish front-desk inputs (VisitRegistered, CallReceived, CallEnded, CallLogged, SmsSent,
RotationCommandIssued) with POST /v1/events; the front-desk processor decides them. ``services.ingest.app``
includes ``frontdesk_router(settings)``: the per-office staff policies (timezone, SMS deadline, waiver weight)
come from the settings' policy directory and are validated when the app is built."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query

from services.core.config import Settings
from services.ingest.board import parse_instant
from services.ingest.readside import Office, ReadSide, Service, run_query
from services.staff import frontdesk_read as read
from services.staff.localtime import local_day
from services.staff.policies import StaffPolicies, staff_policies_from_dir

T = TypeVar("T")


def _day(text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise HTTPException(422, f"day={text!r} is not a date such as 2026-11-23") from error


def frontdesk_router(settings: Settings) -> APIRouter:
    policies: StaffPolicies = staff_policies_from_dir(settings.policy_dir)
    router = APIRouter(prefix="/v1/frontdesk", tags=["前台 front desk (read side)"])

    def now_at(service: ReadSide, at: str | None) -> datetime:
        return service.clock() if at is None else parse_instant(at)

    @router.get("/next-receiver", summary="Who receives the next visitor (轮序表), why, and the queue as it stands")
    async def next_receiver(service: Service, office_id: Office, at: str | None = None) -> dict[str, Any]:
        moment = now_at(service, at)
        return await run_query(service, lambda cn: read.next_receiver_view(cn, service.codec, office_id, moment))

    @router.get("/calls", summary="The day's call register (来电登记): rings, fines, 漏登, callback owner, SMS")
    async def calls(service: Service, office_id: Office, day: str | None = None) -> dict[str, Any]:
        policy, now = policies(office_id), service.clock()
        wanted = _day(day, local_day(now, policy.timezone))
        return await run_query(service, lambda cn: read.call_register(cn, office_id, wanted, now, policy))

    @router.get("/receptions", summary="Reception counts per consultant (KPI-07, a waiver counts two) and ROT-06 gaps")
    async def receptions(
        service: Service,
        office_id: Office,
        day: Annotated[str | None, Query(description="First day, default today")] = None,
        to: Annotated[str | None, Query(description="Last day, default the first")] = None,
    ) -> dict[str, Any]:
        policy = policies(office_id)
        first = _day(day, local_day(service.clock(), policy.timezone))
        last = _day(to, first)
        return await run_query(service, lambda cn: read.reception_counts(cn, office_id, first, last, policy))

    @router.get("/kpis", summary="The month's KPIs per consultant (KPI-01/02/03/07/09/10)")
    async def kpis(service: Service, office_id: Office, month: str | None = None) -> dict[str, Any]:
        policy, now = policies(office_id), service.clock()
        wanted = month or local_day(now, policy.timezone).strftime("%Y-%m")
        try:
            read.month_days(wanted)
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
        return await run_query(service, lambda cn: read.kpis(cn, office_id, wanted, now, policy))

    return router
