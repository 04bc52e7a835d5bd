"""The learning curve of a run cut before its end (a machine taken mid-run): no summary.json yet, so the base's
scores (step 0) come from its mid-training points."""

from __future__ import annotations

import json
from pathlib import Path

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
