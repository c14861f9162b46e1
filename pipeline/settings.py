"""Settings read from flags and the environment, loaded once into frozen, validated objects.

Every Kafka client in vmlb (kafka-python, aiokafka under Faust, the benchmarks) is built from one
`KafkaSettings`, so security settings given once reach them all.

Environment:
    VMLB_BROKER                   bootstrap servers, comma separated (default 127.0.0.1:9092)
    VMLB_SECURITY_PROTOCOL        PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    VMLB_SASL_MECHANISM           PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    VMLB_SASL_USERNAME / VMLB_SASL_PASSWORD
    VMLB_SSL_CAFILE
    VMLB_TOPIC_PREFIX             prepended to every topic name (default `vmlb.`; tests isolate with it)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster. Frozen; build clients with the `to_*` methods."""

    model_config = SettingsConfigDict(env_prefix="VMLB_", frozen=True, extra="ignore")

    broker: str = Field(DEFAULT_BOOTSTRAP, description="bootstrap servers, comma separated")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    topic_prefix: str = Field("vmlb.", pattern=r"^[A-Za-z0-9._-]*$")

    @field_validator("broker")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("VMLB_BROKER is empty; give host:port[,host:port...]")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"bootstrap server {server!r} is not host:port")
        return ",".join(servers)

    @property
    def bootstrap_servers(self) -> list[str]:
        return self.broker.split(",")

    def _security(self) -> dict[str, Any]:
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            options["sasl_plain_username"] = self.sasl_username
        if self.sasl_password is not None:
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def to_kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient."""
        return {"bootstrap_servers": self.bootstrap_servers, **self._security()}

    def to_aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients."""
        options = {"bootstrap_servers": self.broker, **self._security()}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options.pop("ssl_cafile", None)
            options["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile)
        return options

    def to_faust_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)

    def topic(self, name: str) -> str:
        """The full name of a topic declared in topics.yaml."""
        return f"{self.topic_prefix}{name}"


def load_kafka_settings(**overrides: Any) -> KafkaSettings:
    """Settings from the environment, with non-None `overrides` (CLI flags) winning."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return KafkaSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="VMLB_")) from None


def _describe(exc: ValidationError, prefix: str) -> str:
    problems = []
    for error in exc.errors():
        key = prefix + "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{key}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)
