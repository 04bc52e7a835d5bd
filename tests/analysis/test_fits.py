from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vla_razor.analysis.fits import bootstrap_r2, order_predictors, poly_fit, predictor_table
from vla_razor.analysis.runs import load_points


def test_poly_fit_planted_quadratic_has_r2_one() -> None:
    x = np.linspace(0.0, 2.0, 15)
    fit = poly_fit(x, 0.3 * x**2 + 0.1 * x)
    assert fit.n == 15
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.coeffs == pytest.approx([0.3, 0.1, 0.0], abs=1e-9)


def test_poly_fit_r2_matches_closed_form() -> None:
    # Straight line through (0,0) (1,1) (2,1) (3,3): R^2 = Sxy^2 / (Sxx Syy) = 4.5^2 / (5 * 4.75).
    fit = poly_fit(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 1.0, 3.0]), degree=1)
    assert fit.coeffs == pytest.approx([0.9, -0.1])
    assert fit.r2 == pytest.approx(4.5**2 / (5 * 4.75), abs=1e-12)
    # A line cannot explain a symmetric parabola at all.
    line = poly_fit(np.array([-1.0, 0.0, 1.0]), np.array([1.0, 0.0, 1.0]), degree=1)
    assert line.r2 == pytest.approx(0.0, abs=1e-12)


def test_poly_fit_undefined_r2_is_nan() -> None:
    assert math.isnan(poly_fit(np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.5, 0.5])).r2)  # constant y
    assert math.isnan(poly_fit(np.array([0.0, 1.0]), np.array([0.0, 1.0])).r2)  # n <= degree
    assert poly_fit(np.array([]), np.array([])).n == 0


def test_bootstrap_of_exact_law_is_one_with_no_spread() -> None:
    x = np.linspace(0.0, 1.0, 20)
    mean, std = bootstrap_r2(x, 0.3 * x**2 + 0.1 * x, n_boot=50)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    noisy_y = x + np.random.default_rng(0).normal(0, 0.2, x.size)
    first = bootstrap_r2(x, noisy_y, n_boot=50, seed=3)
    assert first == bootstrap_r2(x, noisy_y, n_boot=50, seed=3)  # seeded
    assert 0.0 < first[0] < 1.0 and first[1] > 0.0


def test_predictor_table_recovers_planted_law_from_run_folders(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    table = predictor_table(points, n_boot=30)
    assert list(table) == ["forward_kl", "tv", "weight_l1"]  # Table 1 order
    assert table["forward_kl"]["r2"] == pytest.approx(1.0, abs=1e-9)
    assert table["forward_kl"]["coeffs"] == pytest.approx([0.3, 0.1, 0.0], abs=1e-9)
    assert table["forward_kl"]["n"] == 24
    assert table["forward_kl"]["r2_std"] == pytest.approx(0.0, abs=1e-9)
    assert table["weight_l1"]["r2"] == pytest.approx(1.0, abs=1e-9)  # a rescaled KL explains it as well
    assert table["tv"]["r2"] < 0.95  # the noisy copy of KL explains less
    assert table["tv"]["r2_std"] > 0.0


def test_points_without_a_predictor_are_skipped_for_it_only(planted_runs: Path, synth) -> None:
    record = synth.make_record("sft", 7, 0.9, 0.5, 0.5)
    del record["predictors"]["tv"]
    synth.write_run(planted_runs / "exp" / "sft_no_tv", record)
    points, _ = load_points(planted_runs)
    table = predictor_table(points, predictors=["tv", "forward_kl", "spectral"], n_boot=5)
    assert list(table) == ["tv", "forward_kl", "spectral"]
    assert (table["forward_kl"]["n"], table["tv"]["n"], table["spectral"]["n"]) == (25, 24, 0)
    assert table["forward_kl"]["r2"] == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(table["spectral"]["r2"])


def test_order_predictors_and_bad_target() -> None:
    assert order_predictors({"zeta", "tv", "forward_kl", "alpha", "activation_l2"}) == [
        "forward_kl", "tv", "activation_l2", "alpha", "zeta"]
    with pytest.raises(ValueError, match="target"):
        predictor_table([], target="loss")
