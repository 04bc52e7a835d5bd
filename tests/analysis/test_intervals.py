"""Intervals of probe scores and forgetting, checked against hand-computed values and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_razor.analysis.intervals import (
    Z95,
    forgetting_intervals,
    mean_of_probes,
    paired_difference,
    paired_size,
    score_interval,
    unpaired_difference,
)


def test_score_interval_is_wilson_for_0_1_scores_and_normal_otherwise():
    three_of_four = score_interval([1, 1, 1, 0])
    assert three_of_four.method == "wilson" and three_of_four.n == 4 and three_of_four.value == 0.75
    # Wilson: centre (p + z^2/2n) / (1 + z^2/n) = 0.6275, half-width 0.3269 (by hand)
    assert three_of_four.low == pytest.approx(0.30064, abs=1e-4)
    assert three_of_four.high == pytest.approx(0.95440, abs=1e-4)
    assert score_interval([0, 0, 0]).low == 0.0 and score_interval([1, 1]).high == pytest.approx(1.0)
    mc2 = score_interval([0.2, 0.4, 0.6])  # mean 0.4, sd 0.2
    assert mc2.method == "normal"
    assert mc2.half_width == pytest.approx(Z95 * 0.2 / math.sqrt(3))
    assert math.isnan(score_interval([0.3]).half_width)
    with pytest.raises(ValueError, match="non-empty"):
        score_interval([])


def test_paired_difference_by_hand():
    # 0 / 1 scores: Bonett-Price. One example lost, one gained of 5: p_lost = p_gained = (1 + 1) / 7, centre 0,
    # se = sqrt((2/7 + 2/7 - 0) / 7) = 2 / 7
    base, model = [1, 1, 0, 1, 0], [1, 0, 0, 1, 1]
    d = paired_difference(base, model)
    assert d.value == 0.0 and d.n == 5 and d.method == "paired Bonett-Price"
    assert (d.low, d.high) == pytest.approx((-Z95 * 2 / 7, Z95 * 2 / 7))
    # two models that agree on all 16 episodes: not [0, 0], but +- z sqrt((2/18) / 18)
    same = paired_difference([1] * 16, [1] * 16)
    assert same.value == 0.0 and same.half_width == pytest.approx(Z95 * math.sqrt(2 / 18 / 18))
    assert same.half_width > 0.1
    # scores in between: normal on the differences d = 0.1, 0, 0.2 (mean 0.1, sd 0.1)
    graded = paired_difference([0.2, 0.5, 0.9], [0.1, 0.5, 0.7])
    assert graded.method == "paired normal" and graded.value == pytest.approx(0.1)
    assert graded.half_width == pytest.approx(Z95 * 0.1 / math.sqrt(3))
    assert paired_difference([1, 0, 1], [1, 0]).n == 2  # the examples both measured
    # probes are disjoint examples: standard errors add in quadrature, the mean divides by the probe count
    both = mean_of_probes([paired_difference([1, 0, 1], [0, 0, 1]), d])
    assert both.value == pytest.approx(1 / 6)
    assert both.half_width == pytest.approx(
        math.hypot(paired_difference([1, 0, 1], [0, 0, 1]).half_width, d.half_width) / 2
    )


def test_paired_interval_is_narrower_than_unpaired_on_correlated_results_and_covers():
    rng = np.random.default_rng(0)
    base = (rng.random(2000) < 0.6).astype(float)
    flips = rng.random(2000) < 0.1  # the fine-tuned model changes 10 % of its answers
    model = np.where(flips, 1 - base, base)
    paired, unpaired = paired_difference(base, model), unpaired_difference(base, model)
    assert paired.value == pytest.approx(unpaired.value)
    assert paired.half_width < 0.5 * unpaired.half_width
    # over many such experiments the paired interval covers the true difference about 95 % of the time
    p_base, p_lose, p_gain = 0.6, 0.15, 0.05
    truth = p_base * p_lose - (1 - p_base) * p_gain
    covered = 0
    for _ in range(1000):
        b = rng.random(400) < p_base
        m = np.where(b, rng.random(400) >= p_lose, rng.random(400) < p_gain)
        i = paired_difference(b.astype(float), m.astype(float))
        covered += i.low <= truth <= i.high
    assert 0.93 <= covered / 1000 <= 0.97


def test_forgetting_intervals_pair_shared_probes_and_skip_missing_data():
    base = {"a": [1, 1, 0, 1], "b": [0, 1, 1, 1]}
    model = {"a": [1, 0, 0, 1], "b": [0, 1, 1, 0], "c": [1, 1]}
    out = forgetting_intervals(base, model)
    assert set(out) == {"a", "b", "mean"} and out["mean"].value == pytest.approx(0.25)
    assert forgetting_intervals({}, model) == {}


def test_paired_size_under_the_stated_assumption_and_from_a_model():
    base = [0.0, 1.0] * 500  # p = 0.5: Var = 0.25 (x 1000 / 999 unbiased)
    variance = 2 * 0.25 * 0.25 * 1000 / 999
    assert paired_size(base, 0.02, churn=0.25) == math.ceil(Z95**2 * variance / 0.02**2) == 1202
    assert paired_size(base, 0.02, churn=1.0) > paired_size(base, 0.02, churn=0.1)
    model = list(base)
    model[:100] = [1 - v for v in model[:100]]  # 100 changed answers, half won, half lost
    d = np.array(base) - np.array(model)
    assert paired_size(base, 0.02, model=model) == math.ceil(Z95**2 * d.var(ddof=1) / 0.02**2)
    with pytest.raises(ValueError, match="churn"):
        paired_size(base, churn=0)


def test_interval_summary_adds_the_new_task_only_where_kept():
    from vla_razor.analysis.intervals import interval_summary, wilson

    base, model = {"a": [1, 1, 0, 1]}, {"a": [1, 0, 0, 1]}
    out = interval_summary(base, model)
    assert set(out) == {"prior", "base_prior", "forgetting"}  # the LLM's: no new-task results kept
    out = interval_summary(base, model, [0, 0, 1, 0], [1, 1, 1, 0])
    assert out["new_task"]["value"] == 0.75 and out["new_task"]["method"] == "wilson"
    assert (out["base_new_task"]["low"], out["base_new_task"]["high"]) == pytest.approx(wilson(1, 4))
    assert out["forgetting"]["a"]["value"] == pytest.approx(0.25)
