"""Scripted-expert success of the place_can task, through the rollout workers as collection runs it.

    python bench/place_can_expert.py --out docs/results/envs/place_can.json             # 10x10 grid x 2 seeds

Episodes: the can at each point of an NxN grid over the task's region (envs/tasks.py), `--seeds` episodes per
point, each with its own seed (the mark's place and the can's yaw come from it); no camera (the expert reads the
simulator state). Writes {"task", "success", "episodes", "failures": [[point, seed], ...], "seconds", "machine"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from envs.grids import grid_points, placement_options
from envs.rollout import EpisodeSpec, ParallelRollout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grid", type=int, default=10, help="grid points along x and y")
    parser.add_argument("--seeds", type=int, default=2, help="episodes (seeds) per grid point")
    parser.add_argument("--procs", type=int, default=2, help="worker processes (0: in this process)")
    args = parser.parse_args()
    points = grid_points("place_can", "embedded", (args.grid, args.grid))
    specs = [
        EpisodeSpec("place_can", 1000 * k + p, placement_options("place_can", "embedded", xy))
        for p, xy in enumerate(points)
        for k in range(args.seeds)
    ]
    started = time.perf_counter()
    with ParallelRollout(args.procs, render=False) as rollout:
        results = rollout.run("expert", specs)
    seconds = time.perf_counter() - started
    success = [r.success for r in results]
    out = {
        "task": "place_can",
        "expert": "envs/experts.py place_can_top_down (clean, no noise)",
        "success": float(np.mean(success)),
        "episodes": len(specs),
        "grid": [args.grid, args.grid],
        "seeds_per_point": args.seeds,
        "mean_steps": float(np.mean([r.steps for r in results])),
        "failures": [[i // args.seeds, s.seed] for i, (s, ok) in enumerate(zip(specs, success)) if not ok],
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.procs} worker processes, physx_cpu",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("success", "episodes", "mean_steps", "seconds")}))


if __name__ == "__main__":
    main()
