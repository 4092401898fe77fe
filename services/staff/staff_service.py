"""Wiring for the staff decision processor: from settings to a running processor."""

from __future__ import annotations

import threading

from projections.runner import ProjectionProcessor
from projections.wiring import decision_processor, processor_parts
from services.core.clock import Clock, system_clock
from services.core.config import Settings
from services.staff.policies import staff_policies_from_dir
from services.staff.staff_processor import INPUT_TOPICS, PROCESSOR_NAME, StaffDecisions


def build_staff_processor(settings: Settings, clock: Clock = system_clock) -> ProjectionProcessor:
    policies = staff_policies_from_dir(settings.policy_dir)
    parts = processor_parts(settings)
    decisions = StaffDecisions(
        codec=parts.codec, catalogue=parts.catalogue, kafka_config=parts.kafka, policies=policies, clock=clock
    )

    def tick() -> None:
        decisions.tick(parts.engine)

    # In timestamp order: an office-wide input (SpecialDayDeclared, DayEnded) sits on its declarer's partition, and
    # the leave requests and clock-ins it judges (ATT-01/05) on other staff members' partitions.
    return decision_processor(
        PROCESSOR_NAME, decisions, parts, settings,
        topics=INPUT_TOPICS, group_id=settings.staff_processor_group, clock=clock, tick=tick, batch_size=1000,
        order_by_timestamp=True,
    )  # fmt: skip


def run(settings: Settings, stop: threading.Event) -> None:
    build_staff_processor(settings).run(stop)
