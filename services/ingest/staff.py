"""Read endpoints of the staff slice, office-scoped by the API key (like services/ingest/board.py): the monthly
attendance ledger (JSON or CSV for 内业, ATT-13), leave requests and their outcomes, complaints with their SLA
state, complaints per staff member per month, the discipline ledger (JSON or CSV) and refused inputs.

Staff *inputs* (clock-ins, leave requests, approvals, complaint steps…) are posted as events to POST /v1/events;
the staff processor decides them and the read-models processor fills what these endpoints read."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from projections import staff_views as views
from services.ingest.readside import Office, Service, run_query
from services.staff.attendance import attendance_report_due, ledger_csv_rows
from services.staff.policy import DEFAULT_STAFF_POLICY

T = TypeVar("T")

router = APIRouter(prefix="/v1/staff", tags=["考勤与投诉 (staff)"])

Month = Annotated[str, Query(description="The ledger month, YYYY-MM.", examples=["2026-11"])]
Format = Annotated[Literal["json", "csv"], Query(description="csv: a file for 内业 / payroll.")]
LeaveStatus = Literal["REFUSED", "AWAITING_APPROVAL", "GRANTED", "RECLASSIFIED", "REVOKED"]
Stage = Literal["FILED", "CLASSIFIED", "FORWARDED", "RESOLVED", "CALLED_BACK", "CLOSED", "REJECTED"]
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _month(month: str) -> str:
    if not _MONTH.fullmatch(month):
        raise HTTPException(422, f"month={month!r} is not YYYY-MM")
    return month


def _csv(rows: list[tuple[str, ...]], filename: str) -> Response:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    # A BOM so that Excel, which 内业 opens it with, reads the Chinese labels as UTF-8.
    return Response(
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/attendance", summary="The month's attendance ledger (考勤记录表, ATT-13), per staff member", response_model=None
)
async def attendance(service: Service, office_id: Office, month: Month, format: Format = "json") -> Any:
    month = _month(month)
    rows = await run_query(service, lambda connection: views.attendance_rows(connection, office_id, month))
    if format == "csv":
        return _csv(ledger_csv_rows(rows), f"attendance-{office_id}-{month}.csv")
    year, number = (int(part) for part in month.split("-"))
    due = attendance_report_due(year, number, DEFAULT_STAFF_POLICY)
    return {"office_id": office_id, "month": month, "report_due": due.isoformat(), "rows": [asdict(r) for r in rows]}


@router.get(
    "/discipline",
    summary="The month's discipline ledger (rules.md §9): fines, counts by kind, every line",
    response_model=None,
)
async def discipline(service: Service, office_id: Office, month: Month, format: Format = "json") -> Any:
    month = _month(month)
    ledger = await run_query(service, lambda connection: views.discipline(connection, office_id, month))
    if format == "csv":
        return _csv(views.discipline_csv_rows(ledger), f"discipline-{office_id}-{month}.csv")
    return ledger


@router.get(
    "/leave",
    summary="Leave requests (请假) and their outcomes, most recently decided first; revoked_days lists the days a "
    "blackout day declared after the grant took back (ATT-05), REVOKED when none is left",
)
async def leave(
    service: Service, office_id: Office, staff_id: str | None = None, status: LeaveStatus | None = None
) -> list[dict[str, Any]]:
    return await run_query(service, lambda connection: views.leave_of(connection, office_id, staff_id, status))


@router.get("/complaints", summary="Complaint cases (投诉) with stage and SLA state, newest first")
async def complaints(service: Service, office_id: Office, stage: Stage | None = None) -> list[dict[str, Any]]:
    now = service.clock()
    return await run_query(service, lambda connection: views.complaints_of(connection, office_id, stage, now))


@router.get("/complaints/per-staff", summary="Complaints naming each staff member in a month (CMP-01)")
async def complaints_per_staff(service: Service, office_id: Office, month: Month) -> list[dict[str, Any]]:
    month = _month(month)
    return await run_query(service, lambda connection: views.complaints_per_staff(connection, office_id, month))


@router.get("/refusals", summary="Staff inputs and complaint steps the staff processor refused, with the rule")
async def refused(service: Service, office_id: Office, subject_id: str | None = None) -> list[dict[str, Any]]:
    return await run_query(service, lambda connection: views.refusals_of(connection, office_id, subject_id))
