import pytest

from pipeline.errors import ConfigError
from pipeline.settings import KafkaSettings, load_kafka_settings


def test_defaults_point_at_the_local_broker(monkeypatch):
    monkeypatch.delenv("VMLB_BROKER", raising=False)
    settings = load_kafka_settings()
    assert settings.bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.topic("jobs") == "vmlb.jobs"


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
