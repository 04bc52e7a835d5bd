"""LIBERO rollouts' env steps/s: N worker processes (envs.rollout.ParallelRollout) feeding one batched policy, per
render setting, against the same workers with a no-op policy (what the simulators alone can give).

    PYTHONPATH=. .venv-libero/bin/python bench/libero_rollout.py --workers 1 2          # 2 CPU cores, tiny base
    PYTHONPATH=. .venv-libero/bin/python bench/libero_rollout.py --workers 1 2 --episodes 2 --max-steps 5 \\
        --out /tmp/libero_rollout_smoke.json                                             # a functional smoke run
    PYTHONPATH=. .venv-libero/bin/python bench/libero_rollout.py --device cuda --workers 4 8 16   # the GPU machine

Each setting is a set of make_libero options (envs/libero.py) on top of --render-size and the base's gripper range:
  libero_default          LIBERO's and OpenVLA's rendering (4x multisample anti-aliasing, reflections) and its
                          hard reset (the MuJoCo model and render context rebuilt at every reset);
  libero_default_soft     the same rendering, hard_reset False (the model kept; the stored init state set as ever);
  cheap_render            cheap_render True (no anti-aliasing, no reflections: other images), hard reset;
  cheap_render_soft       cheap_render True and hard_reset False (configs/libero_*_cpu.yaml + cheap_render);
  no_antialiasing_soft, no_reflections_soft: one part of cheap_render alone, hard_reset False (not run by default;
                          --settings names them), to tell which part the time goes to.
For each setting and worker count the workers are started and their envs made (`make_s`, not rollout time), then
--episodes episodes of --max-steps control steps (stored init states 0, 1, ... of --tasks in turn) run twice: with
zero actions (`sim_steps_per_s`) and with the policy's sampled actions at --temperature through vla_razor.robot's
PolicyActor (`policy_steps_per_s`); `rollout_vs_sim` is their ratio. Env steps/s count control steps only; the
resets (and LIBERO's 10 settling steps after each) are inside the time, so --max-steps sets how much of it they are
(LIBERO's own episodes: 220 to 520 steps). Only the agent view renders (make_libero without wrist: camera_names
["agentview"], not LIBERO's default two); the policy sees it. --policy none measures the no-op rows only. Results
merge into --out under "<policy>@<device>" (the layout of bench/rl_rollout_throughput.py, with the setting's options
and the machine's load average in each row); a table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS: dict[str, dict] = {
    "libero_default": {"hard_reset": True, "cheap_render": False},
    "libero_default_soft": {"hard_reset": False, "cheap_render": False},
    "cheap_render": {"hard_reset": True, "cheap_render": True},
    "cheap_render_soft": {"hard_reset": False, "cheap_render": True},
    "no_antialiasing_soft": {"hard_reset": False, "cheap_render": ["antialiasing"]},
    "no_reflections_soft": {"hard_reset": False, "cheap_render": ["reflections"]},
}
DEFAULT_SETTINGS = ["libero_default", "libero_default_soft", "cheap_render", "cheap_render_soft"]


def load_policy(name: str, device: str):
    from vla_razor.policies.openvla import OpenVLAConfig
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    if name == "tiny":
        cfg = OpenVLAConfig.tiny()
        if device == "cpu":
            cfg.dtype = "float32"
        return OpenVLAPolicy.from_config(cfg, device=device, seed=0)
    return OpenVLAPolicy.from_pretrained(name, device=device)


def episode_specs(tasks: list[str], episodes: int, max_steps: int, first: int = 0) -> list:
    """`episodes` specs over `tasks` in turn, each at its own stored init state (first, first + 1, ...)."""
    from envs.rollout import EpisodeSpec
    from envs.tasks import LIBERO_INIT_STATES

    return [
        EpisodeSpec(
            tasks[i % len(tasks)],
            seed=first + i,
            options={"obj_init_options": {"init_state": [float((first + i) % LIBERO_INIT_STATES), 0.0]}},
            max_steps=max_steps,
        )
        for i in range(episodes)
    ]


def table(rows: list[dict]) -> str:
    """The rows as a markdown table (what docs/results/libero/README.md's speed section takes)."""
    head = "| setting | workers | make s | no-op steps/s | policy steps/s | rollout / sim |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        policy = "-" if r["policy_steps_per_s"] is None else f"{r['policy_steps_per_s']:.2f}"
        ratio = "-" if r["rollout_vs_sim"] is None else f"{r['rollout_vs_sim']:.2f}"
        lines.append(
            f"| {r['setting']} | {r['workers']} | {r['make_s']:.1f} | {r['sim_steps_per_s']:.2f} | {policy} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy", default="assets/base_policy_embedded", help="a policy folder, tiny (random), or none (no-op only)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=sorted(SETTINGS))
    parser.add_argument("--tasks", nargs="+", default=["libero_spatial_0"], help="LIBERO task ids, taken in turn")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--camera-size", type=int, default=112, help="the policy's image side (the tiny base: 112)")
    parser.add_argument("--render-size", type=int, default=128, help="LIBERO's cameras (OpenVLA's evaluation: 256)")
    parser.add_argument(
        "--gripper-range", type=float, nargs=2, default=[-1.0, 1.0], help="the policy's (closed, open) gripper values"
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the policy process")
    parser.add_argument("--out", default="docs/results/libero/libero_rollout.json")
    args = parser.parse_args()

    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from envs.rollout import ParallelRollout
    from vla_razor.robot.rl import PolicyActor
    from vla_razor.runs import update_json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rl_rollout_throughput import steps_per_s  # the embedded world's rollout bench: the same measurement

    torch.set_num_threads(args.threads)
    actor = None
    action_dim = 7
    if args.policy != "none":
        policy = load_policy(args.policy, args.device)
        actor, action_dim = PolicyActor(policy, temperature=args.temperature, seed=0), policy.action_dim

    def noop(batch) -> np.ndarray:
        actions = np.zeros((len(batch), action_dim), dtype=np.float32)
        actions[:, 6] = args.gripper_range[1]  # gripper held open, as LIBERO's settling steps
        return actions

    specs = episode_specs(args.tasks, args.episodes, args.max_steps)
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    rows = []
    for name in args.settings:
        env_kwargs = {"render_size": args.render_size, "gripper_range": list(args.gripper_range), **SETTINGS[name]}
        for workers in args.workers:
            load_before = os.getloadavg()
            with ParallelRollout(
                workers, backend="libero", camera_size=args.camera_size, env_kwargs=env_kwargs
            ) as rollout:
                started = time.perf_counter()
                rollout.start(tuple(dict.fromkeys(args.tasks)))  # every worker makes its envs: not rollout time
                make_s = time.perf_counter() - started
                # each worker's first reset (and the policy's first call at this batch size) is not rollout time
                warmup = episode_specs(args.tasks, max(1, workers), 1, first=args.episodes)
                rollout.run(noop, warmup)
                sim, sim_steps, sim_s = steps_per_s(rollout, noop, specs)
                pol = pol_steps = pol_s = None
                if actor is not None:
                    rollout.run(actor, warmup)
                    pol, pol_steps, pol_s = steps_per_s(rollout, actor, specs)
            row = {
                "setting": name,
                "env_kwargs": env_kwargs,
                "workers": workers,
                "episodes": len(specs),
                "make_s": make_s,
                "sim_steps_per_s": sim,
                "policy_steps_per_s": pol,
                "rollout_vs_sim": None if pol is None else pol / sim,
                "sim_steps": sim_steps,
                "policy_steps": pol_steps,
                "sim_seconds": sim_s,
                "policy_seconds": pol_s,
                "cpus": os.cpu_count(),
                "load_average_before_after": [list(load_before), list(os.getloadavg())],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "device": device_name,
        "policy": args.policy,
        "tasks": args.tasks,
        "camera_size": args.camera_size,
        "render_size": args.render_size,
        "cameras": ["agentview"],  # make_libero without wrist renders the agent view alone; the policy sees it
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "temperature": args.temperature,
        "max_steps": args.max_steps,
        "threads": args.threads,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(table(rows))
    update_json(Path(args.out), f"{Path(args.policy).name}@{args.device}", result)


if __name__ == "__main__":
    main()
