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
from pipeline.policy.snapshot import PolicyConfig
from pipeline.stats.windows import WindowConfig

# Defaults of the policy's and the windows' tunables live with those (frozen dataclasses the
# simulator also builds); the settings below read them from there, so each is written once.
_POLICY = PolicyConfig()
_WINDOWS = WindowConfig()

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

    def to_faust_credentials(self) -> Any:
        """Faust's credentials object for SASL/SSL, or None for PLAINTEXT."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        ssl_context = None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            ssl_context = create_ssl_context(cafile=self.ssl_cafile)
            if self.security_protocol == "SSL":
                return faust.SSLCredentials(ssl_context)
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=password,
            mechanism=self.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )

    def to_faust_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)


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


class PipelineSettings(BaseSettings):
    """The Faust worker's settings (environment `VMLB_*`), with documented defaults."""

    model_config = SettingsConfigDict(env_prefix="VMLB_", frozen=True, extra="ignore")

    app_id: str = Field(
        "vmlb-pipeline", description="Faust app id: consumer group and changelog prefix"
    )
    policy: str = Field("io-aware", description="dispatch policy (see `vmlb worker --help`)")
    data_dir: str = Field(".vmlb/worker", description="RocksDB tables live here")
    store: str = Field(
        "rocksdb://", description="table store: rocksdb:// (memory:// for unit tests only)"
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    # The paper's load window (Eq. 1) and the io_per_job estimator (Table 2).
    rate_window_s: float = Field(
        _WINDOWS.rate_window_s,
        gt=0,
        description="window of load (Eq. 1), I/O rate and busy fraction",
    )
    io_per_job_window_s: float = Field(
        _WINDOWS.io_per_job_window_s,
        gt=0,
        description="window of the io_per_job estimate (Table 2)",
    )
    bucket_s: float = Field(_WINDOWS.bucket_s, gt=0, description="resolution of the windows")
    io_per_job_min_jobs: int = Field(
        _WINDOWS.io_per_job_min_jobs,
        ge=1,
        description="completions in the window before io_per_job is estimated",
    )
    inflight_timeout_s: float = Field(
        _WINDOWS.inflight_timeout_s,
        gt=0,
        description="an in-flight job older than this is presumed lost",
    )
    stats_batch_max: int = Field(
        1000, ge=1, description="vm_stats handles up to this many events as one batch"
    )
    stats_batch_s: float = Field(
        0.05, gt=0, description="...or what arrived within this many seconds, if fewer"
    )
    # Dispatch.
    stale_after_s: float = Field(
        _POLICY.stale_after_s,
        gt=0,
        description="a host this far behind the fleet's newest telemetry is ineligible",
    )
    lag_limit_s: float = Field(
        _POLICY.lag_limit_s,
        gt=0,
        description="every host is stale once the fleet's newest telemetry is older",
    )
    horizon_s: float = Field(
        _POLICY.horizon_s,
        gt=0,
        description="a VM holds at most the jobs it clears in this many seconds",
    )
    warmup_outstanding_per_vm: int = Field(
        _POLICY.warmup_outstanding_per_vm,
        ge=1,
        description="jobs a VM may hold before its host's limit is known",
    )
    hold_s: float = Field(
        _POLICY.hold_s,
        ge=0,
        description="io-aware's strictness: seconds a job that fits under no host's limit "
        "waits before it goes over one (inf: never); longer trades p99 for time over limit",
    )
    retry_interval_s: float = Field(0.25, gt=0, description="how often waiting jobs are retried")
    vm_state_interval_s: float = Field(
        0.25, gt=0, description="at most one vm-state update per VM this often"
    )
    dedupe_horizon_s: float = Field(
        3600.0, gt=0, description="dispatched job ids are remembered this long"
    )
    recent_decisions: int = Field(500, ge=0, description="decisions kept for the /decisions query")
    # A crashed worker's partitions move to the others after this long (Faust's default is 60 s).
    session_timeout_s: float = Field(10.0, gt=0, description="consumer group session timeout")

    def policy_config(self) -> PolicyConfig:
        """The policy's tunables as these settings give them."""
        return PolicyConfig(
            stale_after_s=self.stale_after_s,
            lag_limit_s=self.lag_limit_s,
            horizon_s=self.horizon_s,
            warmup_outstanding_per_vm=self.warmup_outstanding_per_vm,
            hold_s=self.hold_s,
        )

    def window_config(self) -> WindowConfig:
        """How the vm_stats rows keep their windows, as these settings give it."""
        return WindowConfig(
            rate_window_s=self.rate_window_s,
            io_per_job_window_s=self.io_per_job_window_s,
            bucket_s=self.bucket_s,
            io_per_job_min_jobs=self.io_per_job_min_jobs,
            inflight_timeout_s=self.inflight_timeout_s,
        )


def load_pipeline_settings(**overrides: Any) -> PipelineSettings:
    """Pipeline settings from the environment, with non-None `overrides` (CLI flags) winning."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return PipelineSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="VMLB_")) from None
