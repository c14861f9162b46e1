"""Policies by name: what `VMLB_POLICY`, `vmlb worker --policy` and `vmlb bench` accept.

Unknown names fail at start, all of them in one error that lists the valid names (as Nova
reports every unknown filter at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pipeline.errors import ConfigError
from pipeline.policy.base import Policy
from pipeline.policy.baselines import (
    GuestUtilPolicy,
    LeastOutstandingPolicy,
    RandomPolicy,
    RoundRobinPolicy,
)
from pipeline.policy.io_aware import IoAwarePolicy
from pipeline.policy.paper import PaperPolicy
from pipeline.policy.snapshot import PolicyConfig

_FACTORIES: dict[str, Callable[[], Policy]] = {
    "io-aware": IoAwarePolicy,
    "paper": PaperPolicy,
    "round-robin": RoundRobinPolicy,
    "random": RandomPolicy,
    "least-outstanding": LeastOutstandingPolicy,
    "guest-util": GuestUtilPolicy,
}

POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)
DEFAULT_POLICY = "io-aware"


def _unknown(names: list[str]) -> ConfigError:
    listed = ", ".join(repr(name) for name in names)
    noun = "policy" if len(names) == 1 else "policies"
    return ConfigError(f"unknown {noun} {listed}; valid names: {', '.join(POLICY_NAMES)}")


def build_policy(name: str, config: PolicyConfig | None = None) -> Policy:
    """A fresh instance of the named policy.

    `config` is accepted so callers configure policies in one place; the tunables themselves
    travel with each snapshot (`FleetSnapshot.config`), which is what `decide()` reads.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise _unknown([name])
    return factory()


def build_policies(names: Iterable[str], config: PolicyConfig | None = None) -> list[Policy]:
    """One instance per name, in order; every unknown name is reported in one error."""
    wanted = list(names)
    unknown = [name for name in wanted if name not in _FACTORIES]
    if unknown:
        raise _unknown(unknown)
    return [build_policy(name, config) for name in wanted]
