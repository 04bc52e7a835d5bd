from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vla_razor.analysis.fits import bootstrap_r2, leave_one_run_out_r2, order_predictors, poly_fit, predictor_table
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


def test_bootstrap_resamples_runs_and_counts_degenerate_resamples() -> None:
    x = np.linspace(0.0, 1.0, 20)
    runs = np.repeat([f"run{i}" for i in range(5)], 4)  # 5 runs x 4 points
    exact = bootstrap_r2(x, 0.3 * x**2 + 0.1 * x, runs, n_boot=50)
    assert exact.mean == pytest.approx(1.0, abs=1e-9) and exact.std == pytest.approx(0.0, abs=1e-9)
    noisy_y = x + np.random.default_rng(0).normal(0, 0.2, x.size)
    first = bootstrap_r2(x, noisy_y, runs, n_boot=50, seed=3)
    assert first == bootstrap_r2(x, noisy_y, runs, n_boot=50, seed=3)  # seeded
    assert 0.0 < first.mean < 1.0 and first.std > 0.0 and first.used + first.degenerate == 50
    # 5 runs of one point each, no law at all: a resample of <= 3 distinct points fits exactly (R^2 = 1); those
    # are skipped and counted, not averaged in (they were 118 of 199 on the committed 5-run robot table)
    xs, ys = np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([0.3, 0.9, 0.1, 0.7, 0.2])
    few = bootstrap_r2(xs, ys, [f"r{i}" for i in range(5)], n_boot=200)
    assert few.degenerate > 50 and few.used + few.degenerate == 200
    assert few.mean < 0.9  # the point-resampling version averaged in the exact fits' 1.0s
    # a run's points are drawn together: with one run there is nothing to resample
    assert bootstrap_r2(x, noisy_y, ["one"] * 20, n_boot=10).std != bootstrap_r2(x, noisy_y, runs, n_boot=10).std


def test_leave_one_run_out_r2_scores_held_out_runs() -> None:
    x = np.linspace(0.0, 2.0, 12)
    runs = np.repeat(["a", "b", "c", "d"], 3)
    assert leave_one_run_out_r2(x, 0.3 * x**2 + 0.1 * x, runs) == pytest.approx(1.0, abs=1e-9)
    noisy = 0.3 * x**2 + np.random.default_rng(1).normal(0, 0.3, x.size)
    in_sample = poly_fit(x, noisy).r2
    held_out = leave_one_run_out_r2(x, noisy, runs)
    assert held_out < in_sample  # out-of-sample is the harder test
    # by hand: one line through 3 runs of 2 points each
    xs, ys = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.5, 2.5, 4.0, 5.0])
    rs = np.repeat(["p", "q", "r"], 2)
    press = 0.0
    for held in ("p", "q", "r"):
        fit = poly_fit(xs[rs != held], ys[rs != held], 1)
        press += float(((ys[rs == held] - fit(xs[rs == held])) ** 2).sum())
    expected = 1 - press / float(((ys - ys.mean()) ** 2).sum())
    assert leave_one_run_out_r2(xs, ys, rs, degree=1) == pytest.approx(expected)
    assert math.isnan(leave_one_run_out_r2(x, noisy, ["one"] * 12))  # nothing to hold out


def test_predictor_table_recovers_planted_law_from_run_folders(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    table = predictor_table(points, n_boot=30)
    assert list(table) == ["forward_kl", "tv", "weight_l1"]  # Table 1 order
    assert table["forward_kl"]["r2"] == pytest.approx(1.0, abs=1e-9)
    assert table["forward_kl"]["coeffs"] == pytest.approx([0.3, 0.1, 0.0], abs=1e-9)
    assert table["forward_kl"]["n"] == 24 and table["forward_kl"]["n_runs"] == len({p.run for p in points})
    assert table["forward_kl"]["r2_std"] == pytest.approx(0.0, abs=1e-9)
    assert table["forward_kl"]["r2_loro"] == pytest.approx(1.0, abs=1e-9)
    assert table["weight_l1"]["r2"] == pytest.approx(1.0, abs=1e-9)  # a rescaled KL explains it as well
    assert table["tv"]["r2"] < 0.95  # the noisy copy of KL explains less
    assert table["tv"]["r2_std"] > 0.0 and table["tv"]["r2_loro"] < table["tv"]["r2"]


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
        "forward_kl",
        "tv",
        "activation_l2",
        "alpha",
        "zeta",
    ]
    with pytest.raises(ValueError, match="target"):
        predictor_table([], target="loss")
