"""Pareto frontier of the learning-forgetting trade-off, and the exponential curve that traces it.

Appendix B.1 of the paper: keep only models within 2 accuracy points of the Pareto frontier (new-task
performance vs prior-task performance, both maximized), then fit an exponential function to the kept
points to draw each method's trade-off curve.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

# Slope scale used when a straight line stands in for the exponential (see fit_exponential).
LINEAR_LIMIT_C = 1e-6
# Largest |c| * (x range) tried: exp(40) already bends the whole curve into the last 3% of the range.
MAX_C_TIMES_SPAN = 40.0
# Absorbs float round-off in "prior_j > prior_i + tol" (0.76 + 0.02 is not exactly 0.78 in binary).
_TOL_SLACK = 1e-12


def pareto_frontier(new: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, maximizing both new-task and prior-task performance.

    Point i is dominated when some j has new_j >= new_i and prior_j >= prior_i with at least one of
    the two strict. Exact duplicates do not dominate each other, so all copies of a frontier point are
    returned. Points with a NaN coordinate are never on the frontier. The result is sorted by ``new``
    ascending (ties by index).
    """
    new = np.asarray(new, dtype=float).ravel()
    prior = np.asarray(prior, dtype=float).ravel()
    if new.shape != prior.shape:
        raise ValueError(f"new and prior differ in length: {new.size} vs {prior.size}")
    valid = np.flatnonzero(~(np.isnan(new) | np.isnan(prior)))
    if valid.size == 0:
        return np.zeros(0, dtype=int)

    # Sweep from the highest new-task performance down; a point survives when it has the best prior
    # among points of equal `new` and beats every point with strictly higher `new`.
    order = valid[np.lexsort((-prior[valid], -new[valid]))]
    on_frontier: list[int] = []
    best_prior_at_higher_new = -math.inf
    start = 0
    while start < order.size:
        stop = start
        while stop < order.size and new[order[stop]] == new[order[start]]:
            stop += 1
        group = order[start:stop]
        group_best = prior[group].max()
        if group_best > best_prior_at_higher_new:
            on_frontier.extend(int(i) for i in group if prior[i] == group_best)
        best_prior_at_higher_new = max(best_prior_at_higher_new, group_best)
        start = stop
    frontier = np.array(on_frontier, dtype=int)
    return frontier[np.lexsort((frontier, new[frontier]))]


def near_frontier(new: np.ndarray, prior: np.ndarray, tol: float = 0.02) -> np.ndarray:
    """Boolean mask of the points within ``tol`` of the Pareto frontier (the B.1 filter).

    Exact definition: point i is kept iff no point j has new_j >= new_i and prior_j > prior_i + tol.
    Equivalently, prior_i is at most ``tol`` below the frontier's staircase at new_i, i.e. below the
    best prior-task performance any model reaches while doing at least as well on the new task. The
    distance is measured vertically (prior-task points), so frontier points (distance 0) are always
    kept. With performances as fractions, "2 accuracy points" is tol = 0.02. Points with a NaN
    coordinate are not kept.
    """
    new = np.asarray(new, dtype=float).ravel()
    prior = np.asarray(prior, dtype=float).ravel()
    if new.shape != prior.shape:
        raise ValueError(f"new and prior differ in length: {new.size} vs {prior.size}")
    keep = np.zeros(new.size, dtype=bool)
    valid = np.flatnonzero(~(np.isnan(new) | np.isnan(prior)))
    if valid.size == 0:
        return keep

    order = valid[np.argsort(new[valid], kind="stable")]
    sorted_new = new[order]
    # best_prior_from[k] = max prior over sorted positions >= k
    best_prior_from = np.maximum.accumulate(prior[order][::-1])[::-1]
    # The first position of i's tie group sees every point with new_j >= new_i.
    first_position = np.searchsorted(sorted_new, new[valid], side="left")
    frontier_prior_at = best_prior_from[first_position]
    keep[valid] = frontier_prior_at - prior[valid] <= tol + _TOL_SLACK
    return keep


@dataclass
class ExponentialFit:
    """Prior-task performance as a function of new-task performance: y = a - b * exp(c * x).

    With b > 0 and c > 0 the curve starts near a - b and falls ever faster as new-task performance
    grows (retention collapsing near high accuracy, as for SFT); a tiny b gives an almost flat
    frontier (as for RL). ``method`` says how it was obtained: "curve_fit" (the exponential proper),
    "linear" (straight-line limit, c = LINEAR_LIMIT_C), "constant" or "empty" (no points: a is NaN).
    """

    a: float
    b: float
    c: float
    method: str = "curve_fit"

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        # a - b*exp(cx) written as (a - b) - b*expm1(cx): exact for the linear limit's tiny c.
        return (self.a - self.b) - self.b * np.expm1(self.c * x)

    def as_dict(self) -> dict[str, float | str]:
        return {"a": self.a, "b": self.b, "c": self.c, "method": self.method}

    def describe(self) -> str:
        """The fit as a reader should see it: the straight-line limit as its slope and intercept (its a and b are
        huge and cancel, e.g. a=8499, b=8498 for a line through two points), the others as fitted."""
        if self.method == "empty":
            return "none (no points)"
        if self.method == "constant":
            return f"prior = {self.a:.4g} (constant: one new-task value)"
        if self.method == "linear":
            slope, intercept = -self.b * self.c, self.a - self.b
            return f"prior = {intercept:.4g} {'-' if slope < 0 else '+'} {abs(slope):.4g} new (straight line)"
        return f"a={self.a:.4g}, b={self.b:.4g}, c={self.c:.4g}"


