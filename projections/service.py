"""Wiring for the projection processor: from settings to a running (or rebuilding) processor."""

from __future__ import annotations

import threading

from confluent_kafka.schema_registry import SchemaRegistryClient

from projections.db import make_engine, migrate
from projections.runner import Progress, ProjectionProcessor
from projections.sales import sales_projections
from projections.spine import spine_projections
from projections.staff import staff_projections
from services.core.catalog import load_catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.deadletter import DeadLetterSink

PROCESSOR_NAME = "read-models"


def build_processor(settings: Settings) -> ProjectionProcessor:
    migrate(settings.resolved_database_url)
    catalogue = load_catalogue()
    kafka = settings.kafka_client_config()
    return ProjectionProcessor(
        PROCESSOR_NAME,
        # One processor, one transaction per batch: the 销控表 folds unit_history and units, so the sales
        # projections must see the same batches.
        [
            *spine_projections(),
            *sales_projections(),
            # issue 4: ownership projections
            # issue 5: front-desk projections
            *staff_projections(),
        ],
        engine=make_engine(settings.resolved_database_url),
        codec=EventCodec(SchemaRegistryClient(settings.schema_registry_config()), catalogue),
        catalogue=catalogue,
        kafka_config=kafka,
        dead_letters=DeadLetterSink(kafka, catalogue.dead_letter_topic.name, PROCESSOR_NAME),
        group_id=settings.projector_group,
        # The projector skips command topics: commands are the decision processors' input, not facts.
        topics=[topic.name for topic in catalogue.fact_topics],
        batch_size=settings.projector_batch_size,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )


def run(settings: Settings, stop: threading.Event) -> None:
    build_processor(settings).run(stop)


def rebuild(settings: Settings, progress: Progress | None = None) -> int:
    """Empty the projection tables and replay every topic from offset 0; return records replayed."""
    processor = build_processor(settings)
    processor.reset()
    return processor.run_until_caught_up(progress)
