"""The ParityMNIST sweep of Appendix B.3: every method x learning rate x schedule x epochs x seed.

Runs that share (method, epochs, seed) train together as one stacked model. A run whose folder has a
summary.json is finished and skipped, so an interrupted sweep picks up where it stopped; a group with any
unfinished run is retrained (it is deterministic, so finished runs in it would come out the same).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vla_razor.runs import RunFolder, atomic_write_json, read_jsonl
from vla_razor.toy.config import ToyConfig
from vla_razor.toy.data import load_toy_data
from vla_razor.toy.train import NOT_IN_RUN_IDENTITY, RunSpec, load_base_for_experiment, run_config, run_group


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


@dataclass
class SweepResult:
    runs_total: int
    runs_trained: int
    runs_skipped: int
    seconds: float
    runs_per_min: float | None
    report_dir: Path | None


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))


def run_sweep(cfg: ToyConfig, progress: bool = True) -> SweepResult:
    set_threads(cfg.threads)
    groups = sweep_groups(cfg)
    for group in groups:  # a run folder made with other settings is refused, not resumed nor called finished
        for r in group:
            RunFolder(cfg.experiment_dir / "runs" / r.name).check_settings(run_config(cfg, r), NOT_IN_RUN_IDENTITY)
    todo = [g for g in groups if not all(RunFolder(cfg.experiment_dir / "runs" / r.name).is_finished() for r in g)]
    total = sum(len(g) for g in groups)
    trained = sum(len(g) for g in todo)
    timing_path = cfg.experiment_dir / "timing.jsonl"
    seconds = 0.0
    if todo:
        data = load_toy_data(
            cfg.data.pretrain_per_task, cfg.data.parity_test, cfg.data.fashion_test, cfg.data.fashion_dir, cfg.data.seed
        )
        base = load_base_for_experiment(cfg, data, progress)
        for group in tqdm(todo, desc=f"sweep {cfg.experiment}", disable=not progress):
            started = time.perf_counter()
            run_group(cfg, group, base, data, progress)
            elapsed = time.perf_counter() - started
            seconds += elapsed
            with open(timing_path, "a") as f:
                f.write(json.dumps({"method": group[0].method, "epochs": group[0].epochs, "seed": group[0].seed,
                                    "runs": len(group), "seconds": elapsed}) + "\n")
    report_dir = None
    if cfg.report:
        report_dir = write_toy_report(cfg)
    return SweepResult(
        runs_total=total,
        runs_trained=trained,
        runs_skipped=total - trained,
        seconds=seconds,
        runs_per_min=trained / (seconds / 60) if seconds > 0 else None,
        report_dir=report_dir,
    )


def sweep_throughput(experiment_dir: Path) -> dict:
    """Runs per minute over every group this experiment has trained (timing.jsonl), resumes included."""
    path = experiment_dir / "timing.jsonl"
    rows = read_jsonl(path) if path.is_file() else []
    runs = sum(r["runs"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {"runs_timed": runs, "train_seconds": seconds, "runs_per_min": runs / (seconds / 60) if seconds else None}


def write_toy_report(cfg: ToyConfig, out_dir: Path | None = None) -> Path:
    from vla_razor.analysis.report import write_report

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
