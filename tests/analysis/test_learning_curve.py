"""The learning curve of a run cut before its end (a machine taken mid-run): no summary.json yet, so the base's
scores (step 0) come from its mid-training points."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from vla_razor.analysis.learning_curve import read_curve, write_curve


def _point(step: int, new_task: float) -> dict:
    return {
        "domain": "robot",
        "method": "rl",
        "step": step,
        "new_task": new_task,
        "prior": {"open_drawer": 0.8},
        "predictors": {"forward_kl": 0.1 * step},
        "base": {"new_task": 0.36, "prior": {"open_drawer": 0.77}},
    }


def test_a_cut_run_starts_its_curve_at_the_base(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "rl_cut"
    run.mkdir(parents=True)
    rows = [{"step": s, "split": "train", "name": "rollout_success", "value": 0.4 + 0.01 * s} for s in (1, 2, 3, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "points.jsonl").write_text(json.dumps(_point(2, 0.5)) + "\n" + json.dumps(_point(4, 0.6)) + "\n")
    curve = read_curve(run)
    assert [(e["step"], e["model"], e["new_task"]) for e in curve["evaluations"]] == [
        (0, "base", 0.36),
        (2, "checkpoint", 0.5),
        (4, "checkpoint", 0.6),
    ]
    assert curve["evaluations"][0]["prior"] == {"open_drawer": 0.77} and curve["method"] == "rl"
    json_path, png_path = write_curve(run, tmp_path / "out")
    assert json.loads(json_path.read_text())["evaluations"][0]["model"] == "base" and png_path.stat().st_size > 10_000


def test_the_curve_names_where_training_and_evaluation_place_the_can(tmp_path: Path) -> None:
    """RL on the paper's grid is scored on uniform placements: the JSON (and the plot's legend) says which is which,
    and the part of the region both lie in where the run has one, from the run's config.yaml, so a gap between the
    two curves reads as transfer, not as noise."""
    run = tmp_path / "rl_grid"
    run.mkdir()
    rows = [{"step": s, "split": "train", "name": "rollout_success", "value": 0.4 + 0.1 * s} for s in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "points.jsonl").write_text(json.dumps(_point(2, 0.45)) + "\n")
    config = {
        "rl": {"placements": "grid", "grid": [10, 10]},
        "eval": {"pick_can_placements": "uniform", "pick_can_episodes": 100, "temperature": 1.0},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    curve = read_curve(run)
    assert curve["train_placements"] == "the 10 x 10 grid's 100 fixed placements"
    assert curve["eval_placements"] == "100 uniform placements" and curve["eval_temperature"] == 1.0
    config["rl"]["placements"] = "uniform"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_curve(run)["train_placements"] == "100 placements drawn afresh each iteration"
    config["region"] = [[-0.15, -0.05], [-0.08, 0.08]]  # a part of the can's region: both sets lie in it
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    within = " in x [-0.15, -0.05], y [-0.08, 0.08] m"
    assert read_curve(run)["train_placements"] == "100 placements drawn afresh each iteration" + within
    assert read_curve(run)["eval_placements"] == "100 uniform placements" + within
    (run / "config.yaml").unlink()  # an older run folder: no names, no error
    assert "train_placements" not in read_curve(run) and "eval_placements" not in read_curve(run)


def test_an_llm_run_plots_its_task_its_reward_and_every_probe(tmp_path: Path) -> None:
    """An LLM run's curve names its task (not pick-can), draws the sampled groups' reward, and every one of its
    seven probes (a fixed list of three line styles once dropped four of them without a word)."""
    from vla_razor.analysis.learning_curve import success_series

    probes = ["hellaswag", "winogrande", "mmlu", "arc_easy", "piqa", "sciq", "ifeval"]
    run = tmp_path / "grpo"
    run.mkdir()
    rows = [{"step": s, "split": "train", "name": "reward", "value": 0.1 * s} for s in range(5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    point = {
        "domain": "llm",
        "method": "grpo",
        "task": "arithmetic",
        "step": 4,
        "new_task": 0.8,
        "prior": {p: 0.5 for p in probes},
        "predictors": {"forward_kl": 20.0},
        "base": {"new_task": 0.27, "prior": {p: 0.5 for p in probes}},
    }
    (run / "points.jsonl").write_text(json.dumps(point) + "\n")
    curve = read_curve(run)
    assert curve["new_task_name"] == "arithmetic" and [t["rollout_reward"] for t in curve["train"]][-1] == 0.4
    labels = [label for label, _values, _style in success_series(curve)]
    assert labels[:2] == ["training reward (sampled groups)", "evaluation: arithmetic (greedy)"]
    assert labels[2:] == [f"evaluation: {p.replace('_', ' ')}" for p in sorted(probes)]
    colors = [style["color"] for _label, _values, style in success_series(curve)[2:]]
    assert len(set(colors)) == len(probes) and not {"tab:blue", "tab:green", "C0", "C2"} & set(colors)
    assert write_curve(run, tmp_path / "out")[1].stat().st_size > 10_000
