"""Policies by name; unknown names are all reported, with the valid ones."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.policy.registry import DEFAULT_POLICY, POLICY_NAMES, build_policies, build_policy


def test_every_name_builds_a_policy_of_that_name() -> None:
    assert POLICY_NAMES == (
        "io-aware",
        "paper",
        "round-robin",
        "random",
        "least-outstanding",
        "guest-util",
    )
    assert DEFAULT_POLICY == "io-aware"
    assert [policy.name for policy in build_policies(POLICY_NAMES)] == list(POLICY_NAMES)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as caught:
        build_policy("fastest")
    message = str(caught.value)
    assert "'fastest'" in message
    for name in POLICY_NAMES:
        assert name in message


def test_all_unknown_names_in_one_error() -> None:
    with pytest.raises(ConfigError, match=r"'fast'.*'slow'"):
        build_policies(["io-aware", "fast", "slow"])


def test_instances_are_independent() -> None:
    assert build_policy("round-robin") is not build_policy("round-robin")
