"""Prometheus metrics shared by every Anchang process (one registry per process, served at /metrics).

Label values are bounded: routes are templates (``/v1/events``), never raw paths; offices and event
types come from the catalogue and the office key table."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "anchang_http_requests_total",
    "HTTP requests answered, by service, route template, method and status code.",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "anchang_http_request_duration_seconds",
    "Time to answer an HTTP request, by service and route template.",
    ["service", "route"],
)
EVENTS_PRODUCED = Counter(
    "anchang_events_produced_total",
    "Events acknowledged by Kafka (acks=all), by event type and office.",
    ["event_type", "office_id"],
)
EVENTS_REJECTED = Counter(
    "anchang_events_rejected_total",
    "Events refused at ingestion before anything was produced, by reason.",
    ["reason"],
)
EVENTS_CONSUMED = Counter(
    "anchang_events_consumed_total",
    "Events folded into projections, by processor, event type and office.",
    ["processor", "event_type", "office_id"],
)
EVENT_LATENCY = Histogram(
    "anchang_event_end_to_end_seconds",
    "Seconds from an event's occurred_at to the commit of its projection.",
    ["processor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, float("inf")),
)
CONSUMER_LAG = Gauge(
    "anchang_consumer_lag_messages",
    "Records not yet processed: the high watermark of the last fetch minus the processor's position.",
    ["processor", "topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "anchang_consumer_assigned_partitions",
    "Partitions currently assigned to the processor (0 until it has joined its group).",
    ["processor"],
)
DEAD_LETTERS = Counter(
    "anchang_dead_letters_total",
    "Records sent to the dead-letter topic, by processor, source topic and reason code.",
    ["processor", "source_topic", "reason"],
)


def instrument(app: FastAPI, service: str) -> None:
    """Count and time every request of ``app`` and serve this process's metrics at ``/metrics``."""

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(service, template, request.method, str(status)).inc()
            HTTP_LATENCY.labels(service, template).observe(time.perf_counter() - started)

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
