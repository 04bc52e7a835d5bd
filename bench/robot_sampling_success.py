"""Pick-can success of a policy by sampling temperature and by grid row: where on-policy RL can find a reward.

    python bench/robot_sampling_success.py [--policy assets/base_policy_embedded] [--temperatures 0,0.5,1]
        [--episodes 2] [--uniform 100] [--probe-episodes 100] [--workers 12] [--camera-size 112]
        [--out docs/results/robot/sampling_success.json]

REINFORCE with a binary reward learns only from grid points where some sampled episode succeeds; this table says
which rows of the 10 x 10 grid (row 0 nearest the robot) give the policy that signal at each temperature, and
(`--uniform N`) the success at N placements drawn uniformly over the region (the evaluation's placements, between
grid points: a policy that memorized grid points scores lower there), and (`--probe-episodes N`) the drawer
probes at the same temperature. Prints the table and writes JSON.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from envs.grids import grid_points, placement_options
from envs.rollout import EpisodeSpec, ParallelRollout
from vla_razor.policies.openvla import OpenVLAPolicy
from envs.tasks import DEFAULT_PROBES as PROBES
from vla_razor.robot.evaluate import new_task_specs, probe_specs
from vla_razor.robot.rl import PolicyActor
from vla_razor.runs import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="assets/base_policy_embedded")
    parser.add_argument("--temperatures", default="0,0.5,1")
    parser.add_argument(
        "--episodes",
        type=int,
        default=2,
        help="episodes per grid point and temperature (0: none, uniform and probes only)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--camera-size", type=int, default=112)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads of this process (several evaluations at once must not oversubscribe)",
    )
    parser.add_argument("--uniform", type=int, default=0, help="also N uniform placements (evaluation seed 1000)")
    parser.add_argument("--probe-episodes", type=int, default=0, help="also N episodes of each drawer probe")
    parser.add_argument("--out", default="docs/results/robot/sampling_success.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = OpenVLAPolicy.from_pretrained(args.policy, device=device)
    points = grid_points("pick_can", "embedded", (10, 10))
    rows = {}
    with ParallelRollout(args.workers, camera_size=args.camera_size) as rollout:
        for temperature in [float(t) for t in args.temperatures.split(",")]:
            specs = [
                EpisodeSpec("pick_can", 10_000 * j + p, placement_options("pick_can", "embedded", xy))
                for p, xy in enumerate(points)
                for j in range(args.episodes)
            ]
            n_grid = len(specs)
            specs += new_task_specs("pick_can", args.uniform, 1000)
            for task in PROBES if args.probe_episodes else ():
                specs += probe_specs(task, args.probe_episodes, 1000)
            started = time.perf_counter()
            results = rollout.run(PolicyActor(policy, temperature=temperature, seed=0), specs)
            r = rows[str(temperature)] = {"seconds": time.perf_counter() - started}
            if args.episodes:
                success = np.array([r.success for r in results[:n_grid]], float).reshape(10, 10, args.episodes)
                r |= {
                    "overall": float(success.mean()),
                    "by_grid_row": [float(v) for v in success.mean(axis=(1, 2))],
                    "points_with_a_success": int((success.max(axis=2) > 0).sum()),
                }
            extra = results[n_grid:]
            if args.uniform:
                r["uniform"] = float(np.mean([e.success for e in extra[: args.uniform]]))
            for task in PROBES if args.probe_episodes else ():
                r[task] = float(np.mean([e.success for e in extra if e.spec.task == task]))
            grid = (
                f"success {r['overall']:.3f}  points with a success {r['points_with_a_success']:>3}/100  by row "
                + " ".join(f"{v:.2f}" for v in r["by_grid_row"])
                if args.episodes
                else ""
            )
            print(
                f"T={temperature:<4} {grid}  ({r['seconds']:.0f} s)  "
                + " ".join(f"{k} {r[k]:.2f}" for k in ("uniform", *PROBES) if k in r),
                flush=True,
            )
    atomic_write_json(
        Path(args.out),
        {
            "policy": args.policy,
            "episodes_per_point": args.episodes,
            "uniform_placements": args.uniform,
            "probe_episodes": args.probe_episodes,
            "camera_size": args.camera_size,
            "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
            "temperatures": rows,
        },
    )


if __name__ == "__main__":
    main()
