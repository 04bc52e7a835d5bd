"""LIBERO env speed through envs/libero.py's adapter, in one process: make, reset (hard and soft) and control steps per
second per task, with the render settings and the machine's load written beside them (docs/results/libero/).

    .venv-libero/bin/python bench/libero_steps.py --tasks libero_spatial_0 libero_object_1 --out docs/results/libero
    .venv-libero/bin/python bench/libero_steps.py --compare_hard_reset --out docs/results/libero
    .venv-libero/bin/python bench/libero_steps.py --cheap_render --out /tmp/lib_bench128_cheap   # no AA, no reflections

Rollouts through N worker processes and a policy, per render setting: bench/libero_rollout.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import envs


def measure(task: str, steps: int, camera_size: int, render_size: int, wrist: bool, cheap_render: bool = False) -> dict:
    """Seconds to make the env, to reset it with hard_reset True and False, and control steps per second."""
    out: dict = {"task": task}
    for hard in (True, False):
        start = time.perf_counter()
        env = envs.make(
            task,
            "libero",
            camera_size=camera_size,
            render_size=render_size,
            wrist=wrist,
            hard_reset=hard,
            cheap_render=cheap_render,
        )
        out.setdefault("make_s", time.perf_counter() - start)
        env.reset(seed=0)  # the first reset builds the scene either way
        start = time.perf_counter()
        env.reset(seed=1, options={"obj_init_options": {"init_state": [1.0, 0.0]}})
        out[f"reset_s_hard_reset_{hard}"] = time.perf_counter() - start
        if not hard:
            rng = np.random.default_rng(0)
            start = time.perf_counter()
            for _ in range(steps):
                action = np.concatenate([rng.uniform(-0.3, 0.3, 6), [rng.choice([0.0, 1.0])]])
                env.step(action)
            out["steps"] = steps
            out["steps_per_s"] = steps / (time.perf_counter() - start)
            out["image_shape"] = list(env.step(np.zeros(7))[0]["image"].shape)
        env.close()
    return out


def hard_reset_difference(task: str, camera_size: int, render_size: int, steps: int = 5) -> dict:
    """How far an episode after hard_reset=False drifts from the same episode after a hard reset: both envs run one
    earlier episode, then reset to the same stored state and take the same actions."""
    runs = {}
    for hard in (True, False):
        env = envs.make(task, "libero", camera_size=camera_size, render_size=render_size, hard_reset=hard)
        env.reset(seed=0, options={"obj_init_options": {"init_state": [3, 0]}})
        for _ in range(3):
            env.step(np.array([0.3, 0.2, 0, 0, 0, 0, 0.0]))
        obs, _ = env.reset(seed=1, options={"obj_init_options": {"init_state": [5, 0]}})
        images, proprio = [obs["image"]], [obs["proprio"]]
        for _ in range(steps):
            obs = env.step(np.array([0.2, -0.1, 0.1, 0, 0, 0, 1.0]))[0]
            images.append(obs["image"])
            proprio.append(obs["proprio"])
        runs[hard] = (np.stack(images).astype(int), np.stack(proprio))
        env.close()
    pixels = np.abs(runs[True][0] - runs[False][0])
    return {
        "task": task,
        "init_state": 5,
        "steps": steps,
        "max_abs_pixel_difference": int(pixels.max()),
        "mean_abs_pixel_difference": float(pixels.mean()),
        "max_abs_proprio_difference": float(np.abs(runs[True][1] - runs[False][1]).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["libero_spatial_0", "libero_object_1"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--camera_size", type=int, default=112)
    parser.add_argument("--render_size", type=int, default=128)
    parser.add_argument("--wrist", action="store_true", help="also render and convert the wrist camera")
    parser.add_argument(
        "--cheap_render", action="store_true", help="make_libero's cheap_render: no anti-aliasing, no reflections"
    )
    parser.add_argument("--compare_hard_reset", action="store_true", help="only hard_reset_difference, per task")
    parser.add_argument("--out", type=Path, default=None, help="folder for libero_steps.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.compare_hard_reset:
        rows = [hard_reset_difference(t, args.camera_size, args.render_size) for t in args.tasks]
    else:
        rows = [
            measure(t, args.steps, args.camera_size, args.render_size, args.wrist, args.cheap_render)
            for t in args.tasks
        ]
    result = {
        "settings": {
            "camera_size": args.camera_size,
            "render_size": args.render_size,
            # without --wrist make_libero has LIBERO render the agent view alone (LIBERO's default adds the wrist's)
            "cameras": ["agentview", "robot0_eye_in_hand"] if args.wrist else ["agentview"],
            "wrist_kept": args.wrist,
            "cheap_render": args.cheap_render,
            "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "load_average_before_after": [list(load_before), list(os.getloadavg())],
        },
        "tasks": rows,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "libero_hard_reset_difference.json" if args.compare_hard_reset else "libero_steps.json"
        (args.out / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