def fit_exponential(x: np.ndarray, y: np.ndarray) -> ExponentialFit:
    """Least-squares fit of y = a - b * exp(c * x); never raises.

    The model is linear in (a, b) once c is fixed, so initial guesses come from a grid over c (both
    signs, |c| * x-range up to MAX_C_TIMES_SPAN) with (a, b) solved exactly at each c; the best grid
    point then seeds scipy's curve_fit, with c bounded to the same range.

    Fallbacks, so a method with few frontier points still gets a curve:
    - fewer than 3 points; curve_fit fails or returns non-finite values; or the least-squares
      straight line fits at least as well as the exponential (the optimum is then the c -> 0 limit,
      towards which curve_fit would only drift): the straight line (np.polyfit degree 1), written as
      the exponential's linear limit: with
      c = LINEAR_LIMIT_C, b = -slope / c and a = intercept + b, a - b*exp(cx) equals the line up to
      |slope| * c * x^2 / 2 (about 5e-7 on [0, 1]);
    - one distinct x value: the constant mean(y) (b = c = 0);
    - no points: a = NaN.
    Non-finite points are dropped first.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if x.size == 0:
        return ExponentialFit(a=math.nan, b=0.0, c=0.0, method="empty")
    if np.ptp(x) == 0.0:
        return ExponentialFit(a=float(y.mean()), b=0.0, c=0.0, method="constant")
    if x.size < 3:
        return _linear_limit_fit(x, y)

    # Fit in shifted coordinates u = x - min(x) so exp(c * u) stays in range, then shift back.
    x0 = float(x.min())
    u = x - x0
    c_max = MAX_C_TIMES_SPAN / float(np.ptp(x))
    grid_start = _best_grid_start(u, y, c_max)
    line_error = _squared_error(_linear_limit_fit(x, y), x, y)
    if grid_start is None or line_error <= grid_start[1]:
        # No exponential on the grid beats the straight line: the optimum is the c -> 0 limit, where
        # curve_fit would only drift towards ever larger a and b.
        return _linear_limit_fit(x, y)
    initial = grid_start[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(
                _exponential,
                u,
                y,
                p0=initial,
                bounds=([-np.inf, -np.inf, -c_max], [np.inf, np.inf, c_max]),
                maxfev=2000,
            )
        a, b_shifted, c = (float(value) for value in params)
        b = b_shifted * math.exp(-c * x0)
    except (RuntimeError, ValueError, FloatingPointError, OverflowError):
        return _linear_limit_fit(x, y)
    fit = ExponentialFit(a=a, b=b, c=c, method="curve_fit")
    if not all(math.isfinite(value) for value in (a, b, c)) or _squared_error(fit, x, y) > line_error:
        return _linear_limit_fit(x, y)
    return fit


def _squared_error(fit: ExponentialFit, x: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        error = float(np.sum((fit(x) - y) ** 2))
    return error if math.isfinite(error) else math.inf


def _exponential(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.exp(c * x)


def _best_grid_start(u: np.ndarray, y: np.ndarray, c_max: float) -> tuple[tuple[float, float, float], float] | None:
    """((a, b, c), squared error) of the best y = a - b*exp(c*u) over a grid of c (u >= 0 here),
    (a, b) solved by least squares at each c."""
    magnitudes = np.geomspace(0.1 / MAX_C_TIMES_SPAN, 1.0, 32) * c_max  # |c| * span from 0.1 to 40
    grid = np.concatenate([-magnitudes[::-1], magnitudes])
    best: tuple[tuple[float, float, float], float] | None = None
    best_error = math.inf
    for c in grid:
        with np.errstate(over="ignore", invalid="ignore"):
            design = np.column_stack([np.ones_like(u), -np.exp(c * u)])
            if not np.all(np.isfinite(design)):
                continue
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            error = float(np.sum((design @ coef - y) ** 2))
        if math.isfinite(error) and error < best_error:
            best_error = error
            best = ((float(coef[0]), float(coef[1]), float(c)), error)
    return best


def _linear_limit_fit(x: np.ndarray, y: np.ndarray) -> ExponentialFit:
    slope, intercept = np.polyfit(x, y, 1)
    b = -float(slope) / LINEAR_LIMIT_C
    return ExponentialFit(a=float(intercept) + b, b=b, c=LINEAR_LIMIT_C, method="linear")
