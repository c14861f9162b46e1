"""Principals and their ACLs applied to a cluster, idempotently, through kafka-python's admin API.

kafka-python 3.0.12 speaks both requests this needs (aiokafka 0.14's admin speaks neither):
AlterUserScramCredentials for the SCRAM users (the password is salted and hashed client-side;
only the salted hash travels) and CreateAcls/DescribeAcls/DeleteAcls. So no broker tool is
shelled out to. Provisioning is declarative: a principal ends with exactly the grants of its role,
extra ACLs of that principal are deleted, and a principal's existing credentials file keeps its
password (unless rotated), so running it twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.errors import BrokerError, ConfigError
from pipeline.ops.security.credentials import (
    credentials_path,
    new_password,
    write_credentials_file,
)
from pipeline.ops.security.grants import Grant, Principal, grants_for
from pipeline.settings import KafkaSettings, read_credentials_file
from pipeline.topics import Topics

ACL_PROPAGATION_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Provisioned:
    principal: Principal
    credentials_file: Path
    new_password: bool
    grants: list[Grant]
    revoked: int  # ACLs of this principal deleted because its role no longer has them


def provision(
    admin_settings: KafkaSettings,
    topics: Topics,
    principals: Iterable[Principal],
    credentials_dir: Path,
    *,
    mechanism: str | None = None,
    rotate: bool = False,
) -> list[Provisioned]:
    """Create or update each principal's SCRAM user and ACLs; write its credentials file."""
    mechanism = mechanism or admin_settings.sasl_mechanism
    if not mechanism or not mechanism.startswith("SCRAM-"):
        raise ConfigError(
            "provisioning creates SCRAM users: give --sasl-mechanism SCRAM-SHA-512 or "
            "SCRAM-SHA-256 (the admin's own mechanism is used by default)"
        )
    results = []
    with _admin(admin_settings) as admin:
        for principal in sorted(set(principals)):
            path = credentials_path(credentials_dir, principal.username)
            password = None if rotate else _existing_password(path, principal)
            settings = admin_settings.model_copy(
                update={
                    "topic_prefix": topics.prefix,
                    "sasl_mechanism": mechanism,
                    "sasl_username": principal.username,
                    "sasl_password": password or new_password(),
                }
            )
            _upsert_user(admin, settings)
            grants = grants_for(principal, topics)
            revoked = _set_acls(admin, principal, grants)
            # Written last: a file on disk means the broker knows this password.
            write_credentials_file(path, settings, with_prefix=True)
            results.append(Provisioned(principal, path, password is None, grants, revoked))
    return results


def revoke(admin_settings: KafkaSettings, principals: Iterable[Principal]) -> dict[str, int]:
    """Delete each principal's SCRAM credentials and every ACL it holds; ACLs deleted per user."""
    from kafka.admin import UserScramCredentialDeletion
    from kafka.admin._users import ScramMechanism

    deleted = {}
    with _admin(admin_settings) as admin:
        for principal in principals:
            deleted[principal.username] = _delete_all_acls(admin, principal)
            described = admin.describe_user_scram_credentials([principal.username])
            infos = described.get(principal.username, {}).get("credential_infos", [])
            mechanisms = [info["mechanism"] for info in infos]
            if mechanisms:
                errors = admin.alter_user_scram_credentials(
                    [
                        UserScramCredentialDeletion(principal.username, ScramMechanism(m))
                        for m in mechanisms
                    ]
                )
                _raise_user_errors(errors)
    return deleted


def acls_of(admin_settings: KafkaSettings, username: str | None = None) -> list[tuple[str, Grant]]:
    """Every ALLOW ACL on topics and groups (of one user, if given), as (principal, grant)."""
    with _admin(admin_settings) as admin:
        return sorted(
            (acl.principal, grant)
            for acl, grant in _described(admin, f"User:{username}" if username else None)
        )


# --- kafka-python ------------------------------------------------------------------------------


