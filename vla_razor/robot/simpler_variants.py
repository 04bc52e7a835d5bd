"""SimplerEnv's evaluation protocols for one policy: its success in each of SimplerEnv's variants of our tasks and
SimplerEnv's aggregate (envs/simpler_variants.py says which variants and how they are averaged).

    vla-razor robot variants --config configs/robot_simpler_cpu.yaml --simpler_variants.protocol visual_matching

Each variant runs in its own simulator workers (its env options differ), its episodes in SimplerEnv's order
(episode i takes the variant's i-th reset options). A variant that cannot run here (a missing scene asset, a shader
the renderer lacks) is recorded with the reason and left out of the aggregate, which then says it is incomplete.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from envs.simpler_variants import aggregate, variants
from envs.rollout import EpisodeSpec, ParallelRollout
from envs.simpler import checked_env
from vla_razor.config import ConfigError, to_dict
from vla_razor.robot.evaluate import EvalSpec, evaluation_actor, simpler_env_kwargs
from vla_razor.robot.stages import configured_policy, load_base, one_process_only
from vla_razor.runs import atomic_write_json


def selected_variants(task: str, protocol: str, only: list[str]) -> list[Any]:
    """The variants of `task` under `protocol` whose names contain one of `only` (all when empty)."""
    return [v for v in variants(task, protocol) if not only or any(part in v.name for part in only)]


def failure_reason(err: BaseException) -> str:
    """The innermost exception line of a (worker) error: its traceback text comes joined into the message."""
    text = " ".join(str(err).split()).split(" All simulator workers were stopped")[0]
    starts = [m.start() for m in re.finditer(r"\w+(?:Error|Exception): ", text)]
    return text[starts[-1] :] if starts else text or type(err).__name__


def without_gripper(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The env options make_simpler passes on (the gripper convention is the adapter's own)."""
    return {k: v for k, v in env_kwargs.items() if k != "gripper"}


def run_variants(cfg: Any, policy_dir: Path | None = None) -> dict[str, Any]:
    """Runs the config's `simpler_variants` protocol with the policy folder `policy_dir` (default: the base) and
    writes the results JSON: per variant its successes or why it did not run, per task SimplerEnv's aggregate."""
    one_process_only("robot variants")
    if cfg.backend != "simpler":
        raise ConfigError("simpler_variants: SimplerEnv's protocols need backend: simpler (and SimplerEnv's venv)")
    sv = cfg.simpler_variants
    policy_dir = Path(policy_dir or cfg.base)
    if policy_dir.resolve() == Path(cfg.base).resolve():
        policy = load_base(cfg)
    else:
        policy = configured_policy(cfg, policy_dir)
        policy.model.eval().requires_grad_(False)
    actor = evaluation_actor(policy, EvalSpec(seed=cfg.eval.seed, temperature=sv.temperature))
    shared = simpler_env_kwargs(cfg, policy.config.gripper)
    results: dict[str, Any] = {
        "policy": str(policy_dir),
        "protocol": sv.protocol,
        "settings": {"simpler_variants": to_dict(sv), "simpler_env_kwargs": dict(cfg.simpler_env_kwargs)},
        "tasks": {},
    }
    for task in sv.tasks:
        chosen = selected_variants(task, sv.protocol, sv.only)
        successes: dict[str, list[bool]] = {}
        runs: dict[str, Any] = {}
        for variant in chosen:
            n = len(variant.episodes) if sv.episodes_per_variant == 0 else sv.episodes_per_variant
            specs = [EpisodeSpec(task, i, {}, sv.max_steps) for i in range(n)]
            env_kwargs = {**shared, "variants": {**shared.get("variants", {}), task: variant.name}}
            start = time.perf_counter()
            try:  # a missing scene is known before any simulator starts
                checked_env(task, **without_gripper(env_kwargs))
            except FileNotFoundError as err:
                runs[variant.name] = {"ran": False, "reason": str(err)}
                print(f"{task} {variant.name}: did not run: {err}", flush=True)
                continue
            rollout = ParallelRollout(
                min(cfg.workers, n), backend="simpler", camera_size=cfg.camera_size, env_kwargs=env_kwargs
            )
            try:
                episodes = rollout.run(actor, specs)
            except Exception as err:  # noqa: BLE001 - a variant that cannot run here is reported, not fatal
                runs[variant.name] = {"ran": False, "reason": failure_reason(err)}
                print(f"{task} {variant.name}: did not run: {runs[variant.name]['reason']}", flush=True)
                continue
            finally:
                rollout.close()
            successes[variant.name] = [bool(e.success) for e in episodes]
            runs[variant.name] = {
                "ran": True,
                "successes": successes[variant.name],
                "steps": [e.steps for e in episodes],
                "seconds": round(time.perf_counter() - start, 1),
            }
            rate = sum(successes[variant.name]) / n
            print(
                f"{task} {variant.name}: {rate:.2f} over {n} episodes ({runs[variant.name]['seconds']} s)", flush=True
            )
        # over the protocol's every variant: those left out by `only` count as missing, so a subset never reads as
        # SimplerEnv's complete number
        results["tasks"][task] = {"variants": runs, "aggregate": aggregate(variants(task, sv.protocol), successes)}
    out = Path(sv.out) if sv.out else cfg.experiment_dir / f"simpler_{sv.protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, results)
    results["out"] = str(out)
    return results
