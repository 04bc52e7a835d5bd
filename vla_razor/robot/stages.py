"""The robot experiment's stages as the CLI runs them: each reads a RobotConfig and writes a run folder.

    pretrain: a fresh tiny OpenVLA policy, behaviour-cloned on expert demonstrations of every task -> the base;
    sft:      the base, fine-tuned on demonstrations of the new task, `task` (pick-can by default, in the expert
              style the base did not learn).
A stage whose run folder holds a finished policy is skipped; one with a training state resumes from it.

Both train across processes when started by torchrun (`torchrun --nproc-per-node N -m vla_razor.cli robot sft
...`): the policy is sharded with FSDP2 (cfg.fsdp), every process trains, rank 0 alone writes the run folder and,
for SFT, evaluates the saved policy after the others have left. RL, evaluation and collection run in one process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_collection.collect import Collector, print_summary
from data_collection.dataset import DatasetError
from vla_razor.analysis.intervals import interval_summary
from vla_razor.analysis.runs import experiment_table
from vla_razor.config import ConfigError, load_config, to_dict
from vla_razor.distributed import Distributed, check_distributed, env_world_size
from vla_razor.policies.base import TokenPolicy
from vla_razor.policies.registry import load_policy, new_policy
from vla_razor.robot import rl
from vla_razor.robot.config import RobotConfig
from vla_razor.robot.data import DemoTransitions
from vla_razor.robot.evaluate import ROBOT_PREDICTORS, Evaluator
from vla_razor.robot.sft import POLICY_DIR, TrainResult, behaviour_clone
from vla_razor.runs import RunFolder, WandbMirror, save_policy
from vla_razor.runtime import resolve_device, seed_everything
from vla_razor.training_state import (
    check_training_state,
    load_training_state,
    read_training_state_meta,
    save_training_state,
    training_state_path,
)


@dataclass
class StageResult:
    run_dir: Path
    policy_dir: Path
    train: TrainResult | None
    """None when the stage was already finished."""
    summary: dict[str, Any] | None = None
    """The run's summary.json (stages that evaluate)."""
    iterations: int | None = None
    """RL: iterations done in total."""
    updates: int | None = None
    """RL: policy updates made in total."""
    resumed_from_iteration: int = 0
    """RL: the iteration an interrupted run's training state resumed from (0: a fresh start)."""


def one_process_only(what: str) -> None:
    """Refuses to run `what` as one of several torchrun processes (each would redo it into the same folder)."""
    if env_world_size() > 1:
        raise ConfigError(
            f"{what} runs in one process, and this is one of {env_world_size()} (torchrun): only "
            "`robot pretrain` and `robot sft` train across processes; run it without torchrun"
        )


def _trained(run: RunFolder) -> bool:
    return (run.path / POLICY_DIR / "model.safetensors.index.json").is_file()


# What does not change what a run computes, so a rerun may differ in it (a run's identity is the rest of its resolved
# config, RunFolder.check_settings): how fast and how visibly it runs, and the sections of the other stages.
_HOW_IT_RUNS = (
    "progress",
    "wandb",
    "workers",
    "pipeline_groups",
    "threads",
    "device",
    "checkpoint_every",
    "keep_training_state",
    "forecast",
    "runs_dir",
    "fsdp.reshard_after_forward",
)
# A run stopped early (optim.max_steps) may be continued further: the cap is not part of what it is.
NOT_IN_RUN_IDENTITY = {
    "pretrain": (
        *_HOW_IT_RUNS,
        "experiment",
        "base",
        "region",
        "kl_budget",
        "camera_size",
        "backend",
        "sim_backend",
        "simpler_env_kwargs",
        "libero_env_kwargs",
        "pretrain.optim.max_steps",
        "pretrain.snapshot_every",
        "collect.",
        "sft.",
        "rl.",
        "eval.",
        "lora.",
        "simpler_variants.",
    ),
    "sft": (*_HOW_IT_RUNS, "sft.optim.max_steps", "collect.", "pretrain.", "rl.", "simpler_variants."),
    "rl": (*_HOW_IT_RUNS, "collect.", "pretrain.", "sft.", "fsdp.", "simpler_variants."),
}


