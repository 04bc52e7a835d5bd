"""Fine-tuning runs per minute on ParityMNIST: a stack of M runs trained at once vs one run at a time.

    python bench/toy_runs_per_minute.py [--config configs/toy_parity_mnist.yaml] [--models 30] [--out FILE]

Both paths do the same work per run (1 epoch, the config's checkpoints and predictors), in one process, so
the ratio is what the batching buys on this machine. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from vla_razor.config import load_config
from vla_razor.runs import atomic_write_json
from vla_razor.toy.config import ToyConfig
from vla_razor.toy.data import load_toy_data
from vla_razor.toy.sweep import set_threads
from vla_razor.toy.train import BaseReference, RunSpec, finetune_group, pretrain


def time_group(runs: list[RunSpec], base: BaseReference, data, cfg) -> float:
    started = time.perf_counter()
    finetune_group(runs, base, data, cfg.finetune, progress=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/toy_parity_mnist.yaml")
    parser.add_argument("--models", type=int, default=30, help="runs in the batched stack (the sweep's group size)")
    parser.add_argument("--singles", type=int, default=2, help="runs timed one at a time")
    parser.add_argument("--out", default="docs/results/toy/bench.json")
    args = parser.parse_args()

    cfg = load_config(ToyConfig, args.config)
    set_threads(cfg.threads)
    d = cfg.data
    data = load_toy_data(d.pretrain_per_task, d.parity_test, d.fashion_test, d.fashion_dir, d.seed)
    base = BaseReference.build(pretrain(cfg.pretrain, data, progress=False), data, cfg.finetune)
    lrs = cfg.sweep.learning_rates()

    rows = []
    for method in ("sft1", "grpo"):
        runs = [RunSpec(method, lrs[i % len(lrs)], "constant", 1, 0) for i in range(args.models)]
        batched = time_group(runs, base, data, cfg)
        single = sum(time_group([run], base, data, cfg) for run in runs[: args.singles]) / args.singles
        rows.append({
            "method": method,
            "batched_models": args.models,
            "batched_seconds": batched,
            "batched_runs_per_min": args.models / batched * 60,
            "single_seconds_per_run": single,
            "single_runs_per_min": 60 / single,
            "speedup": (args.models / batched) / (1 / single),
        })

    print(f"{'method':<8} {'batched runs/min':>17} {'one-at-a-time runs/min':>23} {'speedup':>8}")
    for r in rows:
        print(f"{r['method']:<8} {r['batched_runs_per_min']:>17.1f} {r['single_runs_per_min']:>23.1f} {r['speedup']:>7.1f}x")
    result = {
        "what": "ParityMNIST fine-tuning runs per minute (1 epoch, checkpoints and all predictors included)",
        "config": args.config,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    print(json.dumps({r["method"]: round(r["speedup"], 2) for r in rows}))


if __name__ == "__main__":
    main()
