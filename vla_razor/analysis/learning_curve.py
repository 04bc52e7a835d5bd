"""A training run's learning curve, read from its folder: per iteration (RL) or update (SFT), the training
success, the live forward KL to the base, and the evaluations made during training.

    vla-razor curve runs/<experiment>/runs/<run> --out docs/results/robot/learning_curve

writes ``learning_curve.json`` (the rows below, plus where they came from) and ``learning_curve.png`` (success
over the top panel, forward KL below). Sources, all written by the trainers into the run folder:
- ``metrics.jsonl`` split ``train``: ``rollout_success`` (robot RL: the iteration's sampled episodes), ``env_steps``;
  ``reward`` (LLM GRPO / 1-0: the update's sampled groups' mean reward, as ``rollout_reward``);
- ``metrics.jsonl`` split ``live``: ``forward_kl`` (``eval.kl_every``: KL(pi0 || pi) on the fixed frames);
- ``points.jsonl`` (``rl.eval_every``): the evaluation's new-task success, probes and predictors;
- ``summary.json``: the final evaluation, with the base's own scores (step 0 of the curve; a run cut before its
  end takes them from its first point).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from vla_razor.runs import atomic_write_json, jsonl_exists, read_jsonl

CURVE_JSON = "learning_curve.json"
CURVE_PNG = "learning_curve.png"


class CurveError(ValueError):
    """The folder is not a run folder a curve can be read from."""


def read_curve(run_dir: Path) -> dict[str, Any]:
    """The curve of one run folder: {"run", "method", "train": [...], "evaluations": [...]}."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if not jsonl_exists(metrics_path):
        raise CurveError(f"{run_dir}: no metrics.jsonl (not a run folder, or the run has not logged yet)")
    rows = read_jsonl(metrics_path)
    by_step: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.get("split") == "train" and r.get("name") in ("rollout_success", "env_steps", "updates", "loss"):
            by_step.setdefault(int(r["step"]), {})[r["name"]] = float(r["value"])
        elif r.get("split") == "train" and r.get("name") == "reward":  # the LLM side's sampled groups (GRPO, 1-0)
            by_step.setdefault(int(r["step"]), {})["rollout_reward"] = float(r["value"])
        elif r.get("split") == "live" and r.get("name") == "forward_kl":
            by_step.setdefault(int(r["step"]), {})["live_forward_kl"] = float(r["value"])
    train = [{"step": step, **values} for step, values in sorted(by_step.items())]
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    points_path = run_dir / "points.jsonl"
    points = read_jsonl(points_path) if jsonl_exists(points_path) else []
    evaluations: list[dict[str, Any]] = []
    # the base's scores (step 0): the summary's, or, for a run cut before its end, its first mid-training point's
    base = next((p["base"] for p in ([summary] if summary else []) + points if p.get("base")), None)
    if base is not None:
        evaluations.append(
            {
                "step": 0,
                "new_task": base.get("new_task"),
                "prior": base.get("prior", {}),
                "forward_kl": 0.0,
                "model": "base",
            }
        )
    if summary is not None:
        points.append(summary)
    for p in points:
        evaluations.append(
            {
                "step": int(p["step"]),
                "new_task": p.get("new_task"),
                "prior": p.get("prior", {}),
                "forward_kl": p.get("predictors", {}).get("forward_kl"),
                "model": "final" if p is summary else "checkpoint",
            }
        )
    if not train and not evaluations:
        raise CurveError(f"{run_dir}: metrics.jsonl has no training success, live KL or evaluations to plot")
    method = next((p.get("method") for p in points if p.get("method")), None)  # the summary is the last point
    config = _read_config(run_dir)
    # LLM points name their task; robot runs' config.yaml does (e.g. pick_can)
    task = next((p["task"] for p in points if isinstance(p.get("task"), str)), config.get("task"))
    return {
        "run": run_dir.name,
        "method": method,
        "new_task_name": task if isinstance(task, str) else "new task",
        "eval_temperature": _eval_temperature(config),
        **_placements(config),
        "train": train,
        "evaluations": evaluations,
    }


def _read_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.yaml ({} when absent: an older or foreign run folder)."""
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    return config if isinstance(config, dict) else {}


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name)
    return section if isinstance(section, dict) else {}


def _eval_temperature(config: dict[str, Any]) -> float:
    """The evaluation's decoding temperature (0, greedy, when the config says nothing)."""
    return float(_section(config, "eval").get("temperature", 0.0) or 0.0)


