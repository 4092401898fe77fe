"""Wiring for the 销控 decision processor: from settings to a running processor."""

from __future__ import annotations

import threading

from confluent_kafka.schema_registry import SchemaRegistryClient

from projections.db import make_engine, migrate
from projections.runner import ProjectionProcessor
from services.core.catalog import load_catalogue
from services.core.clock import Clock, system_clock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.deadletter import DeadLetterSink
from services.sales.policies import OfficePolicies
from services.sales.processor import COMMANDS_TOPIC, PROCESSOR_NAME, UnitDecisions


def build_decision_processor(settings: Settings, clock: Clock = system_clock) -> ProjectionProcessor:
    migrate(settings.resolved_database_url)
    catalogue = load_catalogue()
    kafka = settings.kafka_client_config()
    codec = EventCodec(SchemaRegistryClient(settings.schema_registry_config()), catalogue)
    engine = make_engine(settings.resolved_database_url)
    decisions = UnitDecisions(
        codec=codec, catalogue=catalogue, kafka_config=kafka, policies=OfficePolicies.load(settings.policy_file),
        clock=clock,
    )  # fmt: skip

    def fire_deadlines() -> None:
        decisions.fire_due_deadlines(engine)

    return ProjectionProcessor(
        PROCESSOR_NAME,
        [decisions],
        engine=engine,
        codec=codec,
        catalogue=catalogue,
        kafka_config=kafka,
        dead_letters=DeadLetterSink(kafka, catalogue.dead_letter_topic.name, PROCESSOR_NAME),
        topics=[COMMANDS_TOPIC],
        group_id=settings.sales_processor_group,
        # Small batches keep decision latency low; the timer runs between them.
        batch_size=500,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        clock=clock,
        tick=fire_deadlines,
        poll_timeout=0.1,
        fetch_wait_ms=2,
    )


def run(settings: Settings, stop: threading.Event) -> None:
    build_decision_processor(settings).run(stop)