class _admin:
    """A KafkaAdminClient as a context manager, its errors as BrokerErrors naming the cause."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.client: Any = None

    def __enter__(self) -> Any:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            self.client = KafkaAdminClient(
                client_id="vmlb-acl", request_timeout_ms=30000, **self.settings.to_kafka_python()
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka at {self.settings.broker}: {exc!r}") from None
        return self.client

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        from kafka.errors import (
            ClusterAuthorizationFailedError,
            KafkaError,
            SecurityDisabledError,
        )

        self.client.close()
        if isinstance(error, SecurityDisabledError):
            raise BrokerError(
                f"Kafka at {self.settings.broker} has no authorizer: start it with "
                "`vmlb broker start --secure` (or enable an authorizer on your cluster)"
            ) from None
        if isinstance(error, ClusterAuthorizationFailedError):
            raise BrokerError(
                f"{self.settings.sasl_username or 'this client'} may not manage users and ACLs: "
                "provision with a super user's credentials (the broker's admin.env)"
            ) from None
        if isinstance(error, KafkaError):
            raise BrokerError(f"provisioning failed: {error!r}") from None


def _existing_password(path: Path, principal: Principal) -> SecretStr | None:
    if not path.exists():
        return None
    values = read_credentials_file(path)
    if values.get("sasl_username") != principal.username or not values.get("sasl_password"):
        raise ConfigError(f"{path}: not the credentials of {principal.username}")
    return SecretStr(values["sasl_password"])


def _upsert_user(admin: Any, settings: KafkaSettings) -> None:
    from kafka.admin import UserScramCredentialUpsertion

    assert settings.sasl_password is not None and settings.sasl_username is not None
    upsertion = UserScramCredentialUpsertion(
        settings.sasl_username, settings.sasl_mechanism, settings.sasl_password.get_secret_value()
    )
    _raise_user_errors(admin.alter_user_scram_credentials([upsertion]))
    # Like ACLs, a credential is in force once the broker has applied it from the metadata log.
    deadline = time.monotonic() + ACL_PROPAGATION_TIMEOUT_S
    while (
        not admin.describe_user_scram_credentials([settings.sasl_username])
        .get(settings.sasl_username, {})
        .get("credential_infos")
    ):
        if time.monotonic() > deadline:
            raise BrokerError(f"SCRAM credentials of {settings.sasl_username} not in force")
        time.sleep(0.1)


def _raise_user_errors(errors: dict[str, str | None]) -> None:
    failed = {user: message for user, message in errors.items() if message}
    if failed:
        raise BrokerError(
            "SCRAM credentials not changed: "
            + "; ".join(f"{user}: {message}" for user, message in failed.items())
        )


def _set_acls(admin: Any, principal: Principal, wanted: list[Grant]) -> int:
    """Make `principal`'s ACLs exactly `wanted`; return how many were deleted."""
    from kafka.admin import ACL, ACLPermissionType

    have = {grant: acl for acl, grant in _described(admin, principal.kafka_principal)}
    missing = [grant for grant in wanted if grant not in have]
    if missing:
        acls = [
            ACL(principal.kafka_principal, "*", *_kafka(grant, ACLPermissionType.ALLOW))
            for grant in missing
        ]
        failed = admin.create_acls(acls)["failed"]
        if failed:
            raise BrokerError(f"ACLs of {principal.username} not created: {failed}")
        _wait_for_acls(admin, principal, set(wanted))
    extra = [acl for grant, acl in have.items() if grant not in set(wanted)]
    if extra:
        from kafka.admin import ACLFilter

        filters = [
            ACLFilter(
                acl.principal, acl.host, acl.operation, acl.permission_type, acl.resource_pattern
            )
            for acl in extra
        ]
        for _, _, error in admin.delete_acls(filters):
            if error.errno:
                raise BrokerError(f"ACLs of {principal.username} not deleted: {error.__name__}")
    return len(extra)


def _wait_for_acls(admin: Any, principal: Principal, wanted: set[Grant]) -> None:
    """Until the broker describes every wanted grant.

    A broker applies ACLs from the metadata log after CreateAcls answers; a principal that
    connects in between is refused. Provisioning returns only once they are in force.
    """
    deadline = time.monotonic() + ACL_PROPAGATION_TIMEOUT_S
    while True:
        have = {grant for _, grant in _described(admin, principal.kafka_principal)}
        if wanted <= have:
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"ACLs of {principal.username} created but not in force after "
                f"{ACL_PROPAGATION_TIMEOUT_S:.0f}s: {len(wanted - have)} missing"
            )
        time.sleep(0.1)


def _delete_all_acls(admin: Any, principal: Principal) -> int:
    """Delete every ACL naming `principal`, of any kind (also ones vmlb never grants)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    everything = ACLFilter(
        principal=principal.kafka_principal,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
    deleted = 0
    for _, matched, error in admin.delete_acls([everything]):
        if error.errno:
            raise BrokerError(f"ACLs of {principal.username} not deleted: {error.__name__}")
        deleted += len(matched)
    return deleted


def _kafka(grant: Grant, permission: Any) -> tuple[Any, Any, Any]:
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourcePattern, ResourceType

    pattern = ResourcePattern(
        ResourceType[grant.resource.value],
        grant.name,
        ACLResourcePatternType[grant.pattern.value],
    )
    return ACLOperation[grant.operation.value], permission, pattern


def _described(admin: Any, kafka_principal: str | None) -> list[tuple[Any, Grant]]:
    """Every ALLOW ACL on topics and groups (of one principal), with its Grant."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    from pipeline.ops.security.grants import Operation, Pattern, Resource

    found = []
    for resource in (ResourceType.TOPIC, ResourceType.GROUP):
        acl_filter = ACLFilter(
            principal=kafka_principal,
            host=None,
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(resource, None, ACLResourcePatternType.ANY),
        )
        acls, _ = admin.describe_acls(acl_filter)
        for acl in acls:
            try:
                grant = Grant(
                    Resource(acl.resource_pattern.resource_type.name),
                    acl.resource_pattern.resource_name,
                    Pattern(acl.resource_pattern.pattern_type.name),
                    Operation(acl.operation.name),
                )
            except ValueError:  # an operation or pattern vmlb never grants: leave it alone
                continue
            if acl.permission_type == ACLPermissionType.ALLOW:
                found.append((acl, grant))
    return found