def _run_config(cfg: RobotConfig, stage: str) -> dict[str, Any]:
    """What a stage's run folder records as its config.yaml."""
    return {"stage": stage, **to_dict(cfg)}


def _start(run: RunFolder, cfg: RobotConfig, stage: str, model: Any) -> bool:
    """Creates or reopens the run folder; True if it resumes an interrupted try (whose state must fit `model`:
    checked before the logs past the state are dropped)."""
    state = training_state_path(run.path)
    resuming = state.is_file()
    if resuming:
        meta = check_training_state(state, model)
        run.drop_metrics_after(int(meta["step"] if "step" in meta else meta["iteration"]))
    run.start(_run_config(cfg, stage), fresh=not resuming)
    return resuming


def _train(
    run: RunFolder,
    cfg: RobotConfig,
    stage: str,
    policy: Any,
    data: DemoTransitions,
    optim: Any,
    on_update: Any = None,
    stop_check: Any = None,
    ctx: Distributed | None = None,
    every: int | None = None,
) -> TrainResult:
    """Behaviour cloning with the stage's bookkeeping; `on_update` runs every `every` updates (default: the
    mid-training evaluation's `eval.during_training_every`)."""
    main = ctx is None or ctx.is_main
    wandb = WandbMirror(
        cfg.wandb if main else "off",
        "vla-razor",
        f"{cfg.experiment}/{run.path.name}",
        {"stage": stage, **to_dict(cfg)},
        run.path,
    )
    try:
        return behaviour_clone(
            policy,
            data,
            optim,
            run,
            seed=cfg.seed,
            checkpoint_every=cfg.checkpoint_every,
            progress=cfg.progress,
            wandb=wandb,
            on_update=on_update,
            every=cfg.eval.during_training_every if every is None else every,
            stop_check=stop_check,
            check_every=cfg.eval.kl_every,
            dist=ctx,
            fsdp=cfg.fsdp,
        )
    finally:
        wandb.finish()
        data.close()


def run_pretrain(cfg: RobotConfig) -> StageResult:
    """The base policy: a fresh model from `pretrain.policy_config`, action statistics from the demonstrations."""
    p = cfg.pretrain
    run = RunFolder(p.out)
    run.check_settings(_run_config(cfg, "pretrain"), NOT_IN_RUN_IDENTITY["pretrain"])
    if _trained(run):
        return StageResult(run.path, run.path / POLICY_DIR, None)
    ctx = Distributed.from_env(cfg.device)  # torchrun's processes, or just this one
    if ctx.enabled:
        check_distributed(p.optim, ctx)
        ctx.init()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = DemoTransitions(list(p.datasets))
    policy = new_policy(cfg.policy.type, p.policy_config, device=ctx.device, seed=cfg.seed)
    stats_data = DemoTransitions(list(p.norm_stats_datasets)) if p.norm_stats_datasets else data
    policy.set_action_statistics(stats_data.action_statistics(cfg.dataset_name), cfg.dataset_name)
    if ctx.is_main:
        _start(run, cfg, "pretrain", policy.model)
    if p.snapshot_every > 0 and ctx.enabled:
        raise ConfigError("pretrain.snapshot_every: not supported with several processes (torchrun)")

    def snapshot(step: int) -> None:
        save_policy(policy, run.path / "snapshots" / f"step_{step:06d}")

    result = _train(
        run,
        cfg,
        "pretrain",
        policy,
        data,
        p.optim,
        ctx=ctx,
        every=p.snapshot_every,
        on_update=snapshot if p.snapshot_every > 0 else None,
    )
    return StageResult(run.path, result.policy_dir, result)


