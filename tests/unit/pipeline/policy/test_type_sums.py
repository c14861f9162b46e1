"""The fleet's per-type sums: exact under any order of adding and removing hosts, and equal to
the formulas they stand for."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.policy.type_sums import NO_SUMS, TypeSums, noise_term

positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
host_terms = st.builds(
    TypeSums.of_host,
    busy=positive,
    load=positive,
    within=st.floats(min_value=0.0, max_value=1e3),
    dof=st.integers(min_value=0, max_value=5),
    limit_ops_per_s=st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e6)),
)


def total(terms: list[TypeSums]) -> TypeSums:
    result = NO_SUMS
    for term in terms:
        result = result.plus(term)
    return result


@settings(max_examples=200, deadline=None)
@given(st.lists(host_terms, min_size=1, max_size=20), st.randoms(use_true_random=False))
def test_sums_are_exact_whatever_the_order_and_undo_exactly(
    terms: list[TypeSums], rng: random.Random
) -> None:
    shuffled = terms.copy()
    rng.shuffle(shuffled)
    assert total(shuffled) == total(terms)
    # A host replaced by another and back: the sums it started from, bit for bit.
    other = terms[-1]
    assert total(terms).minus(terms[0]).plus(other).minus(other).plus(terms[0]) == total(terms)
    assert total(terms).minus(total(terms)) == NO_SUMS


def test_the_pooled_time_spread_and_fit_are_the_formulas_on_hand_numbers() -> None:
    # h1: busy 0.4, load 4 (own 0.1 s), limit 2000; h2: busy 0.8, load 4 (own 0.2 s), limit
    # 1000. Pooled 1.2 / 8 = 0.15; deviations (1/3)² each; 20 jobs each in a 5 s window, noise
    # 1/20 per host with cv² 1 (no scatter): spread (2/9 - 2/20) / 2 = 11/180.
    h1 = TypeSums.of_host(0.4, 4.0, 0.0, 0, 2000.0)
    h2 = TypeSums.of_host(0.8, 4.0, 0.0, 0, 1000.0)
    sums = h1.plus(h2)
    assert sums.pooled_service_s == pytest.approx(0.15)
    noise = noise_term(4.0, 5.0) + noise_term(4.0, 5.0)
    spread, cv2 = sums.spread(noise, 5.0)
    assert cv2 == 1.0
    assert spread == pytest.approx(11 / 180)
    # log service against log limit: two points, slope (log 0.2 - log 0.1) / (log 1000 -
    # log 2000) = -1, centred on the mean log limit.
    slope, centre = sums.limit_fit()
    assert slope == pytest.approx(-1.0)
    assert centre == pytest.approx((math.log(1000.0) + math.log(2000.0)) / 2)


def test_alike_limits_or_none_give_no_slope() -> None:
    alike = TypeSums.of_host(0.4, 4.0, 0.0, 0, 1500.0).plus(
        TypeSums.of_host(0.8, 4.0, 0.0, 0, 1500.0)
    )
    assert alike.limit_fit() == (0.0, pytest.approx(math.log(1500.0)))
    unknown = TypeSums.of_host(0.4, 4.0, 0.0, 0, None).plus(TypeSums.of_host(0.8, 2.0, 0.0, 0, 0.0))
    assert unknown.limit_fit() == (0.0, 0.0)


def test_a_host_with_few_jobs_counts_as_one_jobs_noise() -> None:
    assert noise_term(0.1, 5.0) == noise_term(0.2, 5.0) == noise_term(1.0, 1.0)
    assert noise_term(4.0, 5.0) < noise_term(1.0, 5.0)


def test_a_service_time_that_underflows_stays_out_of_the_fit() -> None:
    # busy / load = 1e-200 / 1e200 is 0.0 in floats: no log to take, no point in the fit.
    tiny = TypeSums.of_host(1e-200, 1e200, 0.0, 0, 1000.0)
    assert tiny.fit_w == 0
    assert tiny.limit_fit() == (0.0, 0.0)
