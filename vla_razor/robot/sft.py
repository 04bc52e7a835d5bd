"""Behaviour cloning on demonstrations: the base policy's pretraining and SFT (paper, Appendix B.2).

Both are the same loop: teacher-forced cross-entropy of the 7 action tokens of each demonstrated action
(vla_razor.core.sft_loss over the 256 bins), AdamW, gradient-norm clipping, a warmup schedule, one or more
epochs over the transitions in a (seed, epoch)-fixed order. Every `checkpoint_every` updates the whole
training state goes to `<run>/checkpoints/training_state.safetensors` (atomically), so a rerun after Ctrl-C or
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from vla_razor import core
from vla_razor.distributed import (
    Distributed,
    check_distributed,
    clip_sharded_grad_norm,
    load_sharded_training_state,
    prepare_sharded,
    rank_share,
    save_sharded_policy,
    save_sharded_training_state,
)
from vla_razor.optim import OptimConfig, check_finite, lr_multiplier, make_adamw
from vla_razor.policies.base import TokenPolicy
from vla_razor.robot.config import FSDPConfig
from vla_razor.robot.data import DemoTransitions, random_shifts
from vla_razor.runs import RunFolder, WandbMirror, save_policy
from vla_razor.runtime import peak_memory_metrics
from vla_razor.training_state import load_training_state, save_training_state, trainable_parameters, training_state_path

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


def total_updates(n_rows: int, optim: OptimConfig) -> int:
    per_epoch = math.ceil(n_rows / optim.batch_size)
    total = per_epoch * optim.epochs
    return min(total, optim.max_steps) if optim.max_steps is not None else total


def behaviour_clone(
    policy: TokenPolicy,
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
    """Trains `policy` in place on `data`; resumes from `run`'s training state if present.

    `on_update(step)` runs after every `every`-th update (e.g. a mid-training evaluation), before the
    training state of that update is saved. `stop_check(step)` runs after every `check_every`-th update (e.g. a
    live KL check against a budget); True ends training there: that model is the run's final one, and the
    training state says so, so a rerun does not train on.

    `dist` with world_size > 1 (torchrun, process group initialized): every rank calls this with the same
    arguments; the policy is sharded in place with `fsdp`'s options (FSDPConfig() by default) and stays sharded
    afterwards (the final weights are in the policy folder). `optim.batch_size` must divide by the world size;
    on_update and stop_check are not supported there (they would evaluate a sharded policy on one rank).
    """
    for name in ("batch_size", "epochs"):
        if getattr(optim, name) < 1:
            raise ValueError(f"optim.{name}: must be >= 1, got {getattr(optim, name)}")
    if optim.image_shift < 0:
        raise ValueError(f"optim.image_shift: pixels, >= 0, got {optim.image_shift}")
    ctx = dist if dist is not None else Distributed()
    if ctx.enabled:
        check_distributed(optim, ctx, on_update is not None or stop_check is not None)
        prepare_sharded(policy, ctx, fsdp if fsdp is not None else FSDPConfig())
        progress = progress and ctx.is_main
    model = policy.model
    params = list(trainable_parameters(model).values())
    optimizer = make_adamw(params, optim)
    total = total_updates(len(data), optim)
    per_epoch = math.ceil(len(data) / optim.batch_size)
    state_path = training_state_path(run.path)
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
            rows = data.epoch_order(seed, epoch)[k * optim.batch_size : (k + 1) * optim.batch_size]
            share, scale = rank_share(rows, ctx)
            images, instructions, actions = data.rows(share)
            images = random_shifts(images, share, optim.image_shift, seed, step)
            batch = policy.encode(images, instructions)
            targets = policy.encode_actions(actions)
            logits = policy.action_logits(batch, targets)
            loss = core.sft_loss(logits, policy.bin_index(targets.cpu()).to(logits.device), None)
            optimizer.zero_grad(set_to_none=True)
            if ctx.enabled:
                (loss * scale).backward()
                grad_norm = clip_sharded_grad_norm(params, optim.max_grad_norm)
            else:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm)
            check_finite(f"behaviour cloning ({run.path.name})", step, loss.detach(), grad_norm)
            lr = optim.lr * lr_multiplier(step, total, optim.warmup_steps, optim.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            step += 1
            made += 1
            loss_value = float(loss.detach())
            with torch.no_grad():
                accuracy = float((logits.argmax(-1).cpu() == policy.bin_index(targets.cpu())).float().mean())
            if ctx.enabled:  # the global batch's values: each rank's share weighted as in its loss
                loss_value = ctx.all_reduce_mean(loss_value * scale)
                accuracy = ctx.all_reduce_mean(accuracy * scale)
            metrics = {
                "loss": loss_value,
                "token_accuracy": accuracy,
                "grad_norm": float(grad_norm),
                "lr": lr,
                "epoch": epoch + (k + 1) / per_epoch,
                "transitions_per_s": made * optim.batch_size / max(time.perf_counter() - started, 1e-9),
                **peak_memory_metrics(policy.device),
            }
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
            policy.merge_adapters()
            save_policy(policy, policy_dir)
    return TrainResult(policy_dir, step, resumed_from, loss_value, time.perf_counter() - started)
