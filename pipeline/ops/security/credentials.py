"""Credentials files: one principal's connection settings, password included, mode 0600.

A file is a dotenv file of `VMLB_*` variables (`pipeline.settings.CREDENTIALS_FILE_KEYS`), read
back by every command's `--credentials FILE` (or `VMLB_CREDENTIALS`), or loaded into a shell with
`set -a; . FILE; set +a`. Passwords are generated here and written only here: nothing prints them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.settings import KafkaSettings

#: SCRAM-SHA-512 is the stronger of the two SCRAM mechanisms Kafka and both Python clients speak.
DEFAULT_MECHANISM = "SCRAM-SHA-512"


def new_password() -> SecretStr:
    # 32 URL-safe characters (192 bits): safe inside JAAS quotes and Java properties as is.
    return SecretStr(secrets.token_urlsafe(24))


def credentials_path(directory: Path, username: str) -> Path:
    return directory / f"{username}.env"


def principal_credentials(directory: Path, role: str, principal_id: str) -> Path:
    """The credentials file of one principal in `directory`, which must exist."""
    from pipeline.ops.security.grants import Principal, Role

    path = credentials_path(directory, Principal(Role(role), principal_id).username)
    if not path.exists():
        raise ConfigError(
            f"{path}: no credentials for {role} {principal_id}; "
            f"run `vmlb acl provision --{role} {principal_id} --credentials-dir {directory}`"
        )
    return path


def write_credentials_file(path: Path, settings: KafkaSettings, *, with_prefix: bool) -> None:
    """Write `settings`' connection (and, `with_prefix`, its topic prefix) to `path`, 0600.

    Written to a temporary file created 0600 and renamed, so the password is never readable by
    others, not even for a moment, and a reader never sees half a file.
    """
    env = settings.to_env()
    if not with_prefix:
        env.pop("VMLB_TOPIC_PREFIX", None)
    lines = [f"# vmlb credentials of {settings.sasl_username}: keep private (mode 0600)"]
    lines += [f"{key}={value}" for key, value in env.items()]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines) + "\n")
    partial.replace(path)
