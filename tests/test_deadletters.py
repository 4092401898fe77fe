"""The dead-letter topic read back and replayed: a record a bug made fail is applied once the bug is gone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, select
from typer.testing import CliRunner

from projections.base import ConsumedEvent
from projections.runner import ProjectionProcessor
from projections.service import build_processor
from projections.spine import EventRegister
from projections.tables import event_register
from services.cli import app
from services.core.catalog import Catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka import deadletter
from services.kafka.deadletter_log import REPLAYED_FROM, DeadLetter, matching, read_dead_letters, replay
from services.kafka.direct import DirectPublisher
from tests.support import read_topic, visit_event

DEAD_LETTERS = "anchang.deadletter"


class ChokesOnOffice:
    """A projection with a bug that one office's records trigger."""

    tables: Sequence[Any] = ()

    def __init__(self, office: str) -> None:
        self.office = office

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        if any(event.office_id == self.office for event in events):
            raise ValueError(f"cannot handle {self.office}")


def letter(reason: str, processor: str, source: tuple[str, int, int]) -> DeadLetter:
    return DeadLetter(0, 0, reason, "", processor, *source, None, b"", ())


def test_matching_filters_and_keeps_each_source_record_once() -> None:
    letters = [
        letter("processing_failed", "sales", ("anchang.units.commands", 1, 7)),
        letter("processing_failed", "projector", ("anchang.units.commands", 1, 7)),  # the same record, twice
        letter("unknown_schema_id", "projector", ("anchang.frontdesk", 0, 3)),
        letter("processing_failed", "staff", ("anchang.staff", 2, 9)),
    ]
    assert [x.source for x in matching(letters)] == [
        ("anchang.units.commands", 1, 7), ("anchang.frontdesk", 0, 3), ("anchang.staff", 2, 9),
    ]  # fmt: skip
    assert [x.processor for x in matching(letters, reason="processing_failed")] == ["sales", "staff"]
    assert [x.source_offset for x in matching(letters, processor="projector")] == [7, 3]
    assert matching(letters, source_topic="anchang.staff", reason="unknown_schema_id") == []


@pytest.mark.kafka
def test_a_dead_lettered_record_is_listed_and_once_replayed_applied_exactly_once(
    settings: Settings, codec: EventCodec, catalogue: Catalogue, broker: str
) -> None:
    office = f"office-{uuid.uuid4().hex[:8]}"
    name = f"projector-{uuid.uuid4().hex[:6]}"  # a processor of its own, so its rows are this test's
    kafka = settings.kafka_client_config()
    shared = build_processor(settings)

    def processor(*projections: Any) -> ProjectionProcessor:
        return ProjectionProcessor(
            name, [*projections], engine=shared.engine, codec=codec, catalogue=catalogue, kafka_config=kafka,
            dead_letters=deadletter.DeadLetterSink(kafka, DEAD_LETTERS, name), topics=["anchang.frontdesk"],
            group_id=name,
        )  # fmt: skip

    processor(EventRegister()).run_until_caught_up()  # past what earlier tests left on the topic
    publisher = DirectPublisher(kafka, codec, catalogue)
    publisher.publish(visit_event("v-1", office=office))
    publisher.publish(visit_event("v-2", office=office))
    publisher.flush()
    assert processor(EventRegister(), ChokesOnOffice(office)).run_until_caught_up() == 2
    ours = matching(read_dead_letters(kafka, DEAD_LETTERS), processor=name, reason="processing_failed")
    assert [(x.reason, x.source_topic, x.event_type) for x in ours] == [
        ("processing_failed", "anchang.frontdesk", "VisitRegistered")
    ] * 2
    assert ours[0].detail == f"ValueError: cannot handle {office}"

    listed = CliRunner().invoke(
        app,
        ["deadletters", "list", "--processor", name, "--reason", "processing_failed", "--json"],
        env={"KAFKA_BOOTSTRAP_SERVERS": broker},
    )
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["reason"] for row in rows] == ["processing_failed"] * 2

    dry_run = CliRunner().invoke(app, ["deadletters", "replay", "--processor", name],
                                 env={"KAFKA_BOOTSTRAP_SERVERS": broker})  # fmt: skip
    assert dry_run.exit_code == 0 and "2 record(s) would be replayed" in dry_run.output

    # The bug is fixed: the same processor, without it, applies the replayed records and only those.
    assert replay(kafka, ours) == 2
    fixed = processor(EventRegister())
    assert fixed.run_until_caught_up() == 2
    with shared.engine.connect() as connection:
        count = connection.execute(
            select(event_register.c.event_count).where(event_register.c.office_id == office)
        ).scalar_one()
    assert count == 2
    replayed = [m for m in read_topic(broker, "anchang.frontdesk") if REPLAYED_FROM in dict(m.headers() or [])]
    assert {dict(m.headers())[REPLAYED_FROM].decode() for m in replayed} >= {f"{x.partition}:{x.offset}" for x in ours}

    # Replayed twice by mistake: the copies are dropped by event id, nothing is counted twice.
    replay(kafka, ours)
    assert fixed.run_until_caught_up() == 2
    with shared.engine.connect() as connection:
        assert (
            connection.execute(
                select(event_register.c.event_count).where(event_register.c.office_id == office)
            ).scalar_one()
            == 2
        )
