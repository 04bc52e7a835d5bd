"""95 % intervals of probe scores and of forgetting, from per-example results.

A probe's per-example results are a list of scores in [0, 1], one per example, in document order (example i of
one model pairs with example i of another). Invariants:
- a score's interval is Wilson's score interval when every example scores 0 or 1 (accuracy, pass@1), else the
  normal interval mean +- z sd / sqrt(n) (TruthfulQA's MC2 probabilities);
- forgetting on a probe, base minus model, has a paired interval over the examples both measured. With 0 / 1
  scores it is Bonett and Price's adjusted Wald interval for paired proportions (2012: one pseudo-success added
  to each discordant cell, so that two models agreeing on every example still get an interval of honest width
  rather than [0, 0]); otherwise normal on the per-example differences d_i = base_i - model_i, mean(d) +- z sd(d)
  / sqrt(n). Two models that agree on most examples give a far narrower interval than two independent intervals;
- forgetting averaged over probes combines the probes' standard errors as independent (disjoint examples):
  se = sqrt(sum se_k^2) / K.
An interval with fewer than 2 examples is NaN wide (nothing to estimate a spread from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95 % normal quantile."""


@dataclass(frozen=True)
class Interval:
    """A value with its 95 % interval [low, high] from n examples, and how it was computed."""

    value: float
    low: float
    high: float
    n: int
    method: str  # "wilson", "normal", "paired normal" or "mean of probes"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_json(self) -> dict[str, float | int | str | None]:
        return {
            "value": _finite(self.value),
            "low": _finite(self.low),
            "high": _finite(self.high),
            "n": self.n,
            "method": self.method,
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN


def _values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what}: expected a non-empty list of per-example scores")
    return array


def _normal(mean: float, values: np.ndarray, method: str) -> Interval:
    n = values.size
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return Interval(mean, mean - half, mean + half, n, method)


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion successes / n."""
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)  # within [0, 1] (rounding gave -0.000 at p = 0)


def score_interval(values: Sequence[float]) -> Interval:
    """A probe score (the mean of its per-example scores) with its 95 % interval: Wilson when every example
    scores 0 or 1, else normal."""
    array = _values(values, "score_interval")
    mean = float(array.mean())
    if np.isin(array, (0.0, 1.0)).all():
        low, high = wilson(float(array.sum()), array.size)
        return Interval(mean, low, high, array.size, "wilson")
    return _normal(mean, array, "normal")


def paired_difference(base: Sequence[float], model: Sequence[float]) -> Interval:
    """base - model over the examples both measured (the first min(len) of each, in document order), with the
    paired 95 % interval: Bonett-Price for 0 / 1 scores, else normal on the per-example differences."""
    a, b = _values(base, "paired_difference: base"), _values(model, "paired_difference: model")
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    d = a - b
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        lost, gained = float(np.sum((a == 1) & (b == 0))), float(np.sum((a == 0) & (b == 1)))
        p_lost, p_gained = (lost + 1) / (n + 2), (gained + 1) / (n + 2)
        centre = p_lost - p_gained
        half = Z95 * math.sqrt(max(p_lost + p_gained - centre**2, 0.0) / (n + 2))
        return Interval(float(d.mean()), max(-1.0, centre - half), min(1.0, centre + half), n, "paired Bonett-Price")
    return _normal(float(d.mean()), d, "paired normal")


def unpaired_difference(base: Sequence[float], model: Sequence[float]) -> Interval:
    """base - model as if the two were measured on independent examples: mean difference +- z sqrt(se_a^2 +
    se_b^2). What ignoring the pairing costs; the paired interval is the one to report."""
    a, b = _values(base, "unpaired_difference: base"), _values(model, "unpaired_difference: model")
    diff = float(a.mean() - b.mean())
    if min(a.size, b.size) < 2:
        return Interval(diff, math.nan, math.nan, min(a.size, b.size), "unpaired normal")
    half = Z95 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return Interval(diff, diff - half, diff + half, min(a.size, b.size), "unpaired normal")


def mean_of_probes(intervals: Sequence[Interval]) -> Interval:
    """The mean over probes of their values, its interval combining their standard errors as independent."""
    if not intervals:
        raise ValueError("mean_of_probes: no probe intervals")
    k = len(intervals)
    value = sum(i.value for i in intervals) / k
    half = math.sqrt(sum(i.half_width**2 for i in intervals)) / k
    return Interval(value, value - half, value + half, sum(i.n for i in intervals), "mean of probes")


def probe_intervals(examples: Mapping[str, Sequence[float]]) -> dict[str, Interval]:
    """{probe: score interval} of one model's per-example results."""
    return {probe: score_interval(values) for probe, values in examples.items() if len(values)}


def forgetting_intervals(
    base: Mapping[str, Sequence[float]], model: Mapping[str, Sequence[float]]
) -> dict[str, Interval]:
    """{probe: paired interval of base - model} for the probes both have per-example results of, and "mean" over
    them; {} when they share none (results made before per-example data were kept)."""
    shared = [p for p in model if p in base and len(base[p]) and len(model[p])]
    out = {probe: paired_difference(base[probe], model[probe]) for probe in shared}
    if out:
        out["mean"] = mean_of_probes(list(out.values()))
    return out


def paired_size(
    base: Sequence[float],
    half_width: float = 0.02,
    churn: float = 0.25,
    model: Sequence[float] | None = None,
) -> int:
    """Examples needed for a 95 % paired interval of base - model no wider than +- `half_width`.

    The variance of a per-example difference comes from `model`'s results paired with the base's when given.
    Otherwise it is assumed: on a fraction `churn` of the examples the fine-tuned model's score is a fresh draw
    from the base's score distribution (independent of the base's own score there), elsewhere it equals the base's;
    then Var(d) = 2 churn Var(base). churn = 1 is two independent measurements; a model that forgets a little
    changes few answers. n = z^2 Var(d) / half_width^2, rounded up (at least 2)."""
    if not 0 < half_width:
        raise ValueError(f"half_width: expected a number > 0, got {half_width}")
    if not 0 < churn <= 1:
        raise ValueError(f"churn: expected a fraction in (0, 1], got {churn}")
    a = _values(base, "paired_size: base")
    if model is not None:
        b = _values(model, "paired_size: model")
        n = min(a.size, b.size)
        variance = float((a[:n] - b[:n]).var(ddof=1)) if n > 1 else math.nan
    else:
        variance = 2 * churn * float(a.var(ddof=1)) if a.size > 1 else math.nan
    if not math.isfinite(variance):
        raise ValueError("paired_size: at least 2 examples are needed to estimate a variance")
    return max(2, math.ceil(Z95 * Z95 * variance / half_width**2))


def interval_summary(
    base_examples: Mapping[str, Sequence[float]],
    examples: Mapping[str, Sequence[float]],
    base_new_task: Sequence[float] = (),
    new_task: Sequence[float] = (),
) -> dict[str, Any]:
    """The 95 % intervals of a model's probe scores, of the base's, and of forgetting (paired), as JSON; with the
    new task's per-example results, its score's interval and the base's ("new_task", "base_new_task") too."""
    out: dict[str, Any] = {
        "prior": {p: i.to_json() for p, i in probe_intervals(examples).items()},
        "base_prior": {p: i.to_json() for p, i in probe_intervals(base_examples).items()},
        "forgetting": {p: i.to_json() for p, i in forgetting_intervals(base_examples, examples).items()},
    }
    if len(new_task):
        out["new_task"] = score_interval(new_task).to_json()
    if len(base_new_task):
        out["base_new_task"] = score_interval(base_new_task).to_json()
    return out
