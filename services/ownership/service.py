"""Wiring for the attribution processor: from settings to a running processor."""

from __future__ import annotations

import threading

from projections.runner import ProjectionProcessor
from projections.wiring import decision_processor, processor_parts
from services.core.clock import Clock, system_clock
from services.core.config import Settings
from services.ownership.customers import CustomerKeys
from services.ownership.policies import OwnershipPolicies
from services.ownership.processor import INPUT_TOPICS, PROCESSOR_NAME, Attribution


def build_attribution_processor(settings: Settings, clock: Clock = system_clock) -> ProjectionProcessor:
    policies = OwnershipPolicies.load(settings.policy_dir)
    parts = processor_parts(settings)
    attribution = Attribution(
        codec=parts.codec, catalogue=parts.catalogue, kafka_config=parts.kafka, policies=policies, clock=clock,
        customer_keys=CustomerKeys(settings.resolved_customer_key_secret()),
    )  # fmt: skip

    def tick() -> None:
        attribution.fire_due_expiries(parts.engine)
        attribution.refresh_gauges(parts.engine)

    # In timestamp order across the three topics: a 认购 must meet the visit that made its customer known, also
    # when a catch-up fetches anchang.units ahead of anchang.frontdesk.
    return decision_processor(
        PROCESSOR_NAME, attribution, parts, settings,
        topics=INPUT_TOPICS, group_id=settings.ownership_processor_group, clock=clock, tick=tick,
        order_by_timestamp=True,
    )  # fmt: skip


def run(settings: Settings, stop: threading.Event) -> None:
    build_attribution_processor(settings).run(stop)
