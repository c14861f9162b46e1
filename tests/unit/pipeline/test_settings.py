import pytest

from pipeline.errors import ConfigError
from pipeline.policy.snapshot import PolicyConfig
from pipeline.settings import KafkaSettings, PipelineSettings, load_kafka_settings
from pipeline.stats.windows import WindowConfig
from pipeline.topics import topics_of


def test_defaults_point_at_the_local_broker(monkeypatch):
    monkeypatch.delenv("VMLB_BROKER", raising=False)
    settings = load_kafka_settings()
    assert settings.bootstrap_servers == ["127.0.0.1:9092"]
    assert topics_of(settings).name("jobs") == "vmlb.jobs"


def test_topic_names_are_resolved_only_for_declared_topics():
    with pytest.raises(KeyError, match="not declared"):
        topics_of(KafkaSettings()).name("jbos")


def test_the_policy_and_window_configs_are_built_from_the_settings_and_share_their_defaults():
    settings = PipelineSettings()
    assert settings.policy_config() == PolicyConfig()
    assert settings.window_config() == WindowConfig()
    tuned = PipelineSettings(stale_after_s=7.0, rate_window_s=2.0, io_per_job_min_jobs=3)
    assert tuned.policy_config().stale_after_s == 7.0
    assert tuned.window_config() == WindowConfig(rate_window_s=2.0, io_per_job_min_jobs=3)


def test_environment_and_flags(monkeypatch):
    monkeypatch.setenv("VMLB_BROKER", "a:1, b:2")
    assert load_kafka_settings().bootstrap_servers == ["a:1", "b:2"]
    assert load_kafka_settings(broker="c:3").broker == "c:3"


def test_bad_bootstrap_names_the_variable():
    with pytest.raises(ConfigError, match=r"VMLB_BROKER.*not host:port"):
        load_kafka_settings(broker="nohost")


def test_security_settings_reach_every_client():
    settings = KafkaSettings(
        broker="k:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password="s3cr3t-pw",
    )
    kp = settings.to_kafka_python()
    assert kp["security_protocol"] == "SASL_PLAINTEXT"
    assert kp["sasl_plain_password"] == "s3cr3t-pw"
    assert settings.to_aiokafka()["sasl_mechanism"] == "SCRAM-SHA-256"
    assert "s3cr3t-pw" not in repr(settings)  # the password is a SecretStr
    credentials = settings.to_faust_credentials()
    assert (credentials.username, credentials.password) == ("u", "s3cr3t-pw")
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert "s3cr3t-pw" not in repr(credentials)


def test_sasl_without_a_username_or_password_is_refused_naming_what_is_missing():
    with pytest.raises(
        ConfigError, match="SASL_PLAINTEXT needs VMLB_SASL_USERNAME, VMLB_SASL_PASSWORD"
    ):
        load_kafka_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512")


def _credentials_file(tmp_path, text, mode=0o600):
    path = tmp_path / "guest-vm1.env"
    path.write_text(text)
    path.chmod(mode)
    return path


GUEST_FILE = (
    "# a comment\n"
    "VMLB_BROKER=k:9093\n"
    "VMLB_SECURITY_PROTOCOL=SASL_PLAINTEXT\n"
    "VMLB_SASL_MECHANISM=SCRAM-SHA-512\n"
    "VMLB_SASL_USERNAME=guest-vm1\n"
    "VMLB_SASL_PASSWORD=file-pw\n"
)


def test_a_credentials_file_wins_over_the_environment_and_flags_win_over_it(tmp_path, monkeypatch):
    path = _credentials_file(tmp_path, GUEST_FILE)
    monkeypatch.setenv("VMLB_SASL_USERNAME", "admin")  # inherited: must not win
    monkeypatch.setenv("VMLB_SASL_PASSWORD", "admin-pw")
    settings = load_kafka_settings(credentials_file=path)
    assert settings.sasl_username == "guest-vm1"
    assert settings.sasl_password.get_secret_value() == "file-pw"
    assert load_kafka_settings(credentials_file=path, broker="other:1").broker == "other:1"
    monkeypatch.setenv("VMLB_CREDENTIALS", str(path))
    assert load_kafka_settings().sasl_username == "guest-vm1"


