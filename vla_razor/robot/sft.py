"""Behaviour cloning on demonstrations: the base policy's pretraining and SFT (paper, Appendix B.2).

Both are the same loop: teacher-forced cross-entropy of the 7 action tokens of each demonstrated action
(vla_razor.core.sft_loss over the 256 bins), AdamW, gradient-norm clipping, a warmup schedule, one or more
epochs over the transitions in a (seed, epoch)-fixed order. Every `checkpoint_every` updates the whole
training state goes to `<run>/checkpoints/train_state.safetensors` (atomically), so a rerun after Ctrl-C or
kill -9 continues from there and makes the same later updates as an uninterrupted run. At the end the
policy is saved in the openvla-7b layout to `<run>/policy/` (config.json with norm_stats, safetensors).

Under torchrun with N > 1 processes (vla_razor.distributed) the same loop runs data-parallel on an FSDP2-sharded
policy: every update still takes the same `optim.batch_size` rows in the same order, each rank its contiguous
1 / N of them, and each rank's loss is scaled so that FSDP's gradient average is the one-process gradient of
the batch mean; loss, token accuracy and grad norm are logged as global values. Rank 0 alone writes metrics,
wandb, the progress bar, the training state (gathered whole, the one-process file layout, so a run resumes
with any number of processes) and the final policy folder.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vla_razor import core
from vla_razor.distributed import (
    Distributed, full_model_state, load_sharded_training_state, save_sharded_training_state, shard_model,
)
from vla_razor.optim import lr_multiplier
from vla_razor.robot.config import FSDPConfig, OptimConfig
from vla_razor.robot.data import DemoTransitions
from vla_razor.runs import RunFolder, WandbMirror
from vla_razor.training_state import load_training_state, save_training_state, trainable_parameters

TRAIN_STATE = "train_state"
POLICY_DIR = "policy"


@dataclass
class TrainResult:
    policy_dir: Path
    steps: int
    """Updates made in total (including those of earlier, interrupted tries)."""
    resumed_from: int
    """The update the run resumed from (0: a fresh start)."""
    final_loss: float
    seconds: float


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def total_updates(n_rows: int, optim: OptimConfig) -> int:
    per_epoch = math.ceil(n_rows / optim.batch_size)
    total = per_epoch * optim.epochs
    return min(total, optim.max_steps) if optim.max_steps is not None else total


def behaviour_clone(
    policy: Any,
    data: DemoTransitions,
    optim: OptimConfig,
    run: RunFolder,
    *,
    seed: int = 0,
    checkpoint_every: int = 50,
    progress: bool = True,
    wandb: WandbMirror | None = None,
    on_update: Callable[[int], None] | None = None,
    every: int = 0,
    stop_check: Callable[[int], bool] | None = None,
    check_every: int = 0,
    dist: Distributed | None = None,
    fsdp: FSDPConfig | None = None,
) -> TrainResult:
    """Trains `policy` (an OpenVLAPolicy) in place on `data`; resumes from `run`'s training state if present.

    `on_update(step)` runs after every `every`-th update (e.g. a mid-training evaluation), before the
    training state of that update is saved. `stop_check(step)` runs after every `check_every`-th update (e.g. a
    live KL check against a budget); True ends training there: that model is the run's final one, and the
    training state says so, so a rerun does not train on.

    `dist` with world_size > 1 (torchrun, process group initialized): every rank calls this with the same
    arguments; the policy is sharded in place with `fsdp`'s options (FSDPConfig() by default) and stays sharded
    afterwards (the final weights are in the policy folder). `optim.batch_size` must divide by the world size;
    on_update and stop_check are not supported there (they would evaluate a sharded policy on one rank).
    """
    from tqdm import tqdm

    for name in ("batch_size", "epochs"):
        if getattr(optim, name) < 1:
            raise ValueError(f"optim.{name}: must be >= 1, got {getattr(optim, name)}")
    ctx = dist if dist is not None else Distributed()
    if ctx.enabled:
        check_distributed(optim, ctx, on_update is not None or stop_check is not None)
        prepare_sharded(policy, ctx, fsdp if fsdp is not None else FSDPConfig())
        progress = progress and ctx.is_main
    model = policy.model
    params = list(trainable_parameters(model).values())
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    total = total_updates(len(data), optim)
    per_epoch = math.ceil(len(data) / optim.batch_size)
    state_path = run.path / "checkpoints" / f"{TRAIN_STATE}.safetensors"
    step, stopped = 0, False
    if ctx.enabled:
        state = load_sharded_training_state(state_path, model, optimizer, ctx)
        if state is not None:
            step, stopped = int(state["step"]), bool(state.get("stopped", False))
    elif state_path.is_file():
        state = load_training_state(state_path, model, optimizer)
        step, stopped = int(state["step"]), bool(state.get("stopped", False))
    resumed_from = step
    model.train()
    started = time.perf_counter()
    loss_value = float("nan")
    bar = tqdm(total=total, initial=step, unit="update", desc=run.path.name, disable=not progress, dynamic_ncols=True)
    made = 0
    try:
        while step < total and not stopped:
            epoch, k = divmod(step, per_epoch)
            rows = data.epoch_order(seed, epoch)[k * optim.batch_size:(k + 1) * optim.batch_size]
            share, scale = rank_share(rows, ctx)
            images, instructions, actions = data.rows(share)
            batch = policy.encode(images, instructions)
            targets = policy.encode_actions(actions)
            logits = policy.action_logits(batch, targets)
            loss = core.sft_loss(logits, policy.tokenizer.bin_index(targets.cpu()).to(logits.device), None)
            optimizer.zero_grad(set_to_none=True)
            if ctx.enabled:
                (loss * scale).backward()
                grad_norm = clip_sharded_grad_norm(params, optim.max_grad_norm)
            else:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm)
            lr = optim.lr * lr_multiplier(step, total, optim.warmup_steps, optim.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            step += 1
            made += 1
            loss_value = float(loss.detach())
            with torch.no_grad():
                accuracy = float((logits.argmax(-1).cpu() == policy.tokenizer.bin_index(targets.cpu())).float().mean())
            if ctx.enabled:  # the global batch's values: each rank's share weighted as in its loss
                loss_value = ctx.all_reduce_mean(loss_value * scale)
                accuracy = ctx.all_reduce_mean(accuracy * scale)
            metrics = {"loss": loss_value, "token_accuracy": accuracy, "grad_norm": float(grad_norm), "lr": lr,
                       "epoch": epoch + (k + 1) / per_epoch,
                       "transitions_per_s": made * optim.batch_size / max(time.perf_counter() - started, 1e-9)}
            if ctx.is_main:
                run.log(step, "train", metrics)
                if wandb is not None:
                    wandb.log({f"train/{k_}": v for k_, v in metrics.items()}, step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{accuracy:.2f}")
            if on_update is not None and every > 0 and step % every == 0 and step < total:
                model.eval()
                on_update(step)
                model.train()
            if stop_check is not None and check_every > 0 and step % check_every == 0 and step < total:
                model.eval()
                stopped = stop_check(step)
                model.train()
            if step % checkpoint_every == 0 or step == total or stopped:
                meta = {"step": step, "total": total, "stopped": stopped}
                if ctx.enabled:
                    save_sharded_training_state(state_path, model, optimizer, meta, ctx)
                else:
                    save_training_state(state_path, model, optimizer, meta)
    finally:
        bar.close()
    model.eval()
    policy_dir = run.path / POLICY_DIR
    if step >= total or stopped:
        if ctx.enabled:
            save_sharded_policy(policy, policy_dir, ctx)
        else:
            save_policy(policy, policy_dir)
    return TrainResult(policy_dir, step, resumed_from, loss_value, time.perf_counter() - started)


def check_distributed(optim: OptimConfig, ctx: Distributed, has_hooks: bool = False) -> None:
    """What a multi-process run cannot do, said before anything is sharded (the stages call it before they
    write anything). ConfigError is a ValueError the CLI prints without a traceback."""
    from vla_razor.config import ConfigError

    if optim.batch_size % ctx.world_size:
        raise ConfigError(f"optim.batch_size ({optim.batch_size}) must be a multiple of the number of processes "
                         f"({ctx.world_size}): each takes an equal share of every batch; use e.g. "
                         f"{ctx.world_size * max(1, round(optim.batch_size / ctx.world_size))}")
    if has_hooks:
        raise ConfigError("mid-training evaluations and live KL checks (eval.during_training_every, eval.kl_every, "
                         "kl_budget) need the whole policy on one process: run them with one process")


def prepare_sharded(policy: Any, ctx: Distributed, fsdp: FSDPConfig) -> None:
    """Shards `policy.model` across the ranks; mixed precision bf16 first makes float32 master weights."""
    param_dtype = reduce_dtype = None
    if fsdp.mixed_precision == "bf16":
        policy.model.float()
        param_dtype, reduce_dtype = torch.bfloat16, torch.float32
    elif fsdp.mixed_precision != "none":
        raise ValueError(f"fsdp.mixed_precision: expected 'none' or 'bf16', got {fsdp.mixed_precision!r}")
    shard_model(policy.model, ctx.mesh, param_dtype=param_dtype, reduce_dtype=reduce_dtype,
                reshard_after_forward=fsdp.reshard_after_forward)


def rank_share(rows: np.ndarray, ctx: Distributed) -> tuple[np.ndarray, float]:
    """This rank's contiguous share of a batch's rows and the factor on its mean loss that makes FSDP's
    gradient average (sum over ranks / world) equal to the gradient of the whole batch's mean loss.

    Shares differ by at most one row (an epoch's last, shorter batch); a rank left without rows computes on
    the batch's first row with factor 0, so that every rank still takes part in the collectives.
    """
    if not ctx.enabled:
        return rows, 1.0
    share = np.array_split(rows, ctx.world_size)[ctx.rank]
    if len(share) == 0:
        return rows[:1], 0.0
    return share, len(share) * ctx.world_size / len(rows)


def clip_sharded_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ over DTensor gradient shards: the global norm (gathered with full_tensor) scales all."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def save_sharded_policy(policy: Any, directory: Path, ctx: Distributed) -> None:
    """The sharded policy's weights gathered whole to rank 0 and saved as `save_policy` does, in the policy
    config's dtype (bf16 mixed precision trains float32 master weights). Collective."""
    from vla_razor.policies.openvla import OpenVLAPolicy
    from vla_razor.policies.openvla.modeling_openvla import DTYPES, build_model

    full = full_model_state(policy.model)
    if ctx.is_main:
        dtype = DTYPES[policy.config.dtype]
        plain = build_model(policy.config, device="meta")
        plain.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in full.items()},
                              strict=True, assign=True)
        save_policy(OpenVLAPolicy(plain, policy.processor, dataset=policy.dataset), directory)
    ctx.barrier()


def save_policy(policy: Any, directory: Path) -> None:
    """Writes the policy folder whole or not at all: into a sibling temporary folder, then renamed."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def set_norm_stats(policy: Any, stats: dict[str, Any], dataset: str) -> None:
    """Makes `stats[dataset]` the policy's action statistics (pretraining: the demonstrations' own)."""
    from vla_razor.policies.openvla.action_tokenizer import action_stats

    policy.config.norm_stats = {**(policy.config.norm_stats or {}), **stats}
    policy.config.default_dataset = dataset
    policy.dataset = dataset
    policy.stats = action_stats(policy.config.norm_stats, dataset)
    policy.action_dim = policy.stats.action_dim


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
