"""Scripted-expert success over the full can grid and the drawer inits, env throughput, first frames.

    python bench/envs_scripted.py --out docs/results/envs            # full run (~10 min on 2 CPU cores)
    python bench/envs_scripted.py --out /tmp/envs --grid 3 --drawer-grid 2 --throughput-episodes 4  # quick look

Writes <out>/summary.json (the issue #3 contract, nothing else in it):
    {"scripted_success": {"pick_can": .., "pick_can_angled": .., "open_drawer": .., "close_drawer": ..},
     "episodes": {<same keys>: n},
     "steps_per_s": {"1_proc": .., "n_proc": .., "n": ..}}
"pick_can" is the default expert style ("top_down"), "pick_can_angled" the other one. <out>/details.json
holds what else was measured (failures, camera size, lockstep throughput, machine), and
<out>/first_frame_<task>.png the first 224 x 224 frame of each task (seed 0).

Success episodes run on `--procs` workers of envs.rollout.ParallelRollout without the camera (the experts
read the simulator state; results do not depend on the number of workers). Throughput (camera on,
224 x 224; total steps / wall time of one `run`, env creation excluded) is what a VLA policy sees: the
workers step in lockstep and a central policy (a cheap stand-in, so the policy's own cost is excluded) is
called once per step on the batched observations; 40-step pick-can episodes; default settings (the scene
is rebuilt at every reset). "1_proc" runs in this process, "n_proc" over n worker processes. details.json
adds the same with plain resets and with the expert running inside the workers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from envs.rollout import EpisodeSpec, ObsBatch, ParallelRollout


def pick_can_specs(grid: int) -> list[EpisodeSpec]:
    from envs.embedded.pick_can import can_grid

    return [
        EpisodeSpec("pick_can", seed=i, options={"obj_init_options": {"init_xy": xy.tolist()}})
        for i, xy in enumerate(can_grid((grid, grid)))
    ]


def drawer_specs(task: str, n: int) -> list[EpisodeSpec]:
    """n x n cabinet offsets over CABINET_OFFSET_RANGE x 3 initial drawer openings of the task's range."""
    from envs.embedded.drawer import CABINET_OFFSET_RANGE, CloseDrawerEnv, OpenDrawerEnv

    qrange = (OpenDrawerEnv if task == "open_drawer" else CloseDrawerEnv).init_qpos_range
    xs = np.linspace(*CABINET_OFFSET_RANGE[0], n)
    ys = np.linspace(*CABINET_OFFSET_RANGE[1], n)
    qs = np.linspace(*qrange, 3)
    return [
        EpisodeSpec(
            task, seed=i, options={"obj_init_options": {"cabinet_xy": [float(x), float(y)], "drawer_qpos": float(q)}}
        )
        for i, (x, y, q) in enumerate(itertools.product(xs, ys, qs))
    ]