def sft_transitions(cfg: RobotConfig) -> DemoTransitions:
    """The SFT demonstrations, refused when a folder is listed twice (pretraining lists one again to weight it;
    SFT on the paper's protocol does not) or holds episodes of another task than the new task."""
    seen: set[Path] = set()
    for folder in cfg.sft.datasets:
        if Path(folder).resolve() in seen:
            raise DatasetError(f"sft.datasets: {folder} is listed twice")
        seen.add(Path(folder).resolve())
    # LIBERO demonstrations are read as the policy sees LIBERO's envs: at camera_size, its gripper convention
    gripper = tuple(cfg.libero_env_kwargs.get("gripper_range", (0.0, 1.0)))
    data = DemoTransitions(list(cfg.sft.datasets), image_size=cfg.camera_size, gripper_range=gripper)
    others = [t for t in data.tasks if t not in cfg.new_tasks]
    if others:
        raise DatasetError(
            f"sft.datasets: episodes of {', '.join(others)} in {', '.join(map(str, cfg.sft.datasets))}; "
            f"SFT fine-tunes on demonstrations of the new task ({cfg.task}) only"
        )
    return data


def sft_run_name(cfg: RobotConfig) -> str:
    o = cfg.sft.optim
    shift = f"_shift{o.image_shift}" if o.image_shift else ""
    return cfg.sft.run_name or f"sft_lr{o.lr:g}_bs{o.batch_size}_ep{o.epochs}{shift}{_lora_suffix(cfg)}_s{cfg.seed}"


def _lora_suffix(cfg: RobotConfig) -> str:
    return f"_lora{cfg.lora.r}" if cfg.lora.enabled else ""


def run_sft(cfg: RobotConfig, shared: SharedEvaluator | None = None) -> StageResult:
    """SFT of the base on `sft.datasets` with the base's own action statistics (its tokenizer is kept), then
    the evaluation; summary.json, written last, marks the run finished. `shared`: the experiment's evaluator, with
    its base and simulator workers, shared with the caller's other stages (the caller closes it); default: its own."""
    run = RunFolder(cfg.experiment_dir / "runs" / sft_run_name(cfg))
    run.check_settings(_run_config(cfg, "sft"), NOT_IN_RUN_IDENTITY["sft"])
    if run.is_finished():
        return StageResult(run.path, run.path / POLICY_DIR, None)
    ctx = Distributed.from_env(cfg.device)
    if ctx.enabled:
        return _run_sft_sharded(cfg, run, ctx)
    own = shared is None
    shared = shared or SharedEvaluator(cfg)
    try:
        evaluator = shared.get()
        torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        o = cfg.sft.optim
        hparams = _sft_hparams(cfg)
        train = None
        trained = _trained(run)  # killed after training, during the final evaluation: evaluate the saved policy
        source = run.path / POLICY_DIR if trained else cfg.base
        policy = trainable_policy(cfg, source, adapters=not trained)
        if not trained:
            data = sft_transitions(cfg)
            check_action_range(policy, data, cfg)
            _start(run, cfg, "sft", policy.model)

            def evaluate_point(step: int) -> None:
                scores = evaluator.evaluate(policy, f"{run.path.name} at update {step}")
                run.add_point(evaluator.summary("sft", hparams, cfg.seed, step, scores))

            def live_check(step: int) -> bool:
                return _live_kl_check(run, cfg, evaluator, policy, step)

            check = live_check if cfg.eval.kl_every > 0 else None
            train = _train(run, cfg, "sft", policy, data, o, evaluate_point, check)
        summary = _final_sft_evaluation(run, cfg, evaluator, policy, hparams)
    finally:
        if own:
            shared.close()
    return StageResult(run.path, run.path / POLICY_DIR, train, summary)


def _sft_hparams(cfg: RobotConfig) -> dict[str, Any]:
    o = cfg.sft.optim
    hparams: dict[str, Any] = {
        "lr": o.lr,
        "batch_size": o.batch_size,
        "epochs": o.epochs,
        "schedule": o.schedule,
        "image_shift": o.image_shift,
    }
    if cfg.lora.enabled:
        hparams["lora_r"] = cfg.lora.r
    if cfg.kl_budget is not None:
        if cfg.eval.kl_every < 1:
            raise ConfigError(
                f"kl_budget ({cfg.kl_budget:g}): SFT checks it every eval.kl_every updates; "
                "set eval.kl_every to a positive number of updates"
            )
        hparams["kl_budget"] = cfg.kl_budget
    return hparams


