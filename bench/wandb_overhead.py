"""What wandb's offline logging costs a run on this machine: start, finish, and the slowdown of a CPU-bound loop.

    python bench/wandb_overhead.py [--steps 60] [--step-ms 400] [--repeats 2] [--threads 2]
        [--out docs/results/perf/wandb_overhead.json]

`wandb: auto` (the robot configs' default) logs offline unless the user is logged in, through the real
`vla_razor.runs.WandbMirror`, as a stage does: one wandb run a stage (the quickstart has two, SFT and RL), a log
call with ~10 metrics per update or iteration. Each round times, in one process and alternating with `off` so
that drift in the machine's load hits both alike: the mirror's start (the first one also imports wandb), a loop of
`--steps` steps of fixed float32 matmul work on `--threads` threads (about `--step-ms` each, the 2 cores busy as a
training stage keeps them) with a log call per step, and the finish (offline: writing the run's files). Then whole
python processes that start a mirror, log 10 steps and finish (wandb's import, service start and teardown at exit
included), alternating too. Prints the table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vla_razor.runs import WandbMirror, atomic_write_json


def calibrated_matmuls(step_ms: float) -> tuple[torch.Tensor, int]:
    """A matrix and how many products of it take about `step_ms` on the current threads."""
    a = torch.randn(512, 512)
    a @ a
    started = time.perf_counter()
    for _ in range(20):
        a @ a
    per_product = (time.perf_counter() - started) / 20
    return a, max(1, round(step_ms / 1000 / per_product))


def one_round(mode: str, steps: int, a: torch.Tensor, products: int, folder: Path) -> dict[str, float]:
    started = time.perf_counter()
    mirror = WandbMirror(mode, "vla-razor-bench", f"wandb-overhead-{mode}", {"steps": steps}, folder)
    start_s = time.perf_counter() - started
    started = time.perf_counter()
    for step in range(1, steps + 1):
        for _ in range(products):
            a @ a
        mirror.log({f"train/metric_{i}": float(step * i) for i in range(10)}, step)
    loop_s = time.perf_counter() - started
    started = time.perf_counter()
    mirror.finish()
    return {"start_s": start_s, "loop_s": loop_s, "finish_s": time.perf_counter() - started}


PROCESS = """
import sys
from pathlib import Path
from vla_razor.runs import WandbMirror
mirror = WandbMirror(sys.argv[1], "vla-razor-bench", "wandb-overhead-process", {}, Path(sys.argv[2]))
for step in range(10):
    mirror.log({"train/loss": float(step)}, step)
mirror.finish()
"""


def process_seconds(mode: str, folder: Path) -> float:
    """Wall time of a whole python process that starts a mirror, logs 10 steps and finishes it: the import of
    wandb, its service's start and its teardown at exit included."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROCESS, mode, str(folder)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="logged steps a round")
    parser.add_argument("--step-ms", type=float, default=400.0, help="matmul work a step, in ms when run alone")
    parser.add_argument("--repeats", type=int, default=2, help="rounds a mode, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/results/perf/wandb_overhead.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    a, products = calibrated_matmuls(args.step_ms)
    rounds: dict[str, list[dict[str, float]]] = {"off": [], "offline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("off", "offline"):
                rounds[mode].append(one_round(mode, args.steps, a, products, Path(tmp) / f"{mode}{r}"))
                print(mode, {k: round(v, 2) for k, v in rounds[mode][-1].items()}, flush=True)
        processes: dict[str, list[float]] = {"off": [], "offline": []}
        for r in range(max(3, args.repeats)):
            for mode in ("off", "offline"):
                processes[mode].append(process_seconds(mode, Path(tmp) / f"process_{mode}{r}"))
    import wandb  # imported by the first offline start above

    median = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in rounds.items()}
    total = {m: sum(v.values()) for m, v in median.items()}
    result = {
        "about": (
            "bench/wandb_overhead.py: vla_razor.runs.WandbMirror in mode 'offline' (what `wandb: auto` gives when "
            "not logged in) against 'off', alternating in one process: its start (the first offline one also "
            "imports wandb), a CPU-bound loop of float32 matmuls with one log call of 10 metrics a step, its "
            "finish. Medians over the rounds."
        ),
        "command": (
            f"python bench/wandb_overhead.py --steps {args.steps} --step-ms {args.step_ms:g} "
            f"--repeats {args.repeats} --threads {args.threads} --out {args.out}"
        ),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "wandb": wandb.__version__,
        "torch": torch.__version__,
        "rounds": rounds,
        "median": median,
        "loop_ratio_offline_over_off": median["offline"]["loop_s"] / median["off"]["loop_s"],
        "seconds_added_per_run": total["offline"] - total["off"],
        "process_s": processes,
        "process_s_median": {m: statistics.median(v) for m, v in processes.items()},
    }
    print(f"| mode | start s | loop s ({args.steps} steps) | finish s |")
    print("| --- | --- | --- | --- |")
    for mode, v in median.items():
        print(f"| {mode} | {v['start_s']:.2f} | {v['loop_s']:.2f} | {v['finish_s']:.2f} |")
    print(
        f"loop offline / off: {result['loop_ratio_offline_over_off']:.3f}; "
        f"seconds a wandb run adds: {result['seconds_added_per_run']:.1f}; a whole process (import, service, "
        f"teardown): off {result['process_s_median']['off']:.2f} s, offline {result['process_s_median']['offline']:.2f} s"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(args.out), result)
    print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
