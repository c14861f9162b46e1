"""Credentials files are written private and read back as the same settings."""

from __future__ import annotations

import stat

from pipeline.ops.security.credentials import new_password, write_credentials_file
from pipeline.settings import KafkaSettings, load_kafka_settings


def test_a_written_file_is_0600_and_reads_back_as_the_same_principal(tmp_path):
    settings = KafkaSettings(
        broker="k:9093",
        topic_prefix="p.",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="guest-vm1",
        sasl_password=new_password(),
    )
    path = tmp_path / "new" / "guest-vm1.env"
    write_credentials_file(path, settings, with_prefix=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_kafka_settings(credentials_file=path) == settings
    write_credentials_file(path, settings, with_prefix=False)  # rewritten in place
    assert "VMLB_TOPIC_PREFIX" not in path.read_text()


def test_passwords_are_long_and_fresh():
    first, second = new_password().get_secret_value(), new_password().get_secret_value()
    assert first != second and len(first) >= 32