def _placements(config: dict[str, Any]) -> dict[str, str]:
    """Where RL's training rollouts and the new-task evaluation put the object, in words: on the paper's protocol
    RL practises 100 fixed grid placements and is scored on 100 uniform ones, so the two curves differ by how far
    what is learned transfers between placements, and the plot must say which is which."""
    rl, evaluation = _section(config, "rl"), _section(config, "eval")
    region = config.get("region")  # a part of the task's region (robot `region`); both sets lie in it
    within = ""
    if isinstance(region, list) and len(region) == 2 and all(isinstance(r, list) and len(r) == 2 for r in region):
        (x0, x1), (y0, y1) = region
        within = f" in x [{x0:g}, {x1:g}], y [{y0:g}, {y1:g}] m"
    out = {}
    grid = rl.get("grid")
    if rl.get("placements") in ("grid", "uniform") and isinstance(grid, list) and len(grid) == 2:
        n = int(grid[0]) * int(grid[1])
        out["train_placements"] = (
            f"the {grid[0]} x {grid[1]} grid's {n} fixed placements"
            if rl["placements"] == "grid"
            else f"{n} placements drawn afresh each iteration"
        ) + within
    if evaluation.get("pick_can_placements") in ("grid", "uniform") and evaluation.get("pick_can_episodes"):
        out["eval_placements"] = (
            f"{evaluation['pick_can_episodes']} uniform placements"
            if evaluation["pick_can_placements"] == "uniform"
            else "the grid's placements"
        ) + within
    return out


PROBE_MARKERS = ("^", "v", "d", "<", ">", "p", "h", "*")
PROBE_COLORS = ("C1", "C3", "C4", "C5", "C6", "C7", "C8", "C9")  # not C0 / C2: training and the new task


def success_series(curve: dict[str, Any]) -> list[tuple[str, list[tuple[int, float]], dict[str, Any]]]:
    """The top panel's lines, (label, [(step, value)], style): training success or reward, the new task's
    evaluation, and every probe (however many: the LLM sweep has seven)."""
    series = []
    train = curve["train"]
    evals = curve["evaluations"]
    rollout = [(t["step"], t["rollout_success"]) for t in train if "rollout_success" in t]
    if rollout:
        where = f"; {curve['train_placements']}" if curve.get("train_placements") else ""
        series.append((f"training rollouts (sampled{where})", rollout, {"fmt": "o-", "color": "tab:blue"}))
    reward = [(t["step"], t["rollout_reward"]) for t in train if "rollout_reward" in t]
    if reward:
        series.append(("training reward (sampled groups)", reward, {"fmt": "-", "color": "tab:blue", "alpha": 0.5}))
    scored = [(e["step"], e["new_task"]) for e in evals if e.get("new_task") is not None]
    if scored:
        decoding = "greedy" if not curve.get("eval_temperature") else f"sampled at T={curve['eval_temperature']:g}"
        where = f"; {curve['eval_placements']}" if curve.get("eval_placements") else ""
        name = str(curve.get("new_task_name") or "new task").replace("_", "-")
        series.append((f"evaluation: {name} ({decoding}{where})", scored, {"fmt": "s-", "color": "tab:green"}))
    probes = sorted({name for e in evals for name in e.get("prior", {})})
    for k, probe in enumerate(probes):
        values = [(e["step"], e["prior"][probe]) for e in evals if probe in e.get("prior", {})]
        style = {"fmt": PROBE_MARKERS[k % len(PROBE_MARKERS)] + "--", "color": PROBE_COLORS[k % len(PROBE_COLORS)]}
        style["alpha"] = 0.7
        series.append((f"evaluation: {probe.replace('_', ' ')}", values, style))
    return series


def plot_curve(curve: dict[str, Any], path: Path) -> Path:
    """Success (training rollouts, evaluations, probes) over steps, and forward KL below."""
    import matplotlib  # heavy: only when a curve is plotted

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    train = curve["train"]
    evals = curve["evaluations"]
    series = success_series(curve)
    for label, values, style in series:
        style = dict(style)
        top.plot(*zip(*values), style.pop("fmt"), label=label, **style)
    top.set_ylabel("success")
    top.set_ylim(-0.02, 1.02)
    top.grid(alpha=0.3)
    top.legend(fontsize=7, loc="best", ncol=2 if len(series) > 5 else 1)
    top.set_title(f"{curve['run']}: learning curve", fontsize=10)
    live = [(t["step"], t["live_forward_kl"]) for t in train if "live_forward_kl" in t]
    if live:
        bottom.plot(*zip(*live), "o-", color="tab:red", label="live forward KL (fixed frames)")
    kl_evals = [
        (e["step"], e["forward_kl"])
        for e in evals
        if e.get("forward_kl") is not None and math.isfinite(e["forward_kl"])
    ]
    if kl_evals:
        bottom.plot(*zip(*kl_evals), "s", color="darkred", label="evaluation forward KL")
    bottom.set_ylabel("KL(pi0 || pi), nats")
    bottom.set_xlabel("iteration" if curve.get("method") == "rl" else "step")
    bottom.grid(alpha=0.3)
    if live or kl_evals:
        bottom.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_curve(run_dir: Path, out_dir: Path, command: str | None = None) -> tuple[Path, Path]:
    """learning_curve.json + .png of `run_dir` into `out_dir`; `command` is recorded beside the data."""
    curve = read_curve(run_dir)
    if command:
        curve["command"] = command
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / CURVE_JSON
    atomic_write_json(json_path, curve)
    return json_path, plot_curve(curve, out_dir / CURVE_PNG)