def test_a_credentials_file_others_can_read_is_refused(tmp_path):
    path = _credentials_file(tmp_path, GUEST_FILE, mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_kafka_settings(credentials_file=path)


def test_a_credentials_file_with_an_unknown_key_is_refused_naming_it(tmp_path):
    path = _credentials_file(tmp_path, GUEST_FILE + "VMLB_SASL_PASSWRD=typo\n")
    with pytest.raises(ConfigError, match="VMLB_SASL_PASSWRD"):
        load_kafka_settings(credentials_file=path)


def test_a_child_gets_these_credentials_and_none_inherited():
    guest = KafkaSettings(
        broker="k:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="guest-vm1",
        sasl_password="guest-pw",
    )
    inherited = {
        "PATH": "/bin",
        "VMLB_CREDENTIALS": "/admin.env",
        "VMLB_SSL_CAFILE": "/ca.pem",
        "VMLB_SASL_USERNAME": "admin",
    }
    env = guest.child_environment(inherited)
    assert env["PATH"] == "/bin"
    assert env["VMLB_SASL_USERNAME"] == "guest-vm1"
    assert env["VMLB_SASL_PASSWORD"] == "guest-pw"
    assert "VMLB_CREDENTIALS" not in env and "VMLB_SSL_CAFILE" not in env
    plain = KafkaSettings(broker="k:9092", security_protocol="PLAINTEXT").child_environment(
        inherited
    )
    assert "VMLB_SASL_USERNAME" not in plain and plain["VMLB_SECURITY_PROTOCOL"] == "PLAINTEXT"


def test_a_password_handed_to_a_client_is_masked_in_every_log_record(caplog):
    import logging

    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="never-logged-pw",
    )
    options = settings.to_kafka_python()
    # What kafka-python 3.0.12's KafkaAdminClient does at DEBUG.
    with caplog.at_level(logging.DEBUG, logger="kafka.admin.client"):
        logging.getLogger("kafka.admin.client").debug(
            "Starting KafkaAdminClient with configuration: %s", options
        )
    assert "sasl_plain_password" in caplog.text
    assert "never-logged-pw" not in caplog.text
    assert "**********" in caplog.text


def test_replication_settings_come_from_the_environment_and_reach_children(monkeypatch):
    monkeypatch.setenv("VMLB_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("VMLB_MIN_INSYNC_REPLICAS", "2")
    settings = load_kafka_settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    env = KafkaSettings(replication_factor=1, min_insync_replicas=None).child_environment(
        {"VMLB_REPLICATION_FACTOR": "3", "VMLB_MIN_INSYNC_REPLICAS": "2"}
    )
    # The child creates topics as this process would, not as the inherited variables say.
    assert env["VMLB_REPLICATION_FACTOR"] == "1" and "VMLB_MIN_INSYNC_REPLICAS" not in env


def test_more_in_sync_replicas_than_replicas_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("VMLB_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("VMLB_MIN_INSYNC_REPLICAS", "3")
    with pytest.raises(ConfigError, match="VMLB_MIN_INSYNC_REPLICAS \\(3\\) is more than"):
        load_kafka_settings()
    monkeypatch.setenv("VMLB_REPLICATION_FACTOR", "0")
    with pytest.raises(ConfigError, match="VMLB_REPLICATION_FACTOR"):
        load_kafka_settings()


def test_kafka_python_producers_write_to_every_replica_and_keep_order_through_retries():
    options = KafkaSettings().to_kafka_python_producer(linger_ms=5)
    assert options["acks"] == "all"
    # Without idempotence only one request in flight keeps retried records in order.
    assert options["enable_idempotence"] is False
    assert options["max_in_flight_requests_per_connection"] == 1
    assert options["linger_ms"] == 5
