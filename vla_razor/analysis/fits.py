"""Polynomial fits of forgetting against candidate predictors, and the R^2 table (paper's Table 1).

Table 1 reports, for each candidate variable, the R^2 of a 2nd-degree polynomial fit of forgetting
pooled over all methods' points (mid-training checkpoints included), with a +- spread. Here:
- the spread is the standard deviation of R^2 over bootstrap resamples of **runs** (a run's points move
  together, so resampling points would count one run's checkpoints as independent evidence); a resample with
  at most degree + 1 distinct x values fits exactly (R^2 = 1 whatever the law) and is skipped and counted;
- beside the in-sample R^2, the leave-one-run-out R^2: each run's points predicted by the fit on the other
  runs, 1 - sum of squared held-out errors / sum of squares about the mean (can be negative);
- every R^2 comes with how many runs and points it rests on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from vla_razor.analysis.runs import Point

# Table 1 of the paper (ParityMNIST), in its row order; our report uses the same order and names.
PAPER_TABLE1_R2: dict[str, float] = {
    "forward_kl": 0.96,
    "reverse_kl": 0.93,
    "tv": 0.80,
    "dist_l2": 0.56,
    "weight_l1": 0.34,
    "fisher_l2": 0.58,
    "spectral": 0.58,
    "activation_l1": 0.52,
    "activation_l2": 0.55,
}
TABLE1_ORDER: tuple[str, ...] = tuple(PAPER_TABLE1_R2)
# Point attributes a predictor table may explain.
TARGETS = ("forgetting", "new_task", "prior_mean")


@dataclass
class PolyFit:
    """Least-squares polynomial y ~ polyval(coeffs, x) and its in-sample R^2."""

    coeffs: np.ndarray  # highest degree first, as np.polyfit
    r2: float  # 1 - SS_res / SS_tot; NaN when undefined (constant y, or n <= degree)
    n: int

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return np.polyval(self.coeffs, np.asarray(x, dtype=float))


def order_predictors(names: list[str] | set[str]) -> list[str]:
    """Table 1's order for the paper's nine predictors, then any others alphabetically."""
    names = set(names)
    known = [name for name in TABLE1_ORDER if name in names]
    return known + sorted(names - set(TABLE1_ORDER))


def poly_fit(x: np.ndarray, y: np.ndarray, degree: int = 2) -> PolyFit:
    """Fit a degree-``degree`` polynomial; R^2 = 1 - SS_res / SS_tot.

    R^2 is NaN where it means nothing: no spread in y (SS_tot = 0) or too few points to leave any
    residual freedom (n <= degree). With fewer than degree + 1 points the lower-degree exact fit is
    returned, padded with leading zero coefficients.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    n = int(x.size)
    if n == 0:
        return PolyFit(coeffs=np.full(degree + 1, math.nan), r2=math.nan, n=0)
    used_degree = min(degree, int(np.unique(x).size) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        coeffs = np.polyfit(x, y, used_degree)
    coeffs = np.concatenate([np.zeros(degree - used_degree), coeffs])
    residual = y - np.polyval(coeffs, x)
    ss_res = float(residual @ residual)
    centred = y - y.mean()
    ss_tot = float(centred @ centred)
    r2 = math.nan if ss_tot == 0.0 or n <= degree else 1.0 - ss_res / ss_tot
    return PolyFit(coeffs=coeffs, r2=r2, n=n)


@dataclass
class BootstrapR2:
    """R^2 over bootstrap resamples of runs."""

    mean: float
    std: float  # ddof=1 over the resamples used; NaN when none was usable
    used: int  # resamples that scored an R^2
    degenerate: int  # resamples skipped: too few distinct x values for the fit to leave any residual


def bootstrap_r2(
    x: np.ndarray, y: np.ndarray, runs: list[str] | np.ndarray, degree: int = 2, n_boot: int = 200, seed: int = 0
) -> BootstrapR2:
    """R^2 over resamples that draw as many runs as there are, with replacement, each with all its points.

    A resample with <= degree + 1 distinct x values (an exact fit) or an undefined R^2 is skipped and counted
    in `degenerate`."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    runs = np.asarray(runs)
    names = np.unique(runs)
    if x.size == 0 or n_boot <= 0:
        return BootstrapR2(math.nan, math.nan, 0, 0)
    members = [np.flatnonzero(runs == name) for name in names]
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    degenerate = 0
    for _ in range(n_boot):
        sample = np.concatenate([members[i] for i in rng.integers(0, names.size, size=names.size)])
        r2 = poly_fit(x[sample], y[sample], degree).r2 if np.unique(x[sample]).size > degree + 1 else math.nan
        if math.isfinite(r2):
            scores.append(r2)
        else:
            degenerate += 1
    if not scores:
        return BootstrapR2(math.nan, math.nan, 0, degenerate)
    values = np.array(scores)
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return BootstrapR2(float(values.mean()), std, len(scores), degenerate)


def leave_one_run_out_r2(x: np.ndarray, y: np.ndarray, runs: list[str] | np.ndarray, degree: int = 2) -> float:
    """1 - sum over runs of the squared errors of predicting the run's points from a fit on the other runs,
    over the total sum of squares about the mean of y. NaN when some held-out fit would have too few distinct
    x values (<= degree) or y has no spread."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    runs = np.asarray(runs)
    names = np.unique(runs)
    centred = y - y.mean() if y.size else y
    ss_tot = float(centred @ centred)
    if names.size < 2 or ss_tot == 0.0:
        return math.nan
    press = 0.0
    for name in names:
        held = runs == name
        if np.unique(x[~held]).size <= degree:
            return math.nan
        fit = poly_fit(x[~held], y[~held], degree)
        error = y[held] - fit(x[held])
        press += float(error @ error)
    return 1.0 - press / ss_tot


def predictor_table(
    points: list[Point],
    predictors: list[str] | None = None,
    target: str = "forgetting",
    degree: int = 2,
    n_boot: int = 200,
) -> dict[str, dict]:
    """R^2 of ``target`` vs each predictor, pooled over every given point (all methods, all steps).

    Returns {predictor: {"r2", "r2_loro", "r2_std", "r2_boot_mean", "boot_used", "boot_degenerate", "n",
    "n_runs", "coeffs"}} in Table 1's order. "r2" is the fit on all pooled points, "r2_loro" its leave-one-run-out
    counterpart; "r2_std" / "r2_boot_mean" come from ``bootstrap_r2`` over runs; "n" counts the points that report
    the predictor (the others are skipped for that predictor only) and "n_runs" their runs; "coeffs" are highest
    degree first. ``predictors=None`` means every predictor any point reports.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if predictors is None:
        predictors = order_predictors({name for point in points for name in point.predictors})
    table: dict[str, dict] = {}
    for name in predictors:
        usable = [
            point for point in points if name in point.predictors and math.isfinite(float(getattr(point, target)))
        ]
        x = np.array([point.predictors[name] for point in usable], dtype=float)
        y = np.array([float(getattr(point, target)) for point in usable], dtype=float)
        runs = [point.run for point in usable]
        fit = poly_fit(x, y, degree)
        boot = bootstrap_r2(x, y, runs, degree=degree, n_boot=n_boot)
        table[name] = {
            "r2": fit.r2,
            "r2_loro": leave_one_run_out_r2(x, y, runs, degree),
            "r2_std": boot.std,
            "r2_boot_mean": boot.mean,
            "boot_used": boot.used,
            "boot_degenerate": boot.degenerate,
            "n": fit.n,
            "n_runs": len(set(runs)),
            "coeffs": [float(value) for value in fit.coeffs],
        }
    return table
