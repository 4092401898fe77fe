"""The ingestion API: offices post events; each is validated, then produced to Kafka with acks=all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Annotated, Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, Table, select

from projections.db import make_engine
from projections.tables import call_register, event_register, visit_register
from services.core.catalog import Catalogue, load_catalogue
from services.core.clock import Clock, stored_utc, system_clock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.core.metrics import EVENTS_PRODUCED, EVENTS_REJECTED, instrument
from services.ingest.events import OfficeMismatch, OutgoingEvent, build_event
from services.ingest.keys import KeyStore
from services.kafka.producer import AsyncProducer
from services.ownership.customers import CustomerKeys

MAX_BATCH = 10_000


class Accepted(BaseModel):
    event_id: str
    event_type: str
    topic: str
    partition: int
    offset: int


class BatchItem(BaseModel):
    index: int
    accepted: Accepted | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItem]


class EventIn(BaseModel):
    """Documentation model: the body is validated against the event type's Avro schema, not this."""

    event_type: str = Field(examples=["VisitRegistered"])
    occurred_at: str | None = Field(None, examples=["2026-11-22T09:30:00+08:00"])
    actor: dict[str, Any] = Field(examples=[{"staff_id": "s-007", "role": "FRONT_DESK"}])
    payload: dict[str, Any]
    event_id: str | None = None
    office_id: str | None = Field(None, description="Optional; must match the API key's office.")
    correlation_id: str | None = None
    causation_id: str | None = None


class Ingestion:
    """Everything a request needs, built once per process."""

    def __init__(self, settings: Settings, catalogue: Catalogue, engine: Engine, clock: Clock) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.clock = clock
        self.keys = KeyStore(engine, settings.api_key_cache_seconds)
        self.decision_timeout = settings.decision_timeout_seconds
        self.customer_keys = CustomerKeys(settings.resolved_customer_key_secret())
        self.codec = EventCodec(SchemaRegistryClient(settings.schema_registry_config()), catalogue)
        self.codec.register_all()
        self.producer = AsyncProducer(settings.kafka_client_config())

    async def publish(self, event: OutgoingEvent) -> Accepted:
        value = self.codec.encode(event.event_type, event.record, event.topic)
        delivered = await self.producer.send(
            event.topic,
            event.key.encode(),
            value,
            headers=[("anchang-event-type", event.event_type.encode())],
        )
        EVENTS_PRODUCED.labels(event.event_type, event.office_id).inc()
        return Accepted(
            event_id=event.event_id,
            event_type=event.event_type,
            topic=delivered.topic,
            partition=delivered.partition,
            offset=delivered.offset,
        )

    def close(self) -> None:
        self.producer.close()


def get_ingestion(request: Request) -> Ingestion:
    return request.app.state.ingestion  # type: ignore[no-any-return]


Service = Annotated[Ingestion, Depends(get_ingestion)]


def get_office(request: Request, service: Service) -> str:
    """The office the request's API key belongs to (X-API-Key header, or Authorization: Bearer)."""
    key = request.headers.get("x-api-key") or _bearer(request.headers.get("authorization"))
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    office_id = service.keys.office_for(key)
    if office_id is None:
        raise HTTPException(401, "unknown or revoked API key")
    return office_id


