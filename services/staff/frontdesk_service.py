"""Wiring for the front-desk decision processor: from settings to a running processor."""

from __future__ import annotations

import threading

from projections.runner import ProjectionProcessor
from projections.wiring import decision_processor, processor_parts
from services.core.clock import Clock, system_clock
from services.core.config import Settings
from services.ownership.customers import CustomerKeys
from services.staff.frontdesk_processor import PROCESSOR_NAME, UNITS_TOPIC, FrontDeskDecisions
from services.staff.frontdesk_wire import INPUT_TOPIC
from services.staff.policies import staff_policies_from_dir

__all__ = ["PROCESSOR_NAME", "build_frontdesk_processor", "run"]


def build_frontdesk_processor(settings: Settings, clock: Clock = system_clock) -> ProjectionProcessor:
    policies = staff_policies_from_dir(settings.policy_dir)
    parts = processor_parts(settings)
    decisions = FrontDeskDecisions(
        codec=parts.codec, catalogue=parts.catalogue, kafka_config=parts.kafka, policies=policies, clock=clock,
        customer_keys=CustomerKeys(settings.resolved_customer_key_secret()),  # the ownership slice's, for its table
    )  # fmt: skip

    def fire_timers() -> None:
        decisions.fire_due_sms_timers(parts.engine)
        decisions.fire_due_log_timers(parts.engine)  # CALL-03 / PEN-26 漏登

    # Small batches (the default) keep the 轮序表 answer fresh; the SMS and call-log timers run between them.
    # No timestamp order across topics: an office's inputs share one anchang.frontdesk partition, and the 销控 deals
    # are only recorded for the KPI read side (frontdesk_deals), never read by a decision.
    return decision_processor(
        PROCESSOR_NAME, decisions, parts, settings,
        topics=[INPUT_TOPIC, UNITS_TOPIC], group_id=settings.frontdesk_processor_group, clock=clock, tick=fire_timers,
    )  # fmt: skip


def run(settings: Settings, stop: threading.Event) -> None:
    build_frontdesk_processor(settings).run(stop)
