"""The robot experiment's stages as the CLI runs them: each reads a RobotConfig and writes a run folder.

    pretrain: a fresh tiny OpenVLA policy, behaviour-cloned on expert demonstrations of every task -> the base;
    sft:      the base, fine-tuned on pick-can demonstrations (by default the expert style the base did not learn).
A stage whose run folder holds a finished policy is skipped; one with a training state resumes from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vla_razor.config import load_config, to_dict
from vla_razor.robot.config import RobotConfig
from vla_razor.robot.data import DemoTransitions
from vla_razor.robot.sft import (
    POLICY_DIR, TRAIN_STATE, TrainResult, behaviour_clone, resolve_device, seed_everything, set_norm_stats,
)
from vla_razor.runs import RunFolder, WandbMirror
from vla_razor.training_state import read_training_state_meta


@dataclass
class StageResult:
    run_dir: Path
    policy_dir: Path
    train: TrainResult | None
    """None when the stage was already finished."""
    summary: dict[str, Any] | None = None
    """The run's summary.json (stages that evaluate)."""


def _trained(run: RunFolder) -> bool:
    return (run.path / POLICY_DIR / "model.safetensors.index.json").is_file()


def _start(run: RunFolder, cfg: RobotConfig, stage: str) -> bool:
    """Creates or reopens the run folder; True if it resumes an interrupted try."""
    state = run.path / "checkpoints" / f"{TRAIN_STATE}.safetensors"
    resuming = state.is_file()
    if resuming:
        run.drop_metrics_after(int(read_training_state_meta(state)["step"]))
    run.start({"stage": stage, **to_dict(cfg)}, fresh=not resuming)
    return resuming


def _train(run: RunFolder, cfg: RobotConfig, stage: str, policy: Any, data: DemoTransitions, optim: Any,
           on_update: Any = None) -> TrainResult:
    wandb = WandbMirror(cfg.wandb, "vla-razor", f"{cfg.experiment}/{run.path.name}", {"stage": stage, **to_dict(cfg)},
                        run.path)
    try:
        return behaviour_clone(policy, data, optim, run, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every,
                               progress=cfg.progress, wandb=wandb, on_update=on_update,
                               every=cfg.eval.during_training_every)
    finally:
        wandb.finish()
        data.close()


def run_pretrain(cfg: RobotConfig) -> StageResult:
    """The base policy: a fresh model from `pretrain.policy_config`, action statistics from the demonstrations."""
    from vla_razor.policies.openvla import OpenVLAConfig, OpenVLAPolicy

    p = cfg.pretrain
    run = RunFolder(p.out)
    if _trained(run):
        return StageResult(run.path, run.path / POLICY_DIR, None)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = DemoTransitions(list(p.datasets))
    policy_config = load_config(OpenVLAConfig, p.policy_config)
    policy = OpenVLAPolicy.from_config(policy_config, device=resolve_device(cfg.device), seed=cfg.seed)
    set_norm_stats(policy, data.action_statistics(cfg.dataset_name), cfg.dataset_name)
    _start(run, cfg, "pretrain")
    result = _train(run, cfg, "pretrain", policy, data, p.optim)
    return StageResult(run.path, result.policy_dir, result)


def sft_run_name(cfg: RobotConfig) -> str:
    o = cfg.sft.optim
    return cfg.sft.run_name or f"sft_lr{o.lr:g}_bs{o.batch_size}_ep{o.epochs}_s{cfg.seed}"


def run_sft(cfg: RobotConfig) -> StageResult:
    """SFT of the base on `sft.datasets` with the base's own action statistics (its tokenizer is kept), then
    the evaluation; summary.json, written last, marks the run finished."""
    from vla_razor.policies.openvla import OpenVLAPolicy
    from vla_razor.robot.evaluate import Evaluator

    run = RunFolder(cfg.experiment_dir / "runs" / sft_run_name(cfg))
    if run.is_finished():
        return StageResult(run.path, run.path / POLICY_DIR, None)
    base = load_base(cfg)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    o = cfg.sft.optim
    hparams = {"lr": o.lr, "batch_size": o.batch_size, "epochs": o.epochs, "schedule": o.schedule}
    evaluator = Evaluator(cfg, base)
    try:
        train = None
        policy = OpenVLAPolicy.from_pretrained(cfg.base, device=resolve_device(cfg.device), dataset=cfg.dataset_name)
        if not _trained(run):
            data = DemoTransitions(list(cfg.sft.datasets))
            _start(run, cfg, "sft")

            def evaluate_point(step: int) -> None:
                run.add_point(evaluator.summary("sft", hparams, cfg.seed, step, evaluator.evaluate(policy)))

            train = _train(run, cfg, "sft", policy, data, o, evaluate_point)
        else:
            policy = OpenVLAPolicy.from_pretrained(run.path / POLICY_DIR, device=resolve_device(cfg.device))
        step = int(read_training_state_meta(run.path / "checkpoints" / f"{TRAIN_STATE}.safetensors")["step"])
        summary = evaluator.summary("sft", hparams, cfg.seed, step, evaluator.evaluate(policy))
        run.log(step, "eval", _flat(summary))
        run.finish(summary)
    finally:
        evaluator.close()
    return StageResult(run.path, run.path / POLICY_DIR, train, summary)


def _flat(summary: dict[str, Any]) -> dict[str, float]:
    return {"pick_can": summary["new_task"], **summary["prior"], "forgetting": summary["forgetting"],
            **summary["predictors"]}


def load_base(cfg: RobotConfig) -> Any:
    from vla_razor.policies.openvla import OpenVLAPolicy

    if not (cfg.base / "config.json").is_file():
        raise FileNotFoundError(f"base: {cfg.base} is not a policy folder (no config.json); "
                                "run `vla-razor robot pretrain` or point --base at one")
    base = OpenVLAPolicy.from_pretrained(cfg.base, device=resolve_device(cfg.device), dataset=cfg.dataset_name)
    base.model.eval().requires_grad_(False)
    return base


def run_eval(cfg: RobotConfig, policy_dir: Path) -> dict[str, Any]:
    """Evaluates the policy folder `policy_dir` against the experiment's base (the summary's fields)."""
    from vla_razor.policies.openvla import OpenVLAPolicy
    from vla_razor.robot.evaluate import Evaluator

    base = load_base(cfg)
    torch.set_num_threads(cfg.threads)
    evaluator = Evaluator(cfg, base)
    try:
        policy = OpenVLAPolicy.from_pretrained(policy_dir, device=resolve_device(cfg.device), dataset=cfg.dataset_name)
        return evaluator.summary("eval", {}, cfg.seed, 0, evaluator.evaluate(policy))
    finally:
        evaluator.close()


def load_robot_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RobotConfig:
    return load_config(RobotConfig, path, overrides)