Office = Annotated[str, Depends(get_office)]


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        ingestion = await asyncio.to_thread(Ingestion, settings, load_catalogue(), engine, clock)
        app.state.ingestion = ingestion
        yield
        await asyncio.to_thread(ingestion.close)
        engine.dispose()

    app = FastAPI(
        title="Anchang ingestion API",
        version="0.1.0",
        description="Sales offices post events here. Authenticate with the office's key in `X-API-Key`.",
        lifespan=lifespan,
    )
    instrument(app, "api")

    def prepare(service: Ingestion, office_id: str, body: Any) -> tuple[OutgoingEvent | None, list[dict[str, Any]]]:
        """Validate one event; an event for another office raises OfficeMismatch."""
        event_type = body.get("event_type") if isinstance(body, dict) else None
        topic = service.catalogue.topic_of_type.get(event_type) if isinstance(event_type, str) else None
        if topic is not None and event_type is not None and not topic.client_may_publish(event_type):
            EVENTS_REJECTED.labels("decided_event").inc()
            message = f"{event_type} is decided by Anchang's 销控 processor; send a command (POST /v1/units/...)"
            return None, [{"loc": ["event_type"], "msg": message, "type": "decided_event"}]
        try:
            event, errors = build_event(body, office_id, service.catalogue, service.clock().astimezone(UTC))
        except OfficeMismatch:
            EVENTS_REJECTED.labels("office_mismatch").inc()
            raise
        if errors:
            EVENTS_REJECTED.labels("invalid").inc()
        return event, [error.as_dict() for error in errors]

    def prepare_item(
        service: Ingestion, office_id: str, body: Any
    ) -> tuple[OutgoingEvent | None, list[dict[str, Any]]]:
        try:
            return prepare(service, office_id, body)
        except OfficeMismatch as mismatch:
            return None, [{"loc": ["office_id"], "msg": str(mismatch), "type": "office_mismatch"}]

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        summary="Publish one event",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": EventIn.model_json_schema()}}}},
        responses={
            401: {"description": "No or bad API key"},
            403: {"description": "Event for another office"},
            422: {"description": "Invalid event: `detail` lists each field and why"},
        },
    )
    async def publish_one(request: Request, service: Service, office_id: Office) -> Accepted | JSONResponse:
        try:
            event, errors = prepare(service, office_id, await _json(request))
        except OfficeMismatch as mismatch:
            raise HTTPException(403, str(mismatch)) from mismatch
        if event is None:
            return JSONResponse({"detail": errors}, status_code=422)
        return await service.publish(event)

    @app.post("/v1/events/batch", response_model=BatchResult, summary="Publish many events (bulk import)")
    async def publish_batch(request: Request, service: Service, office_id: Office) -> BatchResult:
        body = await _json(request)
        if not isinstance(body, list) or len(body) > MAX_BATCH:
            raise HTTPException(422, f"the body must be a JSON list of at most {MAX_BATCH} events")
        prepared = [prepare_item(service, office_id, item) for item in body]
        sends = [service.publish(event) for event, _ in prepared if event is not None]
        results = iter(await asyncio.gather(*sends))
        items = [
            BatchItem(index=index, accepted=next(results))
            if event is not None
            else BatchItem(index=index, errors=errors)
            for index, (event, errors) in enumerate(prepared)
        ]
        accepted = sum(item.accepted is not None for item in items)
        return BatchResult(accepted=accepted, rejected=len(items) - accepted, items=items)

    @app.get("/v1/event-types", summary="Event types, their topics and Avro schemas")
    async def event_types(service: Service) -> dict[str, Any]:
        return {
            name: {"topic": service.catalogue.topic_of_type[name].name, "schema": schema.json}
            for name, schema in service.catalogue.schemas.items()
        }

    @app.get("/v1/register", summary="Event counts and last event per type, for the key's office")
    async def register(service: Service, office_id: Office) -> list[dict[str, Any]]:
        return await _office_rows(service, event_register, office_id, event_register.c.event_type, limit=None)

    @app.get("/v1/visits", summary="The visit register (来访登记), newest first")
    async def visits(service: Service, office_id: Office, limit: Limit = 100) -> list[dict[str, Any]]:
        return await _office_rows(service, visit_register, office_id, visit_register.c.arrived_at.desc(), limit)

    @app.get("/v1/calls", summary="The call register (来电登记), newest first")
    async def calls(service: Service, office_id: Office, limit: Limit = 100) -> list[dict[str, Any]]:
        return await _office_rows(service, call_register, office_id, call_register.c.updated_at.desc(), limit)

    # Imported here: the routers use this module's dependencies (Service, Office).
    from services.ingest.board import router as board_router
    from services.ingest.units import router as units_router

    app.include_router(units_router)
    app.include_router(board_router)
    from services.ingest.ownership import router as ownership_router  # issue 4: ownership routes

    app.include_router(ownership_router)
    from services.ingest.frontdesk import frontdesk_router  # issue 5: front-desk routes

    app.include_router(frontdesk_router(settings))
    from services.ingest.staff import router as staff_router  # issue 5: staff routes

    app.include_router(staff_router)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as error:
        raise HTTPException(400, f"the body is not valid JSON: {error}") from error


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many rows.")]


async def _office_rows(
    service: Ingestion, table: Table, office_id: str, order_by: Any, limit: int | None
) -> list[dict[str, Any]]:
    """Rows of an office-scoped projection table: an office sees only its own."""
    query = select(table).where(table.c.office_id == office_id).order_by(order_by).limit(limit)
    return await asyncio.to_thread(_rows, service.engine, query)


def _rows(engine: Engine, query: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [{key: stored_utc(value) for key, value in row._mapping.items()} for row in connection.execute(query)]


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
