"""The front desk's 销控 API: each request becomes a UnitCommandIssued on the commands topic, and the answer
is the decision processor's verdict on it.

A request waits (bounded by ANCHANG_DECISION_TIMEOUT_SECONDS) for its decision: 200 with the unit's new
state, 409 when the unit's state refuses it (with the rule and the current holder), 403 when the actor's
role may not do it at all (§12), 422 for a malformed command, 404 for a unit not in the inventory, and 504
when no decision came in time. A 504 loses nothing: the command is on the log and is decided later
(``GET /v1/decisions/{command_id}``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from projections.sales_tables import units
from services.ingest.app import Ingestion, Office, Service
from services.ingest.events import OfficeMismatch, build_event
from services.sales.tables import unit_decisions

router = APIRouter(prefix="/v1", tags=["销控"])

STATUS_OF_OUTCOME = {"accepted": 200, "rejected": 409, "forbidden": 403, "invalid": 422}
POLL_INTERVAL = 0.003


class Actor(BaseModel):
    staff_id: str = Field(examples=["s-007"])
    role: str = Field(examples=["SALES_CONSULTANT"], description="A Role symbol; §12 decides what it may do.")


class CommandIn(BaseModel):
    actor: Actor
    event_id: str | None = Field(
        None, description="Your id for this command: a retry with the same id is decided once."
    )


class LockRequestIn(CommandIn):
    customer_id: str
    staff_id: str | None = Field(None, description="The consultant the lock is for; default the actor.")


class ConfirmLockIn(CommandIn):
    customer_id: str


class SubscriptionIn(CommandIn):
    customer_id: str
    price_fen: int = Field(gt=0, description="Agreed price in fen (1/100 元).")
    subscription_id: str | None = Field(None, description="Default: a new id.")


class PaymentIn(CommandIn):
    subscription_id: str
    amount_fen: int = Field(gt=0)
    payment_kind: str = Field(examples=["DEPOSIT"])
    receipt_no: str


class ReleaseIn(CommandIn):
    reason: str = Field("MANAGER_RELEASE", examples=["MANAGER_RELEASE", "CUSTOMER_WITHDREW", "INVALID_LOCK"])


class ContractIn(CommandIn):
    subscription_id: str


class RefundIn(CommandIn):
    refund_kind: str = Field(examples=["CANCEL_SUBSCRIPTION", "RETURN_UNIT"])
    reason: str = ""
    refund_id: str | None = Field(None, description="Default: a new id.")


class RefundStepIn(CommandIn):
    reason: str | None = Field(None, description="Required to reject.")
    amount_fen: int | None = Field(None, description="Approve: the approved amount (default: all paid).")


async def issue(
    service: Ingestion, office_id: str, unit_id: str, command_type: str, body: CommandIn, payload: dict[str, Any]
) -> JSONResponse:
    """Put the command on the log and wait for its decision."""
    if not await asyncio.to_thread(_unit_known, service.engine, unit_id):
        raise HTTPException(404, f"unit {unit_id!r} is not in the inventory (anchang units import)")
    request = {
        "event_type": "UnitCommandIssued",
        "event_id": body.event_id or str(uuid.uuid4()),
        "actor": body.actor.model_dump(),
        "payload": {"unit_id": unit_id, "command_type": command_type,
                    **{key: value for key, value in payload.items() if value is not None}},
    }  # fmt: skip
    try:
        event, errors = build_event(request, office_id, service.catalogue, service.clock())
    except OfficeMismatch as mismatch:  # cannot happen: the office comes from the key
        raise HTTPException(403, str(mismatch)) from mismatch
    if event is None:
        return JSONResponse({"detail": [error.as_dict() for error in errors]}, status_code=422)
    accepted = await service.publish(event)
    decision = await _wait_for_decision(service, accepted.event_id)
    if decision is None:
        return JSONResponse(
            {"command_id": accepted.event_id, "detail": "no decision yet; the command is on the log and will be "
             f"decided: GET /v1/decisions/{accepted.event_id}"},
            status_code=504,
        )  # fmt: skip
    return JSONResponse(_answer(decision), status_code=STATUS_OF_OUTCOME[decision["outcome"]])


async def _wait_for_decision(service: Ingestion, command_id: str) -> dict[str, Any] | None:
    deadline = time.monotonic() + service.decision_timeout
    interval = POLL_INTERVAL
    while True:
        decision = await asyncio.to_thread(_decision, service.engine, command_id)
        if decision is not None or time.monotonic() > deadline:
            return decision
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 0.05)  # quick for the usual fast decision, gentle under a crowd


def _answer(decision: dict[str, Any]) -> dict[str, Any]:
    answer = {
        "command_id": decision["command_id"],
        "command_type": decision["command_type"],
        "outcome": decision["outcome"],
        "unit_id": decision["unit_id"],
        "unit": decision["state_after"],
        "facts": decision["fact_event_ids"],
    }
    if decision["outcome"] != "accepted":
        answer |= {"rule_id": decision["rule_id"], "reason": decision["reason"],
                   "current_holder": decision["current_holder"]}  # fmt: skip
    return answer


def _unit_known(engine: Engine, unit_id: str) -> bool:
    """Any office may act on any registered unit: several 案场 (and channel offices) may sell one project,
    and the 一房二卖 guard is per unit, across offices."""
    with engine.connect() as connection:
        return connection.execute(select(units.c.unit_id).where(units.c.unit_id == unit_id)).first() is not None


def _decision(engine: Engine, command_id: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(select(unit_decisions).where(unit_decisions.c.command_id == command_id)).first()
    return dict(row._mapping) if row is not None else None


@router.post("/units/{unit_id}/lock-requests", summary="Ask for a 销控 lock on a unit for a customer (置业顾问)")
async def request_lock(unit_id: str, body: LockRequestIn, service: Service, office_id: Office) -> JSONResponse:
    staff_id = body.staff_id or body.actor.staff_id
    return await issue(service, office_id, unit_id, "REQUEST_LOCK", body,
                       {"customer_id": body.customer_id, "staff_id": staff_id})  # fmt: skip


@router.post("/units/{unit_id}/lock", summary="Confirm the lock (销控) — 销售经理 only (SALE-01/02)")
async def confirm_lock(unit_id: str, body: ConfirmLockIn, service: Service, office_id: Office) -> JSONResponse:
    return await issue(service, office_id, unit_id, "CONFIRM_LOCK", body, {"customer_id": body.customer_id})


@router.post("/units/{unit_id}/subscriptions", summary="Sign the order (认购); starts the SALE-09 payment deadline")
async def sign(unit_id: str, body: SubscriptionIn, service: Service, office_id: Office) -> JSONResponse:
    payload = {"customer_id": body.customer_id, "price_fen": body.price_fen,
               "subscription_id": body.subscription_id or f"sub-{uuid.uuid4().hex[:12]}"}  # fmt: skip
    return await issue(service, office_id, unit_id, "SIGN_SUBSCRIPTION", body, payload)


@router.post("/units/{unit_id}/payments", summary="Record money taken at finance — 财务/出纳 only (SALE-10/11)")
async def pay(unit_id: str, body: PaymentIn, service: Service, office_id: Office) -> JSONResponse:
    payload = {"subscription_id": body.subscription_id, "amount_fen": body.amount_fen,
               "payment_kind": body.payment_kind, "receipt_no": body.receipt_no}  # fmt: skip
    return await issue(service, office_id, unit_id, "RECEIVE_PAYMENT", body, payload)


@router.post("/units/{unit_id}/release", summary="Release the unit (放房源) — 销售经理 only (SALE-04/07)")
async def release(unit_id: str, body: ReleaseIn, service: Service, office_id: Office) -> JSONResponse:
    return await issue(service, office_id, unit_id, "RELEASE_LOCK", body, {"reason": body.reason})


@router.post("/units/{unit_id}/contract", summary="Sign the purchase contract (签约)")
async def sign_contract(unit_id: str, body: ContractIn, service: Service, office_id: Office) -> JSONResponse:
    return await issue(service, office_id, unit_id, "SIGN_CONTRACT", body, {"subscription_id": body.subscription_id})


@router.post("/units/{unit_id}/refunds", summary="Apply for a refund (退订/退房) to the 销售经理 (SALE-17)")
async def request_refund(unit_id: str, body: RefundIn, service: Service, office_id: Office) -> JSONResponse:
    payload = {"refund_kind": body.refund_kind, "reason": body.reason,
               "refund_id": body.refund_id or f"rf-{uuid.uuid4().hex[:12]}"}  # fmt: skip
    return await issue(service, office_id, unit_id, "REQUEST_REFUND", body, payload)


REFUND_STEPS = {
    "review": "REVIEW_REFUND",  # 销售经理 (SALE-18)
    "submit": "SUBMIT_REFUND_TO_DEVELOPER",  # 销售经理
    "approve": "APPROVE_REFUND",  # 开发商 (SALE-19)
    "reject": "REJECT_REFUND",  # 开发商, or the manager at review
    "process": "PROCESS_REFUND",  # 财务, only after approval (SALE-19)
}


@router.post(
    "/units/{unit_id}/refunds/{refund_id}/{step}",
    summary="Walk the refund chain: review → submit → approve|reject → process",
)
async def refund_step(
    unit_id: str, refund_id: str, step: str, body: RefundStepIn, service: Service, office_id: Office
) -> JSONResponse:
    if step not in REFUND_STEPS:
        raise HTTPException(404, f"unknown refund step {step!r}; steps: {', '.join(REFUND_STEPS)}")
    payload = {"refund_id": refund_id, "reason": body.reason, "amount_fen": body.amount_fen}
    return await issue(service, office_id, unit_id, REFUND_STEPS[step], body, payload)


@router.get("/decisions/{command_id}", summary="The decision on a command (e.g. after a 504)")
async def get_decision(command_id: str, service: Service, office_id: Office) -> dict[str, Any]:
    decision = await asyncio.to_thread(_decision, service.engine, command_id)
    if decision is None or decision["office_id"] != office_id:
        raise HTTPException(404, f"no decision on {command_id} yet (or it is another office's)")
    return _answer(decision)