def _final_sft_evaluation(
    run: RunFolder, cfg: RobotConfig, evaluator: Any, policy: Any, hparams: dict[str, Any]
) -> dict[str, Any]:
    """Evaluates the trained policy into summary.json, which marks the run finished."""
    meta = read_training_state_meta(training_state_path(run.path))
    step = int(meta["step"])
    summary = evaluator.summary("sft", hparams, cfg.seed, step, evaluator.evaluate(policy, run.path.name))
    if meta.get("stopped"):
        summary["stopped_at_kl_budget"] = True
    run.log(step, "eval", _flat(summary, cfg.task))
    _finish(run, cfg, summary)
    return summary


def _finish(run: RunFolder, cfg: RobotConfig, summary: dict[str, Any]) -> None:
    """summary.json marks the run finished; then its training state goes unless `keep_training_state` (a finished
    run is skipped, never resumed, so the state is only disk: 3x the policy for a full fine-tune)."""
    run.finish(summary)
    if not cfg.keep_training_state:
        training_state_path(run.path).unlink(missing_ok=True)


def _run_sft_sharded(cfg: RobotConfig, run: RunFolder, ctx: Distributed) -> StageResult:
    """SFT across torchrun's processes: all of them train the sharded policy (the last collective is the
    policy folder's save); then the other ranks return, and rank 0 alone evaluates the saved policy folder
    (rollouts need no peers, and no collective follows)."""
    if cfg.eval.during_training_every or cfg.eval.kl_every or cfg.kl_budget is not None:
        raise ConfigError(
            "eval.during_training_every, eval.kl_every and kl_budget evaluate the policy while it "
            f"trains, which needs it whole in one process; this run has {ctx.world_size} (torchrun): "
            "set them to 0 / null, or run SFT in one process"
        )
    if cfg.lora.enabled:
        raise ConfigError(f"lora.enabled: LoRA runs in one process for now; this run has {ctx.world_size} (torchrun)")
    hparams = _sft_hparams(cfg)
    check_distributed(cfg.sft.optim, ctx)
    train = None
    if not _trained(run):  # else killed during the final evaluation: only that is left
        ctx.init()
        torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        policy = configured_policy(cfg, cfg.base, ctx.device)
        data = sft_transitions(cfg)
        check_action_range(policy, data, cfg)
        if ctx.is_main:
            _start(run, cfg, "sft", policy.model)
        train = _train(run, cfg, "sft", policy, data, cfg.sft.optim, ctx=ctx)
        del policy
    if not ctx.is_main:
        return StageResult(run.path, run.path / POLICY_DIR, train)
    base = load_base(cfg)
    evaluator = Evaluator(cfg, base)
    try:
        policy = configured_policy(cfg, run.path / POLICY_DIR, ctx.device)
        summary = _final_sft_evaluation(run, cfg, evaluator, policy, hparams)
    finally:
        evaluator.close()
    return StageResult(run.path, run.path / POLICY_DIR, train, summary)


CLIPPED_FRACTION_LIMIT = 0.05
"""SFT refuses demonstrations with more than this fraction of one dimension's actions outside the base's range."""
ACTION_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")


def clipped_fractions(low: np.ndarray, high: np.ndarray, actions: np.ndarray, margin: float = 0.05) -> np.ndarray:
    """Per action dimension, the fraction of `actions` outside [low, high] widened by `margin` of its width:
    what a tokenizer over that range would clip (the base's own q01 / q99 tails stay inside the margin)."""
    pad = margin * (high - low)
    return ((actions < low - pad) | (actions > high + pad)).mean(axis=0)


