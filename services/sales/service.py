"""Wiring for the 销控 decision processor: from settings to a running processor."""

from __future__ import annotations

import threading

from projections.runner import ProjectionProcessor
from projections.wiring import decision_processor, processor_parts
from services.core.clock import Clock, system_clock
from services.core.config import Settings
from services.sales.policies import OfficePolicies
from services.sales.processor import COMMANDS_TOPIC, PROCESSOR_NAME, UnitDecisions


def build_decision_processor(settings: Settings, clock: Clock = system_clock) -> ProjectionProcessor:
    policies = OfficePolicies.from_settings(settings.policy_file, settings.policy_dir)
    parts = processor_parts(settings)
    decisions = UnitDecisions(
        codec=parts.codec, catalogue=parts.catalogue, kafka_config=parts.kafka, policies=policies, clock=clock
    )

    def fire_deadlines() -> None:
        decisions.fire_due_deadlines(parts.engine)

    # Small batches keep decision latency low; the SALE-09 timer runs between them.
    return decision_processor(
        PROCESSOR_NAME, decisions, parts, settings,
        topics=[COMMANDS_TOPIC], group_id=settings.sales_processor_group, clock=clock, tick=fire_deadlines,
    )  # fmt: skip


def run(settings: Settings, stop: threading.Event) -> None:
    build_decision_processor(settings).run(stop)
