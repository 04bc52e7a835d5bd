"""An RL iteration's rollouts: N simulator workers feeding the batched policy, against the same workers with a
no-op policy (what the simulator alone can give).

    python bench/rl_rollout_throughput.py                                   # committed tiny base, CPU, 2 workers
    python bench/rl_rollout_throughput.py --policy 7b --device cuda --workers 8 16 --episodes 64  # the device
    python bench/rl_rollout_throughput.py --workers 4 --pipeline-groups 1 2   # sim and policy overlapped or not

Pick-can episodes at placements drawn over the grid region, camera on (`--camera-size`), CPU PhysX, workers in
lockstep (envs.rollout.ParallelRollout): every control step the running episodes' observations go to the policy
in one batched call. Sampled actions at `--temperature` (as RL rollouts), through vla_razor.robot's PolicyActor.
`rollout_vs_sim` = env steps/s with the policy / env steps/s with the no-op policy (zero actions), same specs,
same workers (issue #9's target: >= 0.8). A trained policy's successes end episodes early, so its run pays more
resets per env step than the no-op's (which never succeeds): `rollout_vs_sim_matched` divides by the no-op over the
same episodes cut at the lengths the policy gave them (`sim_matched_steps_per_s`: the same steps and resets), the
policy's own cost in the loop. `--pipeline-groups`: one row per value for each worker count, named by
its "setting", on the same workers: G >= 2 splits the workers into G groups that step while the policy computes
another group's actions (ParallelRollout's pipeline_groups); the no-op baseline always runs with G = 1.
`--policy`: tiny (a random tiny OpenVLA), `tiny:hidden=192,layers=3,image_size=56` (a random one of another shape:
OpenVLAConfig.tiny's arguments and config fields, e.g. `patch_size=28,action_decoding=parallel`; what a cheaper base
would cost before one is trained), 7b (random OpenVLA-7B, bf16),
a policy config YAML (random weights of that shape), or a policy folder (default: the committed base); several are
measured in turn against one no-op baseline a worker count, their rows named by policy (JSON key: --key).
`--prompt-template`: measure with another prompt than the policy's own (config.prompt_template; e.g. '{instruction}':
14 byte positions instead of OpenVLA's 62). `--dtype`: the policy's weights cast to each dtype in turn (bfloat16
runs on CPUs with AMX or avx512_bf16 through oneDNN's bf16 kernels), what sampling in lower precision would give. Results merge into --out
under "<policy>@<device>".
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vla_razor.runs import update_json


def load_policy(name: str, device: str):
    from vla_razor.policies.openvla import OpenVLAConfig
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    if name in ("tiny", "7b") or name.startswith("tiny:"):
        shape = {
            k: int(v) if v.isdigit() else v
            for k, v in (kv.split("=") for kv in name.partition(":")[2].split(",") if kv)
        }
        cfg = OpenVLAConfig.openvla_7b() if name == "7b" else OpenVLAConfig.tiny(**shape)
        if device == "cpu":
            cfg.dtype = "float32"
        if name == "7b":
            cfg.tokenizer = "bytes"  # no Llama tokenizer offline: byte ids, the same compute per token
        return OpenVLAPolicy.from_config(cfg, device=device, seed=0)
    if name.endswith((".yaml", ".yml")):
        from vla_razor.config import load_config

        return OpenVLAPolicy.from_config(load_config(OpenVLAConfig, name), device=device, seed=0)
    return OpenVLAPolicy.from_pretrained(name, device=device)


def steps_per_s(rollout, policy, specs) -> tuple[float, int, float, list[int]]:
    """Env steps/s, env steps, seconds, and each episode's steps (in the order of `specs`)."""
    started = time.perf_counter()
    results = rollout.run(policy, specs)
    seconds = time.perf_counter() - started
    lengths = [r.steps for r in results]
    return sum(lengths) / seconds, sum(lengths), seconds, lengths


def matched_specs(specs: list, lengths: list[int]) -> list:
    """The same episodes cut at the lengths a policy gave them: a trained policy's successes end episodes early
    (more resets per env step), and the no-op over these pays the same resets for the same steps."""
    return [dataclasses.replace(spec, max_steps=n) for spec, n in zip(specs, lengths)]