def check_action_range(policy: TokenPolicy, data: DemoTransitions, cfg: RobotConfig) -> None:
    """SFT keeps the base's tokenizer, so the KL to the base compares like with like; demonstrations whose
    actions lie outside the base's action range would be learned clipped (a policy that cannot do what was
    shown). Refuse them with the numbers, unless sft.allow_clipped_actions."""
    stats = policy.stats
    mask = np.asarray(stats.mask, dtype=bool)
    fractions = clipped_fractions(np.asarray(stats.q01), np.asarray(stats.q99), data.actions)
    bad = [d for d in range(len(fractions)) if mask[d] and fractions[d] > CLIPPED_FRACTION_LIMIT]
    if not bad or cfg.sft.allow_clipped_actions:
        for d in bad:
            print(f"warning: {fractions[d]:.0%} of the SFT actions in dimension {d} are clipped to the base's range")
        return
    detail = "; ".join(
        f"dimension {d} ({ACTION_NAMES[d] if d < len(ACTION_NAMES) else d}): {fractions[d]:.0%} outside the base's "
        f"[{stats.q01[d]:.4g}, {stats.q99[d]:.4g}], demonstrations span [{data.actions[:, d].min():.4g}, "
        f"{data.actions[:, d].max():.4g}]"
        for d in bad
    )
    raise ConfigError(
        f"sft.datasets {[str(d) for d in cfg.sft.datasets]}: the base ({cfg.base}, norm_stats "
        f"{cfg.dataset_name!r}) cannot express these demonstrations, SFT would learn clipped actions: {detail}. "
        "Make the base with action statistics that cover them (pretrain.norm_stats_datasets), or set "
        "sft.allow_clipped_actions true to train anyway"
    )


def _flat(summary: dict[str, Any], task: str) -> dict[str, float]:
    flat = {
        task: summary["new_task"],
        **summary["prior"],
        "forgetting": summary["forgetting"],
        **summary["predictors"],
    }
    if "new_task_heldout" in summary:
        flat[f"{task}_heldout"] = summary["new_task_heldout"]
    for name, interval in summary.get("success_intervals", {}).get("tasks", {}).items():  # a suite's tasks
        flat[name] = interval["value"]
    if "forecast" in summary:
        flat["forecast/prior_mean"] = summary["forecast"]["prior_mean"]
    return flat


def _live_kl_check(run: RunFolder, cfg: RobotConfig, evaluator: Any, policy: Any, step: int) -> bool:
    """Logs the live KL (and forecast) at `step` (split 'live'); True once it reaches cfg.kl_budget."""
    kl = evaluator.live_kl(policy)
    run.log(step, "live", kl)
    return cfg.kl_budget is not None and kl["forward_kl"] >= cfg.kl_budget


def rl_run_name(cfg: RobotConfig) -> str:
    r = cfg.rl
    variant = (
        ("_10" if r.advantage == "one_zero" else "")
        + ("_ln" if r.length_normalize else "")
        + (f"_clip{r.clip_ratio:g}" if r.clip_ratio is not None else "")
        + ("_uniform" if r.placements == "uniform" else "")
    )
    epochs = f"_ep{r.optim.epochs}" if r.optim.epochs != 1 else ""
    return r.run_name or (
        f"rl_lr{r.optim.lr:g}_bs{r.optim.batch_size}{epochs}_k{r.episodes_per_point}{variant}"
        f"{_lora_suffix(cfg)}_s{cfg.seed}"
    )


def run_rl(cfg: RobotConfig, shared: SharedEvaluator | None = None) -> StageResult:
    """On-policy REINFORCE from the base (vla_razor/robot/rl.py), evaluated at the end into summary.json.
    `shared`: as run_sft's (its simulator workers also roll out RL's episodes).

    The loop is rl.train; this stage wraps it: it resumes from the run's training state, and after every
    iteration logs the metrics (metrics.jsonl, wandb, the progress bar), evaluates every rl.eval_every
    iterations, checks the live KL against kl_budget and saves the training state."""
    one_process_only("robot rl")
    r = cfg.rl
    rl.check_settings(r)
    run = RunFolder(cfg.experiment_dir / "runs" / rl_run_name(cfg))
    run.check_settings(_run_config(cfg, "rl"), NOT_IN_RUN_IDENTITY["rl"])
    if run.is_finished():
        return StageResult(run.path, run.path / POLICY_DIR, None)
    own = shared is None
    shared = shared or SharedEvaluator(cfg)
    try:
        return _train_rl(cfg, run, shared.get())
    finally:
        if own:
            shared.close()


