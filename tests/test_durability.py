"""The durable embedded broker: tansu on SeaweedFS keeps records and topics across restarts of both."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from deploy.process import ManagedProcess, free_port
from deploy.seaweed import SeaweedConfig, seaweed_process
from deploy.tansu import TansuConfig, tansu_process
from deploy.topics import ensure_topics
from projections.service import build_processor
from services.core.catalog import Catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.direct import DirectPublisher
from tests.support import read_topic, visit_event

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_records_topics_and_projection_offsets_survive_a_restart_of_tansu_and_seaweedfs(
    tmp_path: Path, catalogue: Catalogue, codec: EventCodec, registry_url: str
) -> None:
    seaweed_config = SeaweedConfig.on_free_ports(tmp_path / "seaweed", tmp_path / "run")
    tansu_config = TansuConfig(free_port(), tmp_path / "run", seaweed_config)
    kafka = {"bootstrap.servers": tansu_config.bootstrap}
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=tansu_config.bootstrap,
        SCHEMA_REGISTRY_URL=registry_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'projections.db'}",
        ANCHANG_DATA_DIR=tmp_path,
    )
    office = f"office-{uuid.uuid4().hex[:8]}"

    def start() -> tuple[ManagedProcess, ManagedProcess]:
        weed, broker = seaweed_process(seaweed_config), tansu_process(tansu_config)
        weed.start()
        broker.start()
        return weed, broker

    weed, broker = start()
    try:
        assert set(ensure_topics(kafka, catalogue)) == set(catalogue.topics)
        publisher = DirectPublisher(kafka, codec, catalogue)
        first = [publisher.publish(visit_event(f"v-{n}", office=office)) for n in range(50)]
        publisher.flush()
        assert build_processor(settings).run_until_caught_up() == 50
    finally:
        broker.stop()
        weed.stop()

    weed, broker = start()
    try:
        assert ensure_topics(kafka, catalogue) == []  # the topics are still there
        stored = [
            codec.decode(message.value())[1] for message in read_topic(tansu_config.bootstrap, "anchang.frontdesk")
        ]
        assert [str(record["envelope"]["event_id"]) for record in stored] == first  # one office key: one partition
        publisher = DirectPublisher(kafka, codec, catalogue)
        publisher.publish(visit_event("v-after-restart", office=office))
        publisher.flush()
        # The projector resumes from its offsets in SQL: only the new record is processed.
        assert build_processor(settings).run_until_caught_up() == 1
    finally:
        broker.stop()
        weed.stop()
