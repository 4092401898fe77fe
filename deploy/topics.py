"""Create the catalogue's topics explicitly, and check existing ones match it."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from services.core.catalog import Catalogue


class TopicMismatch(RuntimeError):
    """An existing topic differs from the catalogue in a way that breaks per-key ordering."""


def ensure_topics(
    kafka_config: dict[str, Any], catalogue: Catalogue, replication_factor: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create missing topics; return the names created. Existing topics must have the catalogue's
    partition count, since a different count would send a key to a different partition."""
    admin = AdminClient(kafka_config)
    existing = admin.list_topics(timeout=timeout).topics
    for name, topic in catalogue.topics.items():
        if name in existing and len(existing[name].partitions) != topic.partitions:
            raise TopicMismatch(
                f"topic {name} has {len(existing[name].partitions)} partitions, the catalogue says {topic.partitions}"
            )
    missing = [
        NewTopic(name, num_partitions=topic.partitions, replication_factor=replication_factor)
        for name, topic in catalogue.topics.items()
        if name not in existing
    ]
    if not missing:
        return []
    for future in admin.create_topics(missing, operation_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as error:
            # Another process may have created it between our listing and our request.
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [topic.topic for topic in missing]
