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
