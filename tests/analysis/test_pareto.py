from __future__ import annotations

import numpy as np
import pytest

from vla_razor.analysis.pareto import LINEAR_LIMIT_C, ExponentialFit, fit_exponential, near_frontier, pareto_frontier

# Hand-built trade-off: index -> (new-task, prior-task)
NEW = np.array([0.10, 0.20, 0.30, 0.30, 0.50, 0.40, 0.20, 0.45, 0.45])
PRIOR = np.array([0.90, 0.85, 0.80, 0.70, 0.60, 0.55, 0.85, 0.58, 0.579])


def test_pareto_frontier_hand_built() -> None:
    # 3 is beaten by 2 (same new, higher prior); 5, 7, 8 by 4; 1 and 6 are exact duplicates: both kept.
    assert pareto_frontier(NEW, PRIOR).tolist() == [0, 1, 6, 2, 4]


def test_near_frontier_hand_built() -> None:
    kept = near_frontier(NEW, PRIOR, tol=0.02)
    # 7 sits exactly 0.02 below the frontier at new >= 0.45 (0.60): kept; 8 is 0.021 below: dropped.
    assert np.flatnonzero(kept).tolist() == [0, 1, 2, 4, 6, 7]
    assert np.flatnonzero(near_frontier(NEW, PRIOR, tol=0.0)).tolist() == [0, 1, 2, 4, 6]
    assert near_frontier(NEW, PRIOR, tol=1.0).all()


def test_frontier_and_filter_match_brute_force_definitions() -> None:
    rng = np.random.default_rng(1)
    new = np.round(rng.uniform(0, 1, 300), 2)  # rounding makes ties common
    prior = np.round(1 - new**2 + rng.normal(0, 0.1, 300), 2)
    n = new.size
    dominated = [
        any(new[j] >= new[i] and prior[j] >= prior[i] and (new[j] > new[i] or prior[j] > prior[i]) for j in range(n))
        for i in range(n)
    ]
    expected_frontier = [i for i in range(n) if not dominated[i]]
    assert sorted(pareto_frontier(new, prior).tolist()) == expected_frontier
    assert np.all(np.diff(new[pareto_frontier(new, prior)]) >= 0)
    expected_kept = [
        not any(new[j] >= new[i] and prior[j] > prior[i] + 0.05 + 1e-12 for j in range(n)) for i in range(n)
    ]
    assert near_frontier(new, prior, tol=0.05).tolist() == expected_kept
    assert near_frontier(new, prior, tol=0.05)[pareto_frontier(new, prior)].all()


def test_nan_points_never_on_frontier() -> None:
    new = np.array([0.5, np.nan, 0.2])
    prior = np.array([0.5, 0.9, 0.4])
    assert pareto_frontier(new, prior).tolist() == [0]
    assert near_frontier(new, prior).tolist() == [True, False, False]
    assert pareto_frontier(np.array([]), np.array([])).tolist() == []


@pytest.mark.parametrize("a, b, c", [(0.8, 0.02, 4.0), (0.5, -0.3, -3.0), (0.7, 0.1, 1.5)])
def test_exponential_fit_recovers_planted_parameters(a: float, b: float, c: float) -> None:
    x = np.linspace(0.2, 0.95, 12)
    fit = fit_exponential(x, a - b * np.exp(c * x))
    assert fit.method == "curve_fit"
    assert (fit.a, fit.b, fit.c) == pytest.approx((a, b, c), rel=1e-5, abs=1e-7)
    assert fit(0.5) == pytest.approx(a - b * np.exp(c * 0.5), abs=1e-9)


def test_exponential_fit_two_points_is_the_line_through_them() -> None:
    fit = fit_exponential(np.array([0.2, 0.8]), np.array([0.9, 0.6]))
    assert fit.method == "linear" and fit.c == LINEAR_LIMIT_C
    # Linear limit: a - b exp(cx) equals the line up to |slope| c x^2 / 2.
    x = np.linspace(0, 1, 11)
    assert np.allclose(fit(x), 1.0 - 0.5 * x, atol=1e-6)
    # the report shows the line itself, not a and b of order 1 / LINEAR_LIMIT_C that cancel
    assert fit.describe() == "prior = 1 - 0.5 new (straight line)"
    assert fit_exponential(np.array([0.5]), np.array([0.7])).describe() == "prior = 0.7 (constant: one new-task value)"


def test_exponential_fit_degenerate_inputs_do_not_raise() -> None:
    assert fit_exponential(np.array([0.4]), np.array([0.7])) == ExponentialFit(0.7, 0.0, 0.0, "constant")
    assert fit_exponential(np.array([0.4, 0.4, 0.4]), np.array([0.6, 0.7, 0.8])).a == pytest.approx(0.7)
    empty = fit_exponential(np.array([]), np.array([]))
    assert empty.method == "empty" and np.isnan(empty.a)
    # A straight line through many points is fitted exactly, whichever way.
    x = np.linspace(0.1, 0.9, 9)
    assert np.allclose(fit_exponential(x, 0.8 - 0.2 * x)(x), 0.8 - 0.2 * x, atol=1e-5)
