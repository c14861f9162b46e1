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
    VMLB_CREDENTIALS              a credentials file (below) whose values win over the variables above
    VMLB_REPLICATION_FACTOR       replicas of every topic vmlb creates: topics.yaml's, the worker's
                                  changelogs, Faust's own, the per-VM queues (default: topics.yaml's
                                  `replication_factor`, 1, for a single broker)
    VMLB_MIN_INSYNC_REPLICAS      `min.insync.replicas` of every topic vmlb creates (default: unset,
                                  the broker's, 1); with acks=all, a write needs this many replicas

A credentials file is a dotenv file of the variables above (`vmlb broker start --secure` and
`vmlb acl provision` write them, mode 0600). Passwords are `SecretStr`: they reach the client
libraries through the `to_*` methods and child processes through `child_environment()`, and are
masked in every repr, log line and error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
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

#: The variables a credentials file may set, and the KafkaSettings field each one is.
CREDENTIALS_FILE_KEYS = {
    "VMLB_BROKER": "broker",
    "VMLB_TOPIC_PREFIX": "topic_prefix",
    "VMLB_SECURITY_PROTOCOL": "security_protocol",
    "VMLB_SASL_MECHANISM": "sasl_mechanism",
    "VMLB_SASL_USERNAME": "sasl_username",
    "VMLB_SASL_PASSWORD": "sasl_password",
    "VMLB_SSL_CAFILE": "ssl_cafile",
}
CREDENTIALS_ENV = "VMLB_CREDENTIALS"


#: Settings of how topics are made: passed on to child processes (not written to credentials).
REPLICATION_KEYS = {
    "VMLB_REPLICATION_FACTOR": "replication_factor",
    "VMLB_MIN_INSYNC_REPLICAS": "min_insync_replicas",
}


#: The longest pause between two reconnects of a kafka-python client (see to_kafka_python).
RECONNECT_BACKOFF_MAX_MS = 1000


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
    # How the topics vmlb creates are replicated (pipeline.topics.admin.as_deployed applies both to
    # every topic it creates). Here, not in topics.yaml alone, because Dom0s and guests create
    # queue topics and the worker its changelogs, all of them from these settings.
    replication_factor: int | None = Field(
        None, ge=1, le=32, description="replicas of every topic vmlb creates (unset: topics.yaml's)"
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, le=32, description="min.insync.replicas of every topic (unset: the broker's)"
    )

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

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        # Caught here, a missing piece is one clear line; left to the clients, it is a
        # reconnect loop that never says why.
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"VMLB_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        # More in-sync replicas required than exist: every acks=all write would be refused.
        if (
            self.replication_factor is not None
            and self.min_insync_replicas is not None
            and self.min_insync_replicas > self.replication_factor
        ):
            raise ValueError(
                f"VMLB_MIN_INSYNC_REPLICAS ({self.min_insync_replicas}) is more than "
                f"VMLB_REPLICATION_FACTOR ({self.replication_factor}): no write could succeed"
            )
        return self

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
            options["sasl_plain_password"] = _revealed(self.sasl_password)
        if self.ssl_cafile:
            options["ssl_cafile"] = self.ssl_cafile
        return options

    def to_kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient.

        Reconnects back off to at most 1 s: kafka-python's default (30 s, exponential from
        50 ms) leaves a client that kept retrying through a broker outage up to 30 s more
        without the broker once it is back (a guest ran jobs again 17-44 s after the return;
        `tests/integration/producers/test_guest_after_outage.py`).
        """
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
            **self._security(),
        }

    def to_kafka_python_producer(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments for a kafka-python KafkaProducer, with vmlb's producer defaults.

        Idempotence is off, in this one place, for every kafka-python producer (Dom0s, guests,
        submitters): kafka-python 3.0.12's idempotent producer sends nothing more after one of
        its batches expired (a broker outage longer than `delivery_timeout_ms`): it does not
        reset its producer id and sequence numbers as the Java client does since KIP-91
        (apache/kafka#5270, `resetIdempotentProducerId`). Reproduced with 4 of 4 producers; with
        idempotence off 4 of 4 recover. Every vmlb record is idempotent at its reader (status
        records are compacted by job id, guests recognise jobs by id and attempt, samples by
        time), so a retried send's duplicate changes nothing. The callers also replace a
        producer whose delivery failed (`tests/integration/producers/test_guest_after_outage.py`
        checks that a guest delivers again after an outage longer than its delivery timeout).
        The guest, which replaces its producer after every failed delivery, turns idempotence
        on (`producers.guest.worker`): its job-end records are what must not appear twice.

        One request in flight per broker (kafka-python then keeps a partition's order through
        retries): without idempotence, a producer with several in flight retries a failed batch
        after later ones, so records land out of order. Seen when a broker of three was killed
        (`vmlb bench chaos --scenario replicated-broker-kill`): a guest's `running` record was
        appended again after its `succeeded`, and the compacted job-status topic said the job
        was still running (counted lost). With one in flight a retried record can still be
        duplicated, but only next to itself, which its readers ignore.
        """
        return {
            "acks": "all",
            "enable_idempotence": False,
            "max_in_flight_requests_per_connection": 1,
            **self.to_kafka_python(),
            **options,
        }

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
        password = _revealed(self.sasl_password) if self.sasl_password else None
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=password,
            mechanism=self.sasl_mechanism or "PLAIN",
            ssl_context=ssl_context,
        )

    def to_faust_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)

    @property
    def secured(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    def to_env(self) -> dict[str, str]:
        """These settings as `VMLB_*` variables (password in clear: for a child's environment)."""
        env = {}
        for key, field in CREDENTIALS_FILE_KEYS.items():
            value = getattr(self, field)
            if isinstance(value, SecretStr):
                value = _revealed(value)
            if value is not None:
                env[key] = str(value)
        return env

    def child_environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with these Kafka settings instead of any
        inherited ones, so a child process connects as this principal and no other.

        Inherited credentials are dropped, not overridden key by key: a parent's
        VMLB_SASL_USERNAME must not survive into a child meant to run with another principal.
        """
        env = dict(os.environ if base is None else base)
        for key in (*CREDENTIALS_FILE_KEYS, *REPLICATION_KEYS, CREDENTIALS_ENV):
            env.pop(key, None)
        env.update(self.to_env())
        # Replication too: a child creates topics (queues, changelogs) as this process would.
        env.update(self.replication_env())
        return env

    def replication_env(self) -> dict[str, str]:
        """VMLB_REPLICATION_FACTOR and VMLB_MIN_INSYNC_REPLICAS, those that are set."""
        return {
            key: str(getattr(self, field))
            for key, field in REPLICATION_KEYS.items()
            if getattr(self, field) is not None
        }


def _revealed(secret: SecretStr) -> str:
    """The password in clear, for a client library; from here on, logs never show it."""
    value = secret.get_secret_value()
    _redact_in_logs(value)
    return value


_REDACTED: set[str] = set()


def _redact_in_logs(secret: str) -> None:
    """Mask `secret` in every log record of this process, whoever logs it.

    Workaround: kafka-python 3.0.12's KafkaAdminClient logs its whole configuration at DEBUG,
    `sasl_plain_password` included ("Starting KafkaAdminClient with configuration: ..."), and
    `vmlb -vv` or a worker at `-l debug` would print it. A filter on that one logger would miss
    the next library that does the same, so records are redacted where they are made.
    """
    if not secret or secret in _REDACTED:
        return
    if not _REDACTED:
        previous = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is the logging module's to report
                return record
            secrets = tuple(_REDACTED)  # a snapshot: another thread may add one meanwhile
            if any(value in message for value in secrets):
                for value in secrets:
                    message = message.replace(value, "**********")
                record.msg, record.args = message, ()
            return record

        logging.setLogRecordFactory(redacting_factory)
    _REDACTED.add(secret)


def read_credentials_file(path: Path | str) -> dict[str, Any]:
    """The settings a credentials file gives, as KafkaSettings field values.

    A file readable by others than its owner is refused: it holds a password.
    """
    from dotenv import dotenv_values

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"credentials file {path}: not found") from None
    if mode & 0o077:
        raise ConfigError(
            f"credentials file {path}: readable by group or others (mode {mode & 0o777:o}); "
            f"`chmod 600 {path}`"
        )
    values = dotenv_values(path)
    unknown = sorted(set(values) - set(CREDENTIALS_FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"credentials file {path}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(CREDENTIALS_FILE_KEYS)}"
        )
    return {CREDENTIALS_FILE_KEYS[key]: value for key, value in values.items() if value}


def load_kafka_settings(
    credentials_file: Path | str | None = None, **overrides: Any
) -> KafkaSettings:
    """Settings from the environment, then a credentials file's values (`credentials_file` or
    $VMLB_CREDENTIALS), with non-None `overrides` (CLI flags) winning over both."""
    credentials_file = credentials_file or os.environ.get(CREDENTIALS_ENV) or None
    given = read_credentials_file(credentials_file) if credentials_file else {}
    given.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return KafkaSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="VMLB_")) from None


def _describe(exc: ValidationError, prefix: str) -> str:
    problems = []
    for error in exc.errors():
        if not error["loc"]:  # a check across fields: its message names them
            problems.append(error["msg"].removeprefix("Value error, "))
            continue
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
    stats_batch_max: int = Field(
        1000, ge=1, description="vm_stats handles up to this many events as one batch"
    )
    stats_batch_s: float = Field(
        0.05, gt=0, description="...or what arrived within this many seconds, if fewer"
    )
    stats_view_wait_s: float = Field(
        5.0,
        gt=0,
        description="before refusing a sample for an unknown VM, wait this long at most for "
        "the fleet view to read its registration (after a wait in vain, none for 9x as long)",
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
    job_batch_max: int = Field(
        500, ge=1, le=100_000, description="jobs decided as one batch (one snapshot, one flush)"
    )
    job_batch_wait_ms: int = Field(
        20, ge=0, le=10_000, description="how long the dispatcher waits for a batch to fill"
    )
    produce_linger_ms: int = Field(
        2, ge=0, le=1000, description="the dispatcher's producer batches records this long"
    )
    gc_young_threshold: int = Field(
        10_000,
        ge=1,
        description="the worker's collector runs its youngest generation every this many "
        "allocations (CPython's default: 700); see pipeline/worker/gc_policy.py",
    )
    max_waiting_per_partition: int = Field(
        50_000,
        ge=1,
        description="waiting jobs per jobs partition; past this a new job is refused (queue full)",
    )
    retry_backoff_s: float = Field(
        1.0, gt=0, description="a failed job's first retry comes within this (doubling, jittered)"
    )
    retry_backoff_max_s: float = Field(
        60.0, gt=0, description="the longest backoff between two attempts"
    )
    lease_s: float = Field(
        60.0,
        gt=0,
        description="a VM whose guest took no job for this long has its unstarted jobs moved",
    )
    waiting_rewrite_s: float = Field(
        5.0, gt=0, description="a waiting job's status is rewritten at most this often"
    )
    load_interval_s: float = Field(
        0.25, gt=0, description="how often a dispatcher publishes its in-flight counts"
    )
    max_clock_skew_s: float = Field(
        300.0,
        gt=0,
        description="events stamped further in the future than this are refused",
    )
    instance_id: str | None = Field(
        None,
        description="static consumer-group member id (default: derived from the data dir)",
    )
    vm_state_interval_s: float = Field(
        0.25, gt=0, description="at most one vm-state update per VM this often"
    )
    dedupe_horizon_s: float = Field(
        600.0,
        gt=0,
        description="ended jobs are remembered (not run again, status kept) this long",
    )
    recent_decisions: int = Field(500, ge=0, description="decisions kept for the /decisions query")
    # A crashed worker's partitions move to the others after this long (Faust's default is 60 s).
    session_timeout_s: float = Field(10.0, gt=0, description="consumer group session timeout")

    @property
    def heartbeat_interval_s(self) -> float:
        """How often a worker's group members heartbeat: also how soon a member learns that its
        group is rebalancing. A restarted worker that led its group (a static member) makes the
        coordinator rebalance, and its join waits until every other member has heard and joined
        again; at 3 s that was up to 3 s for each of the worker's two groups (`vmlb bench chaos
        --scenario two-workers-kill`: joins of 3.9 s and 3.3 s after a restart)."""
        return min(1.0, self.session_timeout_s / 3)

    def policy_config(self) -> PolicyConfig:
        """The policy's tunables as these settings give them."""
        return PolicyConfig(
            stale_after_s=self.stale_after_s,
            lag_limit_s=self.lag_limit_s,
            horizon_s=self.horizon_s,
            warmup_outstanding_per_vm=self.warmup_outstanding_per_vm,
            hold_s=self.hold_s,
            meter_window_s=self.rate_window_s,
        )

    def window_config(self) -> WindowConfig:
        """How the vm_stats rows keep their windows, as these settings give it."""
        return WindowConfig(
            rate_window_s=self.rate_window_s,
            io_per_job_window_s=self.io_per_job_window_s,
            bucket_s=self.bucket_s,
            io_per_job_min_jobs=self.io_per_job_min_jobs,
        )


def load_pipeline_settings(**overrides: Any) -> PipelineSettings:
    """Pipeline settings from the environment, with non-None `overrides` (CLI flags) winning."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return PipelineSettings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix="VMLB_")) from None
