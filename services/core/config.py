"""Runtime configuration, read from environment variables (optionally a ``.env`` file).

Defaults describe the embedded single-machine setup that ``anchang up`` starts; production sets
``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and ``SCHEMA_REGISTRY_URL`` (see docs/configuration.md)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.secrets import read_or_create_secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), alias="ANCHANG_DATA_DIR", description="Where local state lives.")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_security_protocol: str = Field("PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: str | None = Field(None, alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: str | None = Field(None, alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_ca_location: str | None = Field(None, alias="KAFKA_SSL_CA_LOCATION")
    # Group timing: tansu joins a group in about half the session timeout, so keep it short locally.
    kafka_session_timeout_ms: int = Field(6000, alias="KAFKA_SESSION_TIMEOUT_MS")
    kafka_heartbeat_interval_ms: int = Field(1000, alias="KAFKA_HEARTBEAT_INTERVAL_MS")
    topic_replication_factor: int = Field(1, alias="ANCHANG_TOPIC_REPLICATION_FACTOR")

    schema_registry_url: str = Field("http://127.0.0.1:8081", alias="SCHEMA_REGISTRY_URL")
    schema_registry_basic_auth: str | None = Field(
        None, alias="SCHEMA_REGISTRY_BASIC_AUTH", description="user:password, if the registry needs it."
    )

    database_url: str | None = Field(None, alias="DATABASE_URL")

    api_host: str = Field("127.0.0.1", alias="ANCHANG_API_HOST")
    api_port: int = Field(8000, alias="ANCHANG_API_PORT")
    api_key_cache_seconds: float = Field(
        5.0, alias="ANCHANG_API_KEY_CACHE_SECONDS", description="How long a revoked key may still work."
    )
    registry_host: str = Field("127.0.0.1", alias="ANCHANG_REGISTRY_HOST")
    registry_port: int = Field(8081, alias="ANCHANG_REGISTRY_PORT")
    projector_metrics_port: int = Field(9101, alias="ANCHANG_PROJECTOR_METRICS_PORT")
    supervisor_metrics_port: int = Field(9100, alias="ANCHANG_SUPERVISOR_METRICS_PORT")

    broker_port: int = Field(9092, alias="ANCHANG_BROKER_PORT")
    # SeaweedFS's S3 port; its other nine listeners use the ports right after it.
    seaweed_base_port: int = Field(8333, alias="ANCHANG_SEAWEED_BASE_PORT")

    policy_file: Path | None = Field(
        None, alias="ANCHANG_POLICY_FILE", description="Per-office policy (TOML); see services/sales/policies.py."
    )
    policy_dir: Path | None = Field(
        None, alias="ANCHANG_POLICY_DIR", description="One TOML file per office; see services/core/policy_files.py."
    )
    customer_key_secret: SecretStr | None = Field(
        None,
        alias="ANCHANG_CUSTOMER_KEY_SECRET",
        description="Keys customer ids derived from phone numbers; default: created once in <data dir>/secrets.",
    )
    decision_timeout_seconds: float = Field(
        5.0, alias="ANCHANG_DECISION_TIMEOUT_SECONDS", description="How long the API waits for a 销控 decision."
    )
    sales_processor_group: str = Field("anchang-unit-decisions", alias="ANCHANG_SALES_PROCESSOR_GROUP")
    sales_metrics_port: int = Field(9102, alias="ANCHANG_SALES_METRICS_PORT")
    ownership_processor_group: str = Field("anchang-attribution", alias="ANCHANG_OWNERSHIP_PROCESSOR_GROUP")
    ownership_metrics_port: int = Field(9103, alias="ANCHANG_OWNERSHIP_METRICS_PORT")
    frontdesk_processor_group: str = Field("anchang-frontdesk", alias="ANCHANG_FRONTDESK_PROCESSOR_GROUP")
    frontdesk_metrics_port: int = Field(9104, alias="ANCHANG_FRONTDESK_METRICS_PORT")
    staff_processor_group: str = Field("anchang-staff", alias="ANCHANG_STAFF_PROCESSOR_GROUP")
    staff_metrics_port: int = Field(9105, alias="ANCHANG_STAFF_METRICS_PORT")
    projector_group: str = Field("anchang-projections", alias="ANCHANG_PROJECTOR_GROUP")
    projector_batch_size: int = Field(5000, alias="ANCHANG_PROJECTOR_BATCH_SIZE")

    @cached_property
    def resolved_database_url(self) -> str:
        """``DATABASE_URL``, or a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'projections.db').resolve()}"

    def resolved_customer_key_secret(self) -> bytes:
        """The secret customer keys are derived under (services.ownership.customers.CustomerKeys): the variable,
        or a random one created once in the data directory."""
        if self.customer_key_secret is not None and self.customer_key_secret.get_secret_value():
            return self.customer_key_secret.get_secret_value().encode()
        return read_or_create_secret(self.data_dir / "secrets" / "customer-key")

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by producers, consumers and the admin client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        optional = {
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password,
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        config.update({key: value for key, value in optional.items() if value})
        return config

    def schema_registry_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth:
            config["basic.auth.user.info"] = self.schema_registry_basic_auth
        return config