def _train_rl(cfg: RobotConfig, run: RunFolder, evaluator: Evaluator) -> StageResult:
    """run_rl's body: the training (resumed from the run's training state) and the final evaluation."""
    r = cfg.rl
    base = evaluator.base
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    policy = trainable_policy(cfg, cfg.base)
    optimizer = rl.make_optimizer(policy, r)
    state_path = training_state_path(run.path)
    iteration, update, stopped = 0, 0, False
    if _start(run, cfg, "rl", policy.model):
        state = load_training_state(state_path, policy.model, optimizer)
        iteration, update, stopped = int(state["iteration"]), int(state["update"]), bool(state.get("stopped", False))
    resumed_from = iteration
    hparams = {
        "lr": r.optim.lr,
        "batch_size": r.optim.batch_size,
        "epochs": r.optim.epochs,
        "episodes_per_point": r.episodes_per_point,
        "iterations": r.iterations,
        "kl_coef": r.kl_coef,
        "advantage": r.advantage,
        "length_normalize": r.length_normalize,
        "placements": r.placements,
    }
    if r.clip_ratio is not None:
        hparams["clip_ratio"] = r.clip_ratio
    if cfg.lora.enabled:
        hparams["lora_r"] = cfg.lora.r
    if cfg.kl_budget is not None:
        hparams["kl_budget"] = cfg.kl_budget
    check_every = cfg.eval.kl_every or (1 if cfg.kl_budget is not None else 0)
    wandb = WandbMirror(
        cfg.wandb, "vla-razor", f"{cfg.experiment}/{run.path.name}", {"stage": "rl", **to_dict(cfg)}, run.path
    )
    bar = tqdm(total=r.iterations, initial=iteration, unit="iter", desc=run.path.name, disable=not cfg.progress)

    def after_iteration(iteration: int, update: int, metrics: dict[str, float]) -> bool:
        """Logs, the mid-training evaluation and live KL check, then the training state; True: stop (KL budget)."""
        run.log(iteration, "train", metrics)
        wandb.log({f"train/{k}": v for k, v in metrics.items()}, iteration)
        bar.update(1)
        bar.set_postfix(success=f"{metrics['rollout_success']:.2f}", updates=update)
        stopped = False
        if r.eval_every and iteration % r.eval_every == 0 and iteration < r.iterations:
            scores = evaluator.evaluate(policy, f"{run.path.name} at iteration {iteration}")
            run.add_point(evaluator.summary("rl", hparams, cfg.seed, iteration, scores))
        if check_every and iteration % check_every == 0 and iteration < r.iterations:
            stopped = _live_kl_check(run, cfg, evaluator, policy, iteration)
        save_training_state(
            state_path, policy.model, optimizer, {"iteration": iteration, "update": update, "stopped": stopped}
        )
        return stopped

    try:
        if not stopped:
            iteration, update, stopped = rl.train(
                policy,
                optimizer,
                evaluator.rollout,
                r,
                seed=cfg.seed,
                backend=cfg.backend,
                tasks=cfg.new_tasks,
                region=cfg.placement_region,
                base=base,
                iteration=iteration,
                update=update,
                after_iteration=after_iteration,
                progress=cfg.progress,
            )
        bar.close()
        if not _trained(run):
            policy.merge_adapters()
            save_policy(policy, run.path / POLICY_DIR)
        summary = evaluator.summary("rl", hparams, cfg.seed, iteration, evaluator.evaluate(policy, run.path.name))
        if stopped:
            summary["stopped_at_kl_budget"] = True
        run.log(iteration, "eval", _flat(summary, cfg.task))
        _finish(run, cfg, summary)
    finally:
        bar.close()
        wandb.finish()
    return StageResult(run.path, run.path / POLICY_DIR, None, summary, iteration, update, resumed_from)


