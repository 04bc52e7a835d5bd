"""Synthetic run folders, written to disk exactly as trainers write them (summary.json + points.jsonl)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

BASE = {"new_task": 0.2, "prior": {"probe_a": 0.8, "probe_b": 0.7}}


def planted_forgetting(kl: float) -> float:
    """The law the planted runs obey exactly."""
    return 0.3 * kl**2 + 0.1 * kl


def make_record(
    method: str, step: int, new_task: float, kl: float, noisy: float, *, with_forgetting: bool = True
) -> dict:
    """One point obeying forgetting = 0.3 kl^2 + 0.1 kl; 'tv' carries a noisy copy of kl."""
    forgetting = planted_forgetting(kl)
    record = {
        "domain": "toy",
        "method": method,
        "hparams": {"lr": 1e-3},
        "seed": 0,
        "step": step,
        "new_task": new_task,
        "prior": {probe: value - forgetting for probe, value in BASE["prior"].items()},
        "predictors": {"forward_kl": kl, "tv": noisy, "weight_l1": 10.0 * kl},
        "base": BASE,
    }
    if with_forgetting:
        record["forgetting"] = forgetting
    return record


def write_run(run_dir: Path, summary: dict | None, mid_points: list[dict] | None = None) -> Path:
    """Write a run folder; summary=None leaves it unfinished (metrics.jsonl only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "split": "train", "name": "loss", "value": 1.0}\n')
    if mid_points is not None:
        (run_dir / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in mid_points))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def planted_runs(tmp_path: Path) -> Path:
    """Two methods x 3 runs x (3 mid-training + 1 final) points, plus one unfinished run.

    RL moves little in KL and keeps its prior; SFT reaches similar new-task performance with large KL.
    Every point obeys the planted quadratic law exactly in forward_kl; 'tv' is kl plus noise.
    """
    rng = np.random.default_rng(0)
    runs_dir = tmp_path / "runs"
    for method, kl_scale in (("rl", 0.05), ("sft", 0.6)):
        for run_index, lr in enumerate((1e-4, 3e-4, 1e-3)):
            records = []
            for step in (100, 200, 300, 400):
                progress = step / 400 * (run_index + 1) / 3
                kl = kl_scale * progress * (1.0 + 0.3 * run_index)
                new_task = 0.2 + 0.7 * progress
                noisy = kl + float(rng.normal(0.0, 0.15))
                records.append(make_record(method, step, new_task, kl, noisy, with_forgetting=step != 200))
            for record in records:
                record["hparams"] = {"lr": lr}
            write_run(runs_dir / "exp" / f"{method}_lr{lr:g}", records[-1], records)
    write_run(runs_dir / "exp" / "sft_crashed", None, [make_record("sft", 100, 0.5, 0.1, 0.1)])
    return runs_dir


@dataclass(frozen=True)
class Synth:
    """The helpers above, handed to tests as a fixture (test folders are not importable packages)."""

    base: dict
    make_record: Callable[..., dict]
    write_run: Callable[..., Path]
    planted_forgetting: Callable[[float], float]


@pytest.fixture
def synth() -> Synth:
    return Synth(base=BASE, make_record=make_record, write_run=write_run, planted_forgetting=planted_forgetting)
