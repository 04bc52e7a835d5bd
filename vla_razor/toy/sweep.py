"""The ParityMNIST sweep's grid (Appendix B.3: every method x learning rate x schedule x epochs x seed) and its
report. The sweep itself runs through vla_razor/sweep/sweep.py, the one sweep path (`vla-razor toy sweep`
in this process, `vla-razor sweep` on Ray).

Runs that share (method, epochs, seed) train together as one stacked model. A run whose folder has a
summary.json is finished and skipped, so an interrupted sweep picks up where it stopped; a group with any
unfinished run is retrained (it is deterministic, so finished runs in it would come out the same).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import torch

from vla_razor.runs import atomic_write_json, read_jsonl
from vla_razor.toy.config import ToyConfig
from vla_razor.toy.train import RunSpec


def sweep_groups(cfg: ToyConfig) -> list[list[RunSpec]]:
    """The sweep's runs, as the stacks that train together (same method, epochs and seed)."""
    groups = []
    for method, epochs, seed in itertools.product(cfg.sweep.methods, cfg.sweep.epochs, cfg.sweep.seeds):
        runs = [
            RunSpec(method, lr, schedule, epochs, seed)
            for lr, schedule in itertools.product(cfg.sweep.learning_rates(), cfg.sweep.schedules)
        ]
        size = cfg.sweep.models_per_stack or len(runs)
        groups.extend(runs[i : i + size] for i in range(0, len(runs), size))
    return groups


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))


def sweep_throughput(experiment_dir: Path) -> dict:
    """Runs per minute over every group this experiment has trained (timing.jsonl), resumes included."""
    path = experiment_dir / "timing.jsonl"
    rows = read_jsonl(path) if path.is_file() else []
    runs = sum(r["runs"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {"runs_timed": runs, "train_seconds": seconds, "runs_per_min": runs / (seconds / 60) if seconds else None}


def write_toy_report(cfg: ToyConfig, out_dir: Path | None = None) -> Path:
    from vla_razor.analysis.report import write_report  # matplotlib: only when a report is written

    out_dir = out_dir or cfg.experiment_dir / "report"
    throughput = sweep_throughput(cfg.experiment_dir)
    result = write_report(
        cfg.experiment_dir / "runs",
        out_dir,
        title=f"ParityMNIST forgetting report ({cfg.experiment})",
        extra={"runs_per_min": throughput["runs_per_min"], "train_seconds": throughput["train_seconds"]},
    )
    report = json.loads(result.summary_path.read_text())
    summary = {
        "r2": {k: v for k, v in result.r2.items()},
        **{key: report[key] for key in ("r2_loro", "r2_std", "r2_n", "r2_n_runs")},  # never an R^2 without its n
        "runs": result.runs,
        "points": result.points,
        "runs_per_min": throughput["runs_per_min"],
    }
    atomic_write_json(out_dir / "summary.json", summary)
    return out_dir
