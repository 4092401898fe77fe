"""The Avro event catalogue: shared named types in ``types/``, one record per event type in ``events/``,
and the topic catalogue ``topics.toml``. Code that reads them lives in ``services.core.catalog``."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
TYPES_DIR = SCHEMA_DIR / "types"
EVENTS_DIR = SCHEMA_DIR / "events"
TOPICS_FILE = SCHEMA_DIR / "topics.toml"
