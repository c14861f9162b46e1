"""`--source` values: which source they open, and refusals that name the value."""

from __future__ import annotations

import re

import pytest

from producers.errors import SourceError, SourceSpecError
from producers.telemetry.emulated_source import EmulatedSource
from producers.telemetry.sources import open_source


@pytest.mark.parametrize("spec", ["qemu:///system", "libvirt", "libvirt:", "vmware:esx1"])
def test_bad_source_spec_is_refused_naming_it(spec: str) -> None:
    with pytest.raises(SourceSpecError, match=re.escape(f"--source {spec!r}")):
        open_source(spec)


def test_emulated_source_accepts_tcp_and_unix_addresses() -> None:
    assert open_source("emulated:127.0.0.1:7101").description == "emulated:127.0.0.1:7101"
    assert open_source("emulated:unix:/run/h1.sock").description == "emulated:unix:/run/h1.sock"


def test_emulated_source_that_is_not_listening_raises_a_source_error() -> None:
    source = EmulatedSource("127.0.0.1:1")
    with pytest.raises(SourceError, match=r"emulated:127\.0\.0\.1:1"):
        source.read()
