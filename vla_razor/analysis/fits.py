"""Polynomial fits of forgetting against candidate predictors, and the R^2 table (paper's Table 1).

Table 1 reports, for each candidate variable, the R^2 of a 2nd-degree polynomial fit of forgetting
pooled over all methods' points (mid-training checkpoints included), with a +- spread. Here the spread
is the standard deviation of R^2 over bootstrap resamples of the points.
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


def bootstrap_r2(x: np.ndarray, y: np.ndarray, degree: int = 2, n_boot: int = 200,
                 seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of R^2 over bootstrap resamples (Table 1's +-).

    Each resample draws n points with replacement, refits, and scores R^2 on that resample.
    Resamples where R^2 is undefined (e.g. all draws with the same y) are skipped; (NaN, NaN) when
    none is left. The std uses ddof=1.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    for _ in range(n_boot):
        sample = rng.integers(0, x.size, size=x.size)
        r2 = poly_fit(x[sample], y[sample], degree).r2
        if math.isfinite(r2):
            scores.append(r2)
    if not scores:
        return math.nan, math.nan
    values = np.array(scores)
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def predictor_table(points: list[Point], predictors: list[str] | None = None, target: str = "forgetting",
                    degree: int = 2, n_boot: int = 200) -> dict[str, dict]:
    """R^2 of ``target`` vs each predictor, pooled over every given point (all methods, all steps).

    Returns {predictor: {"r2", "r2_std", "r2_boot_mean", "n", "coeffs"}} in Table 1's order. "r2" is
    the fit on all pooled points; "r2_std" / "r2_boot_mean" come from ``bootstrap_r2``; "n" counts the
    points that report the predictor (the others are skipped for that predictor only); "coeffs" are
    highest degree first. ``predictors=None`` means every predictor any point reports.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if predictors is None:
        predictors = order_predictors({name for point in points for name in point.predictors})
    table: dict[str, dict] = {}
    for name in predictors:
        pairs = [(point.predictors[name], float(getattr(point, target))) for point in points
                 if name in point.predictors and math.isfinite(float(getattr(point, target)))]
        x = np.array([pair[0] for pair in pairs], dtype=float)
        y = np.array([pair[1] for pair in pairs], dtype=float)
        fit = poly_fit(x, y, degree)
        boot_mean, boot_std = bootstrap_r2(x, y, degree=degree, n_boot=n_boot)
        table[name] = {
            "r2": fit.r2,
            "r2_std": boot_std,
            "r2_boot_mean": boot_mean,
            "n": fit.n,
            "coeffs": [float(value) for value in fit.coeffs],
        }
    return table
