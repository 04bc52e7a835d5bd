"""Forecasting retention from forward KL: RL's Razor used as a tool rather than a finding.

If forgetting is one function of the forward KL on the new task, E_x~new[KL(pi0 || pi)], whatever the method,
then the finished runs of an experiment give that function, and a new run's KL, measured cheaply on new-task
inputs while it trains, predicts how much of the prior tasks it still keeps, before any prior task is evaluated.

- `fit_forecast`: retention (prior_mean: the mean prior-task score) as a 2nd-degree polynomial in forward KL
  (the paper's law), least squares over every point (final and mid-training) of the given runs.
- `holdout_error`: how well that works on runs it has not seen: the runs are split into folds, each fold is
  predicted by the fit on the others, at every one of its points (each checkpoint's KL -> its retention), and
  the absolute errors are averaged (points and runs, never split across folds).
- `RetentionForecast.save / load`: forecast.json, which a training run reads to log its predicted retention.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_razor.analysis.fits import poly_fit
from vla_razor.analysis.runs import Point, load_points
from vla_razor.runs import atomic_write_json

PREDICTOR = "forward_kl"
TARGET = "prior_mean"


@dataclass
class RetentionForecast:
    """retention = polyval(coeffs, forward KL), clipped to [0, 1] (retention is a success rate or an accuracy)."""

    coeffs: list[float]
    """Highest degree first (np.polyval)."""
    kl_range: list[float]
    """[min, max] forward KL of the points it was fitted on; beyond max it extrapolates."""
    r2: float
    runs: int
    points: int
    predictor: str = PREDICTOR
    target: str = TARGET

    def predict(self, forward_kl: float | np.ndarray) -> float | np.ndarray:
        """Predicted retention at this forward KL (the fit's value, clipped to [0, 1])."""
        kl = np.asarray(forward_kl, dtype=float)
        value = np.clip(np.polyval(self.coeffs, kl), 0.0, 1.0)
        return float(value) if value.ndim == 0 else value

    def save(self, path: Path) -> None:
        atomic_write_json(Path(path), asdict(self))

    @classmethod
    def load(cls, path: Path) -> RetentionForecast:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"forecast: {path} does not exist; make one with `vla-razor forecast RUNS_DIR`")
        try:
            values = json.loads(path.read_text())
            forecast = cls(
                **{k: values[k] for k in ("coeffs", "kl_range", "r2", "runs", "points")},
                predictor=values.get("predictor", PREDICTOR),
                target=values.get("target", TARGET),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"forecast: {path} is not a forecast file ({err!r}); make one with `vla-razor forecast RUNS_DIR`"
            ) from None
        if forecast.predictor != PREDICTOR or forecast.target != TARGET:
            raise ValueError(
                f"forecast: {path} predicts {forecast.target} from {forecast.predictor}; "
                f"expected {TARGET} from {PREDICTOR}"
            )
        return forecast


def _pairs(points: list[Point]) -> tuple[np.ndarray, np.ndarray]:
    usable = [
        p
        for p in points
        if PREDICTOR in p.predictors and math.isfinite(p.predictors[PREDICTOR]) and math.isfinite(p.prior_mean)
    ]
    return (
        np.array([p.predictors[PREDICTOR] for p in usable], dtype=float),
        np.array([p.prior_mean for p in usable], dtype=float),
    )


def fit_forecast(points: list[Point], degree: int = 2) -> RetentionForecast:
    """The law retention = f(forward KL) fitted on `points` (see the module docstring)."""
    x, y = _pairs(points)
    if x.size < degree + 1:
        raise ValueError(
            f"forecast: {x.size} points report {PREDICTOR}; a degree-{degree} fit needs at least {degree + 1}"
        )
    fit = poly_fit(x, y, degree)
    runs = len({p.run for p in points if PREDICTOR in p.predictors})
    return RetentionForecast(
        [float(c) for c in fit.coeffs], [float(x.min()), float(x.max())], float(fit.r2), runs, int(x.size)
    )


def holdout_error(points: list[Point], folds: int = 5, seed: int = 0, degree: int = 2) -> dict[str, Any]:
    """Mean absolute error of forecasting held-out runs' retention from their forward KL (see module docstring).

    Returns {"holdout_mae", "holdout_mae_final" (final points only), "holdout_rmse", "baseline_mae" (predicting
    the training runs' mean retention, for scale), "runs", "points", "folds"}.
    """
    runs = sorted({p.run for p in points if PREDICTOR in p.predictors})
    folds = min(folds, len(runs))
    if folds < 2:
        raise ValueError(f"forecast: {len(runs)} run(s) report {PREDICTOR}; holding runs out needs at least 2")
    order = np.random.default_rng(seed).permutation(len(runs))
    fold_of = {runs[i]: k % folds for k, i in enumerate(order)}
    errors, final_errors, baseline = [], [], []
    for fold in range(folds):
        train = [p for p in points if fold_of.get(p.run, -1) != fold]
        test = [p for p in points if fold_of.get(p.run) == fold]
        forecast = fit_forecast(train, degree)
        mean_retention = float(_pairs(train)[1].mean())
        for p in test:
            if PREDICTOR not in p.predictors or not math.isfinite(p.prior_mean):
                continue
            error = abs(forecast.predict(p.predictors[PREDICTOR]) - p.prior_mean)
            errors.append(error)
            baseline.append(abs(mean_retention - p.prior_mean))
            if p.final:
                final_errors.append(error)
    return {
        "holdout_mae": float(np.mean(errors)),
        "holdout_mae_final": float(np.mean(final_errors)) if final_errors else math.nan,
        "holdout_rmse": float(np.sqrt(np.mean(np.square(errors)))),
        "baseline_mae": float(np.mean(baseline)),
        "runs": len(runs),
        "points": len(errors),
        "folds": folds,
    }


def write_forecast(runs_dir: Path, out: Path, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """forecast.json from every finished run under `runs_dir`: the law fitted on all of them, plus its error on
    held-out runs. A run given `forecast: <that file>` logs its predicted retention from its live KL."""
    points, _ = load_points(Path(runs_dir))
    result = {**asdict(fit_forecast(points)), **holdout_error(points, folds=folds, seed=seed)}
    atomic_write_json(Path(out), result)
    return result
