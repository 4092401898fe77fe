"""From settings to a running decision processor: the parts every processor needs, built the same way.

A decision processor is a ``Projection`` (it decides, produces its facts and stores its state) run by a
``ProjectionProcessor`` over its input topics, with a timer ``tick`` between batches. Small batches and short
fetch waits keep decision latency low; the read-model projector uses large ones instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine

from projections.base import Projection
from projections.db import make_engine, migrate
from projections.runner import ProjectionProcessor
from services.core.catalog import Catalogue, load_catalogue
from services.core.clock import Clock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.deadletter import DeadLetterSink


@dataclass(frozen=True)
class ProcessorParts:
    catalogue: Catalogue
    kafka: dict[str, Any]
    codec: EventCodec
    engine: Engine


def processor_parts(settings: Settings) -> ProcessorParts:
    """Migrate the database, then connect to the catalogue, Kafka, the registry and SQL."""
    migrate(settings.resolved_database_url)
    catalogue = load_catalogue()
    return ProcessorParts(
        catalogue=catalogue,
        kafka=settings.kafka_client_config(),
        codec=EventCodec(SchemaRegistryClient(settings.schema_registry_config()), catalogue),
        engine=make_engine(settings.resolved_database_url),
    )


def decision_processor(
    name: str,
    decider: Projection,
    parts: ProcessorParts,
    settings: Settings,
    *,
    topics: Sequence[str],
    group_id: str,
    clock: Clock,
    tick: Callable[[], None],
    batch_size: int = 500,
    order_by_timestamp: bool = False,
) -> ProjectionProcessor:
    """``order_by_timestamp``: decide the inputs of all topics in the order of their Kafka timestamps (see
    ``TimestampOrder`` in projections/runner.py), for a processor whose decisions depend on the order across
    topics or partitions; without it, order holds only within a partition."""
    return ProjectionProcessor(
        name,
        [decider],
        engine=parts.engine,
        codec=parts.codec,
        catalogue=parts.catalogue,
        kafka_config=parts.kafka,
        dead_letters=DeadLetterSink(parts.kafka, parts.catalogue.dead_letter_topic.name, name),
        topics=list(topics),
        group_id=group_id,
        batch_size=batch_size,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        clock=clock,
        tick=tick,
        poll_timeout=0.1,
        fetch_wait_ms=2,
        order_by_timestamp=order_by_timestamp,
    )
