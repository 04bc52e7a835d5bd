"""Fine-tuning runs per minute on ParityMNIST as a function of stack size (runs trained as one model) and threads.

    python bench/toy_runs_per_minute.py [--config configs/toy_parity_mnist.yaml] [--runs 30]
        [--stack-sizes 1,5,15,30] [--threads 1,2] [--out docs/results/toy/bench.json]

Every cell trains the same `--runs` fine-tuning runs (1 epoch, the config's checkpoints and all predictors),
split into stacks of M, in one process, so the ratio to M=1 is what stacking buys on this machine. The
sweep's `sweep.models_per_stack` and `threads` defaults come from this table. Prints it and writes JSON.
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
from vla_razor.toy.train import BaseReference, RunSpec, finetune_group, pretrain


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/toy_parity_mnist.yaml")
    parser.add_argument("--runs", type=int, default=30, help="fine-tuning runs timed per cell")
    parser.add_argument("--stack-sizes", type=ints, default=[1, 5, 15, 30])
    parser.add_argument("--threads", type=ints, default=[1, 2])
    parser.add_argument("--methods", default="sft1,grpo")
    parser.add_argument("--out", default="docs/results/toy/bench.json")
    args = parser.parse_args()

    cfg = load_config(ToyConfig, args.config)
    torch.set_num_threads(max(args.threads))
    d = cfg.data
    data = load_toy_data(d.pretrain_per_task, d.parity_test, d.fashion_test, d.fashion_dir, d.seed)
    base = BaseReference.build(pretrain(cfg.pretrain, data, progress=False), data, cfg.finetune)
    lrs = cfg.sweep.learning_rates()

    rows = []
    for method in args.methods.split(","):
        runs = [RunSpec(method, lrs[i % len(lrs)], "constant", 1, 0) for i in range(args.runs)]
        for threads in args.threads:
            torch.set_num_threads(threads)
            for m in args.stack_sizes:
                started = time.perf_counter()
                for i in range(0, len(runs), m):
                    finetune_group(runs[i : i + m], base, data, cfg.finetune, progress=False)
                seconds = time.perf_counter() - started
                rows.append(
                    {
                        "method": method,
                        "threads": threads,
                        "models_per_stack": m,
                        "seconds": seconds,
                        "runs_per_min": len(runs) / seconds * 60,
                    }
                )
                print(f"{method:<6} threads={threads} M={m:<3} {rows[-1]['runs_per_min']:7.1f} runs/min", flush=True)
    for r in rows:
        ref = next(
            x
            for x in rows
            if x["method"] == r["method"]
            and x["threads"] == r["threads"]
            and x["models_per_stack"] == min(args.stack_sizes)
        )
        r["vs_smallest_stack"] = r["runs_per_min"] / ref["runs_per_min"]

    print(f"\n{'method':<6} {'threads':>7} {'M':>4} {'runs/min':>9} {'vs M=' + str(min(args.stack_sizes)):>8}")
    for r in rows:
        print(
            f"{r['method']:<6} {r['threads']:>7} {r['models_per_stack']:>4} {r['runs_per_min']:>9.1f} "
            f"{r['vs_smallest_stack']:>7.2f}x"
        )
    best = max(
        rows,
        key=lambda r: sum(
            x["runs_per_min"]
            for x in rows
            if x["threads"] == r["threads"] and x["models_per_stack"] == r["models_per_stack"]
        ),
    )
    result = {
        "what": "ParityMNIST fine-tuning runs per minute (1 epoch, checkpoints and all predictors included), "
        "by stack size and torch threads",
        "config": args.config,
        "runs_per_cell": args.runs,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "best_over_methods": {"threads": best["threads"], "models_per_stack": best["models_per_stack"]},
        "rows": rows,
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    print(json.dumps(result["best_over_methods"]))


if __name__ == "__main__":
    main()
