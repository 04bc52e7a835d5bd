from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vla_razor.analysis.intervals import paired_difference
from vla_razor.analysis.report import write_report

from tests.analysis.conftest import BASE, planted_forgetting


def test_write_report_on_two_methods(planted_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = write_report(planted_runs, out, title="Planted law", n_boot=20, extra={"steps_per_s": 123.4})

    names = {
        "tradeoff.png",
        "forgetting_vs_forward_kl.png",
        "new_task_vs_forward_kl.png",
        "forgetting_vs_tv.png",
        "forgetting_vs_weight_l1.png",
        "report.md",
        "report.html",
        "report.json",
    }
    assert names <= {path.name for path in out.iterdir()}
    assert (result.markdown_path, result.html_path, result.summary_path) == (
        out / "report.md",
        out / "report.html",
        out / "report.json",
    )
    assert (result.runs, result.points) == (6, 24)
    assert set(result.r2) == {"forward_kl", "tv", "weight_l1"}
    assert result.r2["forward_kl"] == pytest.approx(1.0, abs=1e-9)

    summary = json.loads(result.summary_path.read_text())
    assert list(summary["r2"]) == ["forward_kl", "tv", "weight_l1"]
    assert set(summary["r2_std"]) == set(summary["r2"]) == set(summary["r2_loro"])
    assert summary["r2_n_runs"]["forward_kl"] == 6 and summary["r2_n"]["forward_kl"] == 24
    assert summary["r2_loro"]["forward_kl"] == pytest.approx(1.0, abs=1e-9)
    assert sum(summary["r2_boot"]["forward_kl"].values()) == 20
    assert "| forward_kl | 1.000 +- 0.000 | 1.000 | 6 | 24 |" in result.markdown_path.read_text()
    assert summary["r2"]["forward_kl"] == pytest.approx(1.0, abs=1e-9)
    assert (summary["n_points"], summary["runs"], summary["unfinished_runs"]) == (24, 6, 1)
    # the unfinished run's latest evaluation is listed apart, in no fit (n stays 24 above)
    assert [(p["run"], p["step"]) for p in summary["in_progress"]] == [("exp/sft_crashed", 100)]
    markdown = result.markdown_path.read_text()
    assert "## Runs in progress (not in the analysis)" in markdown
    assert "| exp/sft_crashed | sft | 100 | 0.500 |" in markdown
    assert summary["steps_per_s"] == 123.4
    assert set(summary["methods"]) == {"rl", "sft"}
    rl = summary["methods"]["rl"]
    assert (rl["runs"], rl["points"]) == (3, 12)
    assert 1 <= rl["near_frontier"] <= 12
    assert rl["best_new_task"] == pytest.approx(0.9)
    assert set(rl["exp_fit"]) == {"a", "b", "c"}
    assert "24 points" in summary["pooled"] and "mid-training" in summary["pooled"]
    assert summary["forecast"]["holdout_mae"] == pytest.approx(0.0, abs=1e-9), "the planted law forecasts held-out runs"
    assert summary["forecast"]["runs"] == 6 and summary["forecast"]["folds"] == 5
    assert "Forecast: retention from forward KL" in result.markdown_path.read_text()

    # RL keeps its prior (tiny KL), SFT forgets: the comparison must put RL's frontier above SFT's.
    comparison = summary["frontier_comparison"]
    assert comparison["levels"]
    assert all(r > s for r, s in zip(comparison["values"]["rl"], comparison["values"]["sft"]))
    assert "the fitted frontier of rl lies above that of sft" in comparison["sentence"]

    markdown = result.markdown_path.read_text()
    page = result.html_path.read_text()
    # the models table: the base, then each run's final model with its probes, forgetting and forward KL
    models = markdown_table(result.markdown_path.read_text(), "## Models")
    assert models[0][:3] == ["model", "method", "new task"] and models[0][-2:] == ["forgetting", "forward_kl"]
    assert models[1][:3] == ["base", "-", f"{BASE['new_task']:.3f}"] and len(models) == 1 + 1 + 6
    for row in models[2:]:
        record = json.loads((planted_runs / row[0] / "summary.json").read_text())
        assert row[1] == record["method"] and float(row[-1]) == pytest.approx(
            record["predictors"]["forward_kl"], abs=1e-4
        )
        forgetting, interval = row[-2].split(" ", 1)
        assert float(forgetting) == pytest.approx(planted_forgetting(record["predictors"]["forward_kl"]), abs=1e-3)
        assert interval == "[n/a]" and all(cell.endswith("[n/a]") for cell in row[3:-2]), "no per-example scores"

    for text in (
        "# Planted law",
        "| forward_kl | 1.000 +- 0.000 | 1.000 | 6 | 24 | 20 / 0 | 0.96 |",
        "Run facts",
        "steps_per_s",
        "1 unfinished runs (no summary.json) were ignored",
        "![",
        "(tradeoff.png)",
    ):
        assert text in markdown, text
    for text in (
        "<h1>Planted law</h1>",
        "<td>forward_kl</td>",
        "steps_per_s",
        'src="tradeoff.png"',
        comparison["sentence"].split(",")[0],
    ):
        assert text in page, text
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # self-contained apart from the PNGs
    for image in re.findall(r'src="([^"]+)"', page):
        assert (out / image).is_file()


def test_write_report_without_finished_runs_says_so(tmp_path: Path, synth) -> None:
    synth.write_run(tmp_path / "runs" / "crashed", None)
    with pytest.raises(ValueError, match="1 unfinished runs ignored"):
        write_report(tmp_path / "runs", tmp_path / "out")


def test_frontier_comparison_for_three_methods_and_disjoint_ranges() -> None:
    from vla_razor.analysis.pareto import ExponentialFit
    from vla_razor.analysis.report import MethodSummary, _compare_frontiers

    def flat(low: float, high: float, level: float) -> MethodSummary:
        return MethodSummary(
            runs=1,
            points=2,
            near_frontier=2,
            best_new_task=high,
            retention_at_best_new_task=level,
            frontier_range=(low, high),
            exp_fit=ExponentialFit(a=level, b=0.0, c=0.0),
        )

    three = _compare_frontiers({"rl": flat(0.2, 0.8, 0.7), "sft": flat(0.3, 0.9, 0.6), "simpo": flat(0.1, 0.7, 0.65)})
    assert three.levels == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert three.values["simpo"] == pytest.approx([0.65] * 5)
    assert "rl at 5 of 5 levels" in three.sentence and "rl 0.700, simpo 0.650, sft 0.600" in three.sentence
    disjoint = _compare_frontiers({"rl": flat(0.2, 0.3, 0.7), "sft": flat(0.5, 0.9, 0.6)})
    assert disjoint.levels == [] and "no common new-task range" in disjoint.sentence


def markdown_table(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` (header row first, separator dropped)."""
    lines = markdown.split(heading, 1)[1].splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("#")), len(lines))
    rows = [line for line in lines[:end] if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_models_table_prints_intervals_from_per_example_scores(planted_runs: Path, tmp_path: Path) -> None:
    """A run that kept per-example scores (and its base's) gets Wilson intervals beside each probe score and paired
    intervals beside its forgetting; the chat-template probes are named."""
    from vla_razor.analysis.intervals import forgetting_intervals, score_interval

    base_examples = {"probe_a": [1.0, 1.0, 1.0, 0.0] * 50, "probe_b": [1.0, 0.0] * 100}
    examples = {"probe_a": [0.0] * 20 + base_examples["probe_a"][20:], "probe_b": list(base_examples["probe_b"])}
    mean = {p: sum(v) / len(v) for p, v in examples.items()}
    base_mean = {p: sum(v) / len(v) for p, v in base_examples.items()}
    path = planted_runs / "exp" / "sft_lr0.001" / "summary.json"
    record = json.loads(path.read_text())
    record.update(
        prior=mean,
        forgetting=sum(base_mean[p] - mean[p] for p in mean) / 2,
        prior_examples=examples,
        chat_template={"probe_a": False, "probe_b": True},
        base={"new_task": BASE["new_task"], "prior": base_mean, "prior_examples": base_examples},
    )
    path.write_text(json.dumps(record))
    result = write_report(planted_runs, tmp_path / "report", n_boot=5)
    markdown = result.markdown_path.read_text()
    models = {row[0]: row for row in markdown_table(markdown, "## Models")}
    a, b = score_interval(examples["probe_a"]), score_interval(base_examples["probe_b"])
    assert models["exp/sft_lr0.001"][3] == f"{mean['probe_a']:.3f} [{a.low:.3f}, {a.high:.3f}]"
    assert models["base"][4] == f"0.500 [{b.low:.3f}, {b.high:.3f}]"
    paired = forgetting_intervals(base_examples, examples)
    assert (
        models["exp/sft_lr0.001"][-2]
        == f"{record['forgetting']:+.3f} [{paired['mean'].low:+.3f}, {paired['mean'].high:+.3f}]"
    )
    assert models["exp/sft_lr0.0001"][-2].endswith("[n/a]"), "older runs: n/a"
    per_probe = {row[0]: row for row in markdown_table(markdown, "## Forgetting per probe")}
    row = per_probe["exp/sft_lr0.001"]
    assert row[2] == f"+0.075 [{paired['probe_a'].low:+.3f}, {paired['probe_a'].high:+.3f}]"
    # the same answers: no forgetting measured, and an interval of honest width around it, not [0, 0]
    same = paired["probe_b"]
    assert row[3] == f"+0.000 [{same.low:+.3f}, {same.high:+.3f}]" and same.value == 0 and same.half_width > 0
    assert "Examples per probe: probe_a 200, probe_b 200." in markdown
    assert "chat template (as instruct models are used): probe_b; on plain text: probe_a." in markdown


def _episodes(successes: int, n: int, shift: int = 0) -> list[float]:
    """n 0/1 episode results with `successes` ones, rotated by `shift` (so two models share most episodes)."""
    values = [1.0] * successes + [0.0] * (n - successes)
    return values[shift:] + values[:shift]


def _robot_runs(
    runs_dir: Path,
    episode_sets: tuple[str, str] = ("e1", "e1"),
    picks: tuple[tuple[int, ...], tuple[int, ...]] = ((8, 12, 16), (8, 12, 16)),
) -> Path:
    """Two methods x 3 robot runs (`picks`: each run's pick-can successes of 20, per method), each summary holding
    per-episode results (20 episodes a task) the way robot/evaluate.py writes them; RL keeps more drawer episodes
    than SFT at the same pick-can success."""
    from tests.analysis.conftest import write_run

    n = 20
    base_examples = {"open_drawer": _episodes(16, n), "close_drawer": _episodes(18, n)}
    for (method, lost, episode_set), method_picks in zip(
        (("rl", 1, episode_sets[0]), ("sft", 4, episode_sets[1])), picks
    ):
        for k, picked in enumerate(method_picks):
            examples = {probe: _episodes(int(sum(v)) - lost * (k + 1) // 2, n) for probe, v in base_examples.items()}
            prior = {probe: sum(v) / n for probe, v in examples.items()}
            base_prior = {probe: sum(v) / n for probe, v in base_examples.items()}
            summary = {
                "domain": "robot",
                "method": method,
                "hparams": {"lr": 10.0**-k},
                "seed": 0,
                "step": 10,
                "new_task": picked / n,
                "prior": prior,
                "forgetting": sum(base_prior[p] - prior[p] for p in prior) / 2,
                "predictors": {"forward_kl": 0.01 * (k + 1) * lost},
                "base": {
                    "new_task": 0.2,
                    "prior": base_prior,
                    "new_task_examples": _episodes(4, n),
                    "prior_examples": base_examples,
                },
                "new_task_examples": _episodes(picked, n, shift=k),
                "prior_examples": examples,
                "episode_set": episode_set,
            }
            write_run(runs_dir / f"{method}_{k}", summary)
    return runs_dir


def test_robot_report_shows_episode_intervals_and_the_matched_comparison(tmp_path: Path) -> None:
    """Per-episode results give Wilson intervals beside every success rate (new task too), in episodes; at the
    matched levels each method's nearest frontier model is shown with its intervals, and RL minus SFT has the paired
    interval, computed here by hand."""
    from vla_razor.analysis.intervals import Z95, wilson

    result = write_report(_robot_runs(tmp_path / "runs"), tmp_path / "report", n_boot=5)
    markdown = result.markdown_path.read_text()
    models = {row[0]: row for row in markdown_table(markdown, "## Models")}
    low, high = wilson(12, 20)
    assert models["rl_1"][2] == f"0.600 [{low:.3f}, {high:.3f}]"
    low, high = wilson(4, 20)
    assert models["base"][2] == f"0.200 [{low:.3f}, {high:.3f}]"
    assert not any("n/a" in cell for row in models.values() for cell in row)
    assert "Wilson's score interval over its n episodes" in markdown and "paired over the same episodes" in markdown
    assert "Episodes per probe: close_drawer 20, open_drawer 20. Episodes of the new task: 20." in markdown
    assert "examples" not in markdown.split("## Models", 1)[1].split("## What was pooled")[0]

    matched = markdown_table(markdown, "Measured models at the matched levels")
    assert matched[0][-1] == "rl minus sft retention" and len(matched) > 1
    summary = json.loads(result.summary_path.read_text())["frontier_comparison"]["matched_models"]
    assert summary["difference"] == ["rl", "sft"]
    for i, row in enumerate(matched[1:]):
        rl, sft = summary["models"]["rl"][i], summary["models"]["sft"][i]
        assert row[1] == f"{rl['run']} @ 10" and row[4] == f"{sft['run']} @ 10"
        a = json.loads((tmp_path / "runs" / rl["run"] / "summary.json").read_text())["prior_examples"]
        b = json.loads((tmp_path / "runs" / sft["run"] / "summary.json").read_text())["prior_examples"]
        ses, means = [], []
        for probe in a:  # paired over the same episodes, 0 / 1: Bonett-Price (a pseudo-count in each discordant cell)
            n = len(a[probe])
            lost = sum(x == 1 and y == 0 for x, y in zip(a[probe], b[probe]))
            gained = sum(x == 0 and y == 1 for x, y in zip(a[probe], b[probe]))
            p_lost, p_gained = (lost + 1) / (n + 2), (gained + 1) / (n + 2)
            means.append((lost - gained) / n)
            ses.append(((p_lost + p_gained - (p_lost - p_gained) ** 2) / (n + 2)) ** 0.5)
        value, half = sum(means) / 2, Z95 * (ses[0] ** 2 + ses[1] ** 2) ** 0.5 / 2
        assert row[-1] == f"{value:+.3f} [{value - half:+.3f}, {value + half:+.3f}]"
        # the match itself: the two models' new-task difference, paired over the same episodes (here the same)
        gap = paired_difference(
            json.loads((tmp_path / "runs" / rl["run"] / "summary.json").read_text())["new_task_examples"],
            json.loads((tmp_path / "runs" / sft["run"] / "summary.json").read_text())["new_task_examples"],
        )
        assert row[-2] == f"{gap.value:+.3f} [{gap.low:+.3f}, {gap.high:+.3f}]" and gap.low <= 0 <= gap.high
        assert summary["new_task_differences"][i]["method"] == "paired Bonett-Price" and not summary["not_matched"][i]
        assert summary["differences"][i]["method"] == "paired Bonett-Price, mean of probes"
        assert rl["retention_interval"]["low"] < rl["retention"] < rl["retention_interval"]["high"]
    assert "not the choice of the frontier model among many" in markdown
    assert matched[0][-2] == "rl minus sft new task" and "matched within the noise of their episodes" in markdown

    # measured on other episodes: the difference is not paired, and says so
    result = write_report(_robot_runs(tmp_path / "other", ("e1", "e2")), tmp_path / "report2", n_boot=5)
    rows = markdown_table(result.markdown_path.read_text(), "Measured models at the matched levels")[1:]
    assert rows and all(row[-1].endswith("(unpaired)") for row in rows)


def test_the_matched_comparison_says_when_the_models_are_not_matched(tmp_path: Path) -> None:
    """SFT has no model near RL's pick-can levels (0.50-0.60): its nearest frontier model scores 0.85, so the rows
    whose new-task difference excludes 0 are marked (and only those), and the report says the retention gap there
    is not the method's alone (the committed robot report had SFT's 0.40 model stand for levels up to 0.52)."""
    result = write_report(_robot_runs(tmp_path / "runs", picks=((10, 11, 12), (2, 17))), tmp_path / "report", n_boot=5)
    markdown = result.markdown_path.read_text()
    rows = markdown_table(markdown, "Measured models at the matched levels")[1:]
    summary = json.loads(result.summary_path.read_text())["frontier_comparison"]["matched_models"]
    assert rows and all(row[4] == "sft_1 @ 10" for row in rows)
    gaps = summary["new_task_differences"]
    assert [row[-2].endswith("(not matched)") for row in rows] == summary["not_matched"]
    assert summary["not_matched"] == [g["high"] < 0 for g in gaps]  # rl 0.50-0.60 minus sft 0.85
    apart = sum(summary["not_matched"])
    assert 0 < apart < len(rows)  # the 0.50 model is 0.35 from SFT's, beyond noise; the 0.60 one is 0.25, within
    assert f"At {apart} of {len(rows)} levels it lies beyond its 95 % interval (marked not matched)" in markdown