def measure_workers(rollout, workers: int, groups: list[int], fresh: bool, actors: dict, noop, specs, args) -> list:
    """The rows of one worker count and reset kind: the simulator alone (no-op policy), then each policy setting."""
    from vla_razor.robot.evaluate import new_task_specs

    rollout.fresh_scene = fresh
    rollout.pipeline_groups = 1
    sim, sim_steps, sim_s, _ = steps_per_s(rollout, noop, specs)
    matched: dict[tuple[int, ...], float] = {}  # the no-op over the episodes a policy cut short, by their lengths
    rows = []
    for ((name, dtype), actor), threads, g in [(a, t, g) for a in actors.items() for t in args.threads for g in groups]:
        torch.set_num_threads(threads)
        rollout.pipeline_groups = g
        # graph captures and compilation are not rollout time: on CUDA an untimed pass over the same episodes first
        # (a rollout's batches shrink as its episodes end, and each row bucket, 1 2 4 8 16 ..., has its own CUDA
        # graphs, which a short run would otherwise time), elsewhere the full batch's first call
        warmup = specs if args.device == "cuda" else new_task_specs("pick_can", max(1, workers), seed=4242, max_steps=2)
        rollout.run(actor, warmup)
        pol, pol_steps, pol_s, lengths = steps_per_s(rollout, actor, specs)
        if tuple(lengths) not in matched:
            rollout.pipeline_groups = 1
            matched[tuple(lengths)] = steps_per_s(rollout, noop, matched_specs(specs, lengths))[0]
        sim_matched = matched[tuple(lengths)]
        resets = "" if fresh else ", plain resets"
        of = f"{name}: " if len(args.policy) > 1 else ""
        row = {
            "setting": f"{of}{workers} workers, pipeline_groups {g}, {threads} policy threads, {dtype}{resets}",
            "policy": name,
            "workers": workers,
            "pipeline_groups": g,
            "threads": threads,
            "dtype": dtype,
            "fresh_scene": fresh,
            "episodes": len(specs),
            "sim_steps_per_s": sim,
            "policy_steps_per_s": pol,
            "rollout_vs_sim": pol / sim,
            "sim_matched_steps_per_s": sim_matched,
            "rollout_vs_sim_matched": pol / sim_matched,
            "sim_steps": sim_steps,
            "policy_steps": pol_steps,
            "sim_seconds": sim_s,
            "policy_seconds": pol_s,
            "cpus": os.cpu_count(),
        }
        rows.append(row)
        print(json.dumps(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy",
        nargs="+",
        default=["assets/base_policy_embedded"],
        help="tiny, tiny:<shape>, 7b, a policy config YAML (random weights), or a policy folder; several in turn",
    )
    parser.add_argument("--key", default=None, help="the JSON key (default: <policy folder name>@<device>)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument(
        "--pipeline-groups",
        type=int,
        nargs="+",
        default=[1],
        help="ParallelRollout pipeline_groups to measure (each at most the worker count)",
    )
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--camera-size", type=int, default=224)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch threads of the policy process (each value measured in turn)",
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16"],
        help="the policy's weights cast to each of these in turn (a copy per dtype)",
    )
    parser.add_argument(
        "--fresh-scene",
        nargs="+",
        default=["true"],
        choices=["true", "false"],
        help="rebuild the scene at each reset (true, the default) or plain resets (false: rl.fresh_scene), each in turn",
    )
    parser.add_argument(
        "--prompt-template",
        default=None,
        help="a prompt with {instruction} to measure instead of the policy's own (config.prompt_template)",
    )
    parser.add_argument("--out", default="docs/results/perf/rollout.json")
    args = parser.parse_args()
    if args.prompt_template is not None and "{instruction}" not in args.prompt_template:
        parser.error("--prompt-template: must contain {instruction}")

    os.environ.setdefault("MS_SKIP_ASSET_DOWNLOAD_PROMPT", "1")
    from envs.rollout import ParallelRollout
    from vla_razor.robot.evaluate import new_task_specs
    from vla_razor.robot.rl import PolicyActor

    if len(args.policy) > 1 and args.key is None:
        parser.error("--key: name the JSON entry of several policies")
    actors = {}
    for policy_name in args.policy:
        policy = load_policy(policy_name, args.device)
        if args.prompt_template is not None:
            policy.config.prompt_template = args.prompt_template  # the processor reads the policy's config
        action_dim = policy.action_dim
        for name in args.dtype:
            dtype = getattr(torch, name)
            cast = (
                policy
                if next(policy.model.parameters()).dtype == dtype
                else type(policy)(copy.deepcopy(policy.model).to(dtype), policy.processor, policy.dataset)
            )
            actors[policy_name, name] = PolicyActor(cast, temperature=args.temperature, seed=0)

    def noop(batch) -> np.ndarray:
        return np.zeros((len(batch), action_dim), dtype=np.float32)

    specs = new_task_specs("pick_can", args.episodes, seed=4242, max_steps=args.max_steps)
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    )
    rows = []
    for workers in args.workers:
        groups = [g for g in args.pipeline_groups if 1 <= g <= max(1, workers)]
        if groups != args.pipeline_groups:
            print(
                f"{workers} workers: skipping pipeline groups {sorted(set(args.pipeline_groups) - set(groups))} "
                f"(each group needs a worker)"
            )
        with ParallelRollout(workers, camera_size=args.camera_size) as rollout:
            rollout.run(noop, specs[: max(1, workers)])  # start the workers and make their scenes
            for fresh in [value == "true" for value in args.fresh_scene]:
                rows += measure_workers(rollout, workers, groups, fresh, actors, noop, specs, args)
    result = {
        "device": device_name,
        "policy": args.policy[0] if len(args.policy) == 1 else args.policy,
        "camera_size": args.camera_size,
        "temperature": args.temperature,
        "max_steps": args.max_steps,
        "prompt_template": args.prompt_template or "OpenVLA's",
        "torch": torch.__version__,
        "warmup": "cuda: one untimed pass over the same episodes per setting; cpu: the full batch's first call",
        "rows": rows,
    }
    update_json(Path(args.out), args.key or f"{Path(args.policy[0]).name}@{args.device}", result)


if __name__ == "__main__":
    main()
