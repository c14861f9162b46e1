"""What every vmlb command shares: Kafka settings from flags/env, and error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from pipeline.errors import VmlbError
from pipeline.settings import KafkaSettings, load_kafka_settings

console = Console()
# Errors are never wrapped: a message must stay one greppable line whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


def kafka_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --broker/--topic-prefix and the security flags; pass a `settings: KafkaSettings`.

    Precedence: a flag, then the --credentials file ($VMLB_CREDENTIALS), then `VMLB_*`
    variables, then defaults. Prefer the file or the variable to --sasl-password: a command
    line is visible to every user of the machine.
    """

    @click.option(
        "--broker",
        "broker",
        envvar=None,
        help="bootstrap servers (default: $VMLB_BROKER or 127.0.0.1:9092)",
    )
    @click.option(
        "--topic-prefix",
        default=None,
        help="topic name prefix (default: $VMLB_TOPIC_PREFIX or 'vmlb.')",
    )
    @click.option(
        "--credentials",
        "credentials_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="a credentials file from `vmlb acl provision` or `vmlb broker start --secure` "
        "(default: $VMLB_CREDENTIALS)",
    )
    @click.option(
        "--security-protocol", default=None, help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    @click.option("--sasl-mechanism", default=None, help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    @click.option("--sasl-username", default=None)
    @click.option(
        "--sasl-password",
        default=None,
        help="prefer --credentials or $VMLB_SASL_PASSWORD: command lines are visible to all",
    )
    @functools.wraps(command)
    def wrapper(
        broker: str | None,
        topic_prefix: str | None,
        credentials_file: Path | None,
        security_protocol: str | None,
        sasl_mechanism: str | None,
        sasl_username: str | None,
        sasl_password: str | None,
        **kwargs: Any,
    ) -> Any:
        settings = load_kafka_settings(
            credentials_file=credentials_file,
            broker=broker,
            topic_prefix=topic_prefix,
            security_protocol=security_protocol,
            sasl_mechanism=sasl_mechanism,
            sasl_username=sasl_username,
            sasl_password=sasl_password,
        )
        return command(settings=settings, **kwargs)

    return wrapper


def run_cli(group: click.Group) -> None:
    """Run the group; print a VmlbError as one clear line (exit 2), not a traceback."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except VmlbError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["KafkaSettings", "console", "err_console", "kafka_options", "run_cli"]