def success_rates(grid: int, drawer_grid: int, procs: int) -> tuple[dict, dict, list]:
    runs = {
        "pick_can": ("expert:top_down", pick_can_specs(grid)),
        "pick_can_angled": ("expert:angled", pick_can_specs(grid)),
        "open_drawer": ("expert", drawer_specs("open_drawer", drawer_grid)),
        "close_drawer": ("expert", drawer_specs("close_drawer", drawer_grid)),
    }
    rates, counts, failures = {}, {}, []
    with ParallelRollout(procs, render=False) as rollout:
        for key, (policy, specs) in runs.items():
            start = time.perf_counter()
            results = rollout.run(policy, specs)
            ok = [r.success for r in results]
            rates[key], counts[key] = float(np.mean(ok)), len(ok)
            failures += [
                {"key": key, "seed": r.spec.seed, **r.spec.options["obj_init_options"]}
                for r in results
                if not r.success
            ]
            steps = [r.steps for r in results]
            print(
                f"{key}: {np.mean(ok):.3f} over {len(ok)} (mean {np.mean(steps):.1f} steps, "
                f"{time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rates, counts, failures


def timed_run(rollout: ParallelRollout, policy, specs: list[EpisodeSpec]) -> float:
    rollout.start(tasks=sorted({s.task for s in specs}))  # env creation is not timed
    start = time.perf_counter()
    results = rollout.run(policy, specs)
    return sum(r.steps for r in results) / (time.perf_counter() - start)


def sway(batch: ObsBatch) -> np.ndarray:
    """A cheap deterministic central policy for the lockstep figure: small circles, gripper open."""
    t = batch.steps.astype(np.float32)
    actions = np.zeros((len(batch), 7), np.float32)
    actions[:, 0], actions[:, 1], actions[:, 6] = 0.03 * np.cos(t), 0.03 * np.sin(t), 1.0
    return actions


def throughput(camera_size: int, episodes: int, procs: int) -> tuple[dict, dict]:
    """Steps/s with the camera on, 1 process vs `procs` workers. Headline: a central policy (`sway`) called
    once per step on the batched observations, 40-step pick-can episodes, default settings (fresh_scene)."""
    expert_specs = pick_can_specs(10)[:: max(1, 100 // episodes)][:episodes]
    sway_specs = [EpisodeSpec(s.task, s.seed, s.options, max_steps=40) for s in expert_specs]
    figures: dict[str, dict] = {}
    for n in (0, procs):
        with ParallelRollout(n, camera_size=camera_size) as rollout:
            for fresh in (True, False):
                rollout.fresh_scene = fresh
                tag = "fresh_scene" if fresh else "plain_reset"
                for name, policy, specs in (
                    ("central_policy", sway, sway_specs),
                    ("expert_in_workers", "expert:top_down", expert_specs),
                ):
                    rate = timed_run(rollout, policy, specs)
                    figures.setdefault(f"{name}_{tag}", {"n": procs})["1_proc" if n == 0 else "n_proc"] = rate
                    print(f"{max(n, 1)} proc(s), {name}, {tag}: {rate:.1f} steps/s", flush=True)
    headline = figures["central_policy_fresh_scene"]
    details = {
        "camera_size": camera_size,
        "headline": "central_policy_fresh_scene: lockstep, one batched policy call per step, "
        f"{len(sway_specs)} pick-can episodes of 40 steps, scene rebuilt at each reset (the default)",
        "expert_in_workers": f"top-down pick-can expert inside the workers, {len(expert_specs)} episodes "
        "(~8 steps each, so resets weigh heavily)",
        "plain_reset": "fresh_scene=False: no scene rebuild at reset (faster, not bitwise N-independent)",
        **figures,
    }
    return {"1_proc": headline["1_proc"], "n_proc": headline["n_proc"], "n": procs}, details


def first_frames(out: Path, camera_size: int) -> None:
    from PIL import Image

    import envs

    for task in envs.TASKS:
        env = envs.make(task, camera_size=camera_size)
        obs, _ = env.reset(seed=0)
        Image.fromarray(obs["image"]).save(out / f"first_frame_{task}.png")
        env.close()


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/envs"))
    parser.add_argument("--grid", type=int, default=10, help="can grid side (10 = the full 10 x 10 grid)")
    parser.add_argument("--drawer-grid", type=int, default=5, help="cabinet offsets per axis (x3 openings)")
    parser.add_argument("--camera-size", type=int, default=224)
    parser.add_argument("--throughput-episodes", type=int, default=8, help="pick-can episodes per throughput run")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="worker processes (n)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rates, counts, failures = success_rates(args.grid, args.drawer_grid, args.procs)
    speed, speed_details = throughput(args.camera_size, args.throughput_episodes, args.procs)
    first_frames(args.out, args.camera_size)
    summary = {"scripted_success": rates, "episodes": counts, "steps_per_s": speed}
    details = {
        "pick_can_styles": {"pick_can": "top_down (default)", "pick_can_angled": "angled"},
        "grid": [args.grid, args.grid],
        "drawer_inits": f"{args.drawer_grid} x {args.drawer_grid} cabinet offsets x 3 drawer openings",
        "failures": failures,
        "throughput": speed_details,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    write_json(args.out / "summary.json", summary)
    write_json(args.out / "details.json", details)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
