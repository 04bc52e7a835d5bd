"""vla_razor/analysis/forecast.py: the retention law recovered from run folders, held-out error, forecast.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vla_razor.analysis.forecast import RetentionForecast, fit_forecast, holdout_error
from vla_razor.analysis.runs import load_points

PLANTED_RETENTION = [-0.3, -0.1, 0.75]
"""retention = mean base prior (0.75) - forgetting, forgetting = 0.3 kl^2 + 0.1 kl (conftest's planted law)."""


def test_planted_law_is_recovered_and_forecasts_held_out_runs_exactly(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    forecast = fit_forecast(points)
    np.testing.assert_allclose(forecast.coeffs, PLANTED_RETENTION, atol=1e-9)
    assert forecast.r2 == pytest.approx(1.0) and forecast.runs == 6 and forecast.points == len(points)
    assert forecast.predict(0.5) == pytest.approx(0.75 - 0.3 * 0.25 - 0.05)
    error = holdout_error(points, folds=3)
    assert error["holdout_mae"] == pytest.approx(0.0, abs=1e-9), "an exact law forecasts unseen runs exactly"
    assert error["baseline_mae"] > 0.05, "the mean retention alone does not"
    assert (error["runs"], error["folds"], error["points"]) == (6, 3, len(points))


def test_held_out_error_grows_with_noise_and_never_uses_the_held_out_runs(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    rng = np.random.default_rng(1)
    for p in points:  # noise on retention: the fit on the other runs cannot have seen a held-out run's noise
        p.prior_mean += float(rng.normal(0.0, 0.02))
    error = holdout_error(points, folds=6)
    in_sample = np.abs(
        fit_forecast(points).predict([p.predictors["forward_kl"] for p in points]) - [p.prior_mean for p in points]
    ).mean()
    assert 0.005 < error["holdout_mae"] < 0.05
    assert error["holdout_mae"] > in_sample, "held-out error is above the in-sample error"


def test_forecast_file_round_trip_and_bad_files(tmp_path: Path, planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    forecast = fit_forecast(points)
    forecast.save(tmp_path / "forecast.json")
    loaded = RetentionForecast.load(tmp_path / "forecast.json")
    assert loaded == forecast
    assert loaded.predict(100.0) == 0.0, "clipped to [0, 1]"
    (tmp_path / "bad.json").write_text(json.dumps({"coeffs": [1.0]}))
    with pytest.raises(ValueError, match="bad.json is not a forecast file"):
        RetentionForecast.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="vla-razor forecast RUNS_DIR"):
        RetentionForecast.load(tmp_path / "missing.json")


def test_too_few_runs_or_points_are_refused(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    one_run = [p for p in points if p.run == points[0].run]
    with pytest.raises(ValueError, match="needs at least 2"):
        holdout_error(one_run)
    with pytest.raises(ValueError, match="a degree-2 fit needs at least 3"):
        fit_forecast(one_run[:2])


def test_cli_writes_forecast_json_with_held_out_error(planted_runs: Path, tmp_path: Path, capsys) -> None:
    from vla_razor.cli.main import main

    assert main(["forecast", str(planted_runs), "--out", str(tmp_path / "f.json"), "--folds", "3"]) == 0
    written = json.loads((tmp_path / "f.json").read_text())
    assert written["holdout_mae"] == pytest.approx(0.0, abs=1e-9) and written["runs"] == 6
    np.testing.assert_allclose(written["coeffs"], PLANTED_RETENTION, atol=1e-9)
    assert RetentionForecast.load(tmp_path / "f.json").coeffs == written["coeffs"]
    out = capsys.readouterr().out
    assert "retention = 0.75 -0.1 * KL -0.3 * KL^2" in out and "held-out runs (3 folds)" in out
    assert main(["forecast", str(tmp_path / "nowhere")]) == 2
    assert "runs directory" in capsys.readouterr().err