def configured_policy(cfg: RobotConfig, directory: Path, device: str | None = None) -> TokenPolicy:
    """The policy saved in `directory`, loaded as the config's policy type and dtype, its actions in the
    config's dataset statistics, on `device` (default: the config's)."""
    return load_policy(
        cfg.policy.type,
        directory,
        device=device or resolve_device(cfg.device),
        dataset=cfg.dataset_name,
        dtype=cfg.policy.load_dtype,
    )


def trainable_policy(cfg: RobotConfig, source: Path, adapters: bool = True) -> TokenPolicy:
    """The policy SFT or RL trains: `source` loaded as `policy.type`, with LoRA adapters when `lora.enabled` (and
    `adapters`), so that only they train."""
    policy = configured_policy(cfg, source)
    if cfg.lora.enabled and adapters:
        policy.add_adapters(cfg.lora)
    return policy


class SharedEvaluator:
    """An experiment's evaluator (its base and simulator workers), made when a stage first needs one: stages
    that share it start the workers once, and a rerun whose stages are all finished loads nothing."""

    def __init__(self, cfg: RobotConfig):
        self.cfg = cfg
        self._evaluator: Evaluator | None = None

    def get(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = Evaluator(self.cfg, load_base(self.cfg))
        return self._evaluator

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None


def load_base(cfg: RobotConfig) -> TokenPolicy:
    if not (cfg.base / "config.json").is_file():
        raise FileNotFoundError(
            f"base: {cfg.base} is not a policy folder (no config.json); "
            "run `vla-razor robot pretrain` or point --base at one"
        )
    base = configured_policy(cfg, cfg.base)
    base.model.eval().requires_grad_(False)
    return base


def run_eval(cfg: RobotConfig, policy_dir: Path) -> dict[str, Any]:
    """Evaluates the policy folder `policy_dir` against the experiment's base (the summary's fields). The base
    itself is the experiment's base evaluation (base_eval.json, with the KL frames): made once, then read."""
    one_process_only("robot eval")
    base = load_base(cfg)
    torch.set_num_threads(cfg.threads)
    evaluator = Evaluator(cfg, base)
    try:
        if Path(policy_dir).resolve() == Path(cfg.base).resolve():
            return evaluator.summary("eval", {}, cfg.seed, 0, evaluator.base_results())
        policy = configured_policy(cfg, policy_dir)
        return evaluator.summary("eval", {}, cfg.seed, 0, evaluator.evaluate(policy, str(policy_dir)))
    finally:
        evaluator.close()


def load_robot_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RobotConfig:
    return load_config(RobotConfig, path, overrides)


@dataclass
class PipelineResult:
    table: list[dict[str, Any]]
    """One row per model: base, then each fine-tuned run."""
    report_dir: Path
    summary_path: Path
    seconds: float


def collect_sft_demos(cfg: RobotConfig) -> None:
    """Collects `collect` (resumable; a finished collection is left as it is) when sft.datasets need it;
    empty sft.datasets means the collection itself (set here, for the stages that follow)."""
    one_process_only("collecting demonstrations")
    if not cfg.sft.datasets:
        cfg.sft.datasets = [cfg.collect.out]

    if cfg.collect.camera_size != cfg.camera_size:
        raise ConfigError(
            f"collect.camera_size ({cfg.collect.camera_size}) must equal camera_size ({cfg.camera_size}): "
            "the policy is trained and evaluated on images of one size"
        )
    if all((Path(d) / "dataset_statistics.json").is_file() for d in cfg.sft.datasets):
        return
    if [Path(d) for d in cfg.sft.datasets] != [Path(cfg.collect.out)]:
        missing = [str(d) for d in cfg.sft.datasets if not (Path(d) / "dataset_statistics.json").is_file()]
        raise FileNotFoundError(
            f"sft.datasets: {missing} are not finished datasets, and collect.out "
            f"({cfg.collect.out}) is not what sft.datasets asks for; collect them first"
        )
    print(f"collecting SFT demonstrations of {cfg.task} into {cfg.collect.out}")
    print_summary(
        Collector(replace(cfg.collect, task=cfg.task, region=cfg.collect.region or cfg.region)).run(), cfg.collect.out
    )


def experiment_runs(experiment_dir: Path, task: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every finished run of an experiment as a summary row (SFT first, then RL, each by learning rate; the new
    task's success under its id `task`), and the base's evaluation they were measured against. Where the run kept
    per-episode results, their 95 % intervals: `intervals` (the new task's and each probe's success, Wilson;
    forgetting per probe and on the mean, paired over the same episodes); {} for runs made before."""

    def columns(s: dict[str, Any]) -> dict[str, Any]:
        base = s["base"]
        intervals = interval_summary(
            base.get("prior_examples", {}),
            s.get("prior_examples", {}),
            base.get("new_task_examples", []),
            s.get("new_task_examples", []),
        )
        return {
            task: s["new_task"],
            **_heldout(s, task),
            **s["prior"],
            "forgetting": s["forgetting"],
            **s["predictors"],
            "intervals": {
                **({task: intervals["new_task"]} if "new_task" in intervals else {}),
                **intervals["prior"],
                "forgetting": intervals["forgetting"],
            },
        }

    return experiment_table(experiment_dir, "robot", ("sft", "rl"), columns)


def _heldout(summary: dict[str, Any], task: str) -> dict[str, float]:
    """<task>_heldout of a run or base evaluated at the RL grid's points (eval.heldout_episodes), else nothing."""
    return {f"{task}_heldout": summary["new_task_heldout"]} if "new_task_heldout" in summary else {}


def _base_intervals(base: dict[str, Any], task: str) -> dict[str, Any]:
    """The base's success rates' 95 % intervals (Wilson, over its episodes), where its results kept them."""
    intervals = interval_summary(base.get("prior_examples", {}), {}, base.get("new_task_examples", []))
    return {**({task: intervals["base_new_task"]} if "base_new_task" in intervals else {}), **intervals["base_prior"]}


def summarize_experiment(cfg: RobotConfig, extra: dict[str, str] | None = None) -> PipelineResult:
    """<experiment>/summary.json ({"runs": [...], "base": {...}, "config": ...}) and <experiment>/report/ from
    every finished run of the experiment, however its stages were run."""
    from vla_razor.analysis.report import write_experiment_summary  # matplotlib: only when a report is written

    started = time.perf_counter()
    runs, base = experiment_runs(cfg.experiment_dir, cfg.task)
    table = [
        {
            "method": "base",
            "run": str(cfg.base),
            "hparams": {},
            cfg.task: base["new_task"],
            **_heldout(base, cfg.task),
            **base["prior"],
            "forgetting": 0.0,
            **dict.fromkeys(ROBOT_PREDICTORS, 0.0),
        },
        *runs,
    ]
    summary_path, report = write_experiment_summary(
        cfg.experiment_dir,
        {
            "runs": runs,
            "base": {cfg.task: base["new_task"], **_heldout(base, cfg.task), **base["prior"]},
            "base_intervals": _base_intervals(base, cfg.task),
            "config": to_dict(cfg),
        },
        title=f"RL's Razor, robot ({cfg.backend}): {cfg.experiment}",
        extra=extra or {},
    )
    return PipelineResult(table, report.html_path.parent, summary_path, time.perf_counter() - started)


def run_pipeline(cfg: RobotConfig) -> PipelineResult:
    """The main job: SFT demonstrations, SFT, RL, evaluation of base / SFT / RL, and the forgetting report.

    The summary and the report cover every finished run of the experiment, so running the pipeline (or the
    sft / rl stages) again with other settings adds runs to the comparison; finished runs are not redone."""
    one_process_only("robot pipeline")
    started = time.perf_counter()
    collect_sft_demos(cfg)
    shared = SharedEvaluator(cfg)  # one base and one set of simulator workers for both stages
    try:
        run_sft(cfg, shared)
        run_rl(cfg, shared)
    finally:
        shared.close()
    result = summarize_experiment(cfg, {"pipeline seconds": f"{time.perf_counter() - started:.0f}"})
    result.seconds = time.perf_counter() - started
    return result
