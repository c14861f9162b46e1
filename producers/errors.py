"""Errors of the producers, each under `pipeline.errors.VmlbError` so the CLI prints one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, VmlbError

if TYPE_CHECKING:
    from pipeline.events import JobStatus


class ProducerError(VmlbError):
    """Root of the producers' errors."""


class SourceError(ProducerError):
    """A telemetry source could not be opened or read (names the source)."""


class SourceSpecError(ConfigError, ProducerError):
    """A `--source` value is not `libvirt:URI` or `emulated:ADDR`."""


class HostConfigError(ConfigError, ProducerError):
    """An emulated host's flags or config file are invalid (names the key)."""


class HandlerError(ConfigError, ProducerError):
    """A guest handler could not be found or loaded (names the handler)."""


class SubmitError(ProducerError):
    """A job could not be submitted: invalid input (names the field/line) or the broker refused."""


class ChannelError(ProducerError):
    """The emulated host's I/O channel refused a request or could not be reached."""


class JobFailed(ProducerError):
    """A job ended otherwise than succeeded: failed, expired, cancelled or dead-lettered."""

    def __init__(self, status: JobStatus) -> None:
        self.status = status
        why = status.reason or status.error or ""
        super().__init__(f"job {status.job_id} {status.state.value}" + (f": {why}" if why else ""))
