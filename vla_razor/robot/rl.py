"""On-policy REINFORCE on the new task (pick-can by default) with a reward-normalization baseline (paper, B.2).

One iteration (`reinforce_iteration`, read top to bottom):
  1. roll out `episodes_per_point` episodes (default 5) at every point, a (task, placement) pair: every grid point
     (or, `placements: uniform`, as many placements drawn afresh over the region) of each of the new task's tasks,
     one or a suite's (`iteration_points`; on LIBERO a placement is a stored init state), with the current policy,
     sampling the 7 action tokens at `temperature` (1.0: the policy's own distribution) with `PolicyActor`, on
     the parallel simulator workers (envs/rollout.py);
  2. reward = 1 if the episode succeeded, else 0; the advantage of an episode is its reward normalized
     within the episodes of its point, A = (r - mean) / (std + eps) (`baseline: group`), or within the
     whole iteration (`baseline: batch`); a group whose episodes all succeeded or all failed gives A = 0
     (`advantage: one_zero`: A = r, 1-0 Reinforce);
  3. every step of an episode is a (image, its task's instruction, 7 sampled tokens) row carrying the episode's A (with
     `length_normalize`, scaled by mean length / episode length, so long failures do not outweigh short
     successes);
  4. the rows with A != 0 are shuffled and cut into batches of `optim.batch_size`, `optim.epochs` times (each
     pass in a fresh order: with 1-0 advantages, several passes are several epochs of SFT on the iteration's own
     successes, more learning per simulated episode);
  5. each batch is one AdamW update of vla_razor.core.reinforce_loss, -mean(A * sum_d log pi(token_d | ...)),
     with grad-norm clipping (with `clip_ratio`, the clipped surrogate of vla_razor.core.grpo_loss instead, the
     ratios taken to the log-probs the rollout policy gave the sampled tokens, computed before the first update;
     at ratio 1 its gradient is REINFORCE's); with `kl_coef` > 0, + kl_coef * the reverse KL(pi || pi0) **per action dimension**
     (exact over the bins at each dimension, along the rollout's own sampled actions, averaged over the 7: the
     whole action's reverse KL by the chain rule, / 7; logged as `reverse_kl_per_dim`; off by default, as in the
     paper). Evaluations report whole-action KLs, 7x this scale;
  6. the iteration's metrics: rollout success, env steps and their rate, rows, updates, mean loss.
`train` repeats it; its caller's `after_iteration` hook does the bookkeeping (logs, evaluations, the training
state). Rollout seeds and sampling are functions of (seed, iteration), so a run resumed at an iteration makes
the same later iterations as one never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data_collection.collect import attempt_seed
from envs.grids import Region, grid_points, placement_options, uniform_points
from envs.rollout import EpisodeSpec
from envs.tasks import DEFAULT_TASK
from vla_razor import core
from vla_razor.config import ConfigError
from vla_razor.optim import check_finite, lr_multiplier, make_adamw
from vla_razor.policies.base import TokenPolicy
from vla_razor.robot.config import RLConfig
from vla_razor.runtime import peak_memory_metrics
from vla_razor.training_state import trainable_parameters


def episode_key(spec: Any) -> list[int]:
    """An episode's identity as seed words: its task and reset options (hashed) and its env seed. Not max_steps (a
    shorter cap cuts the same episode short) and not its position in a list of episodes, so its sampling noise, and
    so its outcome, does not depend on what else is run beside it."""
    text = json.dumps([spec.task, spec.options], sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[:8], "little"), int(spec.seed)]


class PolicyActor:
    """The callable ParallelRollout feeds: one batched forward per control step for all running episodes.

    temperature 0 is greedy. Sampling draws each row's noise from (seed, the episode's identity, step)
    (`episode_key`: task, options, env seed), so an episode's actions depend neither on which episodes share its
    batch (ParallelRollout's batches depend on timing) nor on where it stands in the list of episodes run (an
    evaluation that adds other episodes leaves its drawer episodes as they were).
    With `record`, the sampled action tokens are kept per (episode index, step), for the RL update.
    """

    def __init__(self, policy: TokenPolicy, temperature: float = 0.0, seed: int = 0, record: bool = False):
        self.policy = policy
        self.temperature = temperature
        self.seed = seed
        self.record = record
        self.tokens: dict[tuple[int, int], torch.Tensor] = {}

    def row_noise(self, keys: Sequence[int | Sequence[int]], steps: Sequence[int]) -> torch.Tensor:
        """Uniform noise [B, D, n_bins], each row from its own (seed, key, step) stream; a key is an int or a list
        of ints (an `episode_key`)."""
        shape = (self.policy.action_dim, int(self.policy.vocab_ids.numel()))
        rows = []
        for key, step in zip(keys, steps):
            words = [int(k) for k in np.atleast_1d(np.asarray(key, dtype=object))]
            entropy = np.random.SeedSequence([self.seed, *words, int(step)])
            rows.append(
                torch.rand(
                    shape, generator=torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]) >> 1)
                )
            )
        return torch.stack(rows)

    @torch.no_grad()
    def __call__(self, batch: Any) -> np.ndarray:
        inputs = self.policy.encode(list(batch.images), list(batch.instructions))
        noise = self.row_noise([episode_key(s) for s in batch.specs], batch.steps) if self.temperature > 0 else None
        sample = self.policy.sample(inputs, temperature=self.temperature, uniform_noise=noise)
        if self.record:
            tokens = sample.tokens.cpu()  # one device-to-host copy for the batch, not one wait per row
            for row, (episode, step) in enumerate(zip(batch.episodes, batch.steps)):
                self.tokens[(int(episode), int(step))] = tokens[row].clone()
        return np.asarray(sample.actions, dtype=np.float32)


def check_settings(r: RLConfig) -> None:
    """What the loop cannot run, said before a run folder is made."""
    if r.optim.schedule != "constant":
        raise ConfigError("rl.optim.schedule: on-policy RL supports 'constant' (with warmup) only, as the paper")
    if len(r.grid) != 2 or min(r.grid) < 1 or r.episodes_per_point < 1 or r.iterations < 1:
        raise ConfigError("rl.grid ([nx, ny]), rl.episodes_per_point and rl.iterations must be positive")
    if r.optim.epochs < 1:
        raise ConfigError(f"rl.optim.epochs: passes over each iteration's rows, at least 1 (got {r.optim.epochs})")
    if r.temperature != 1.0:
        raise ConfigError(
            f"rl.temperature: on-policy REINFORCE samples the policy's own distribution, 1.0 (got "
            f"{r.temperature}); the update scores actions with untempered log-probabilities, so "
            "another temperature would be off-policy"
        )
    if r.optim.image_shift:
        raise ConfigError(
            "rl.optim.image_shift: image shifts are for behaviour cloning; RL trains on the images it saw"
        )
    if r.optim.max_steps is not None:
        raise ConfigError(
            "rl.optim.max_steps: RL's length is rl.iterations (each makes the updates its rows give); "
            "leave rl.optim.max_steps unset"
        )


def make_optimizer(policy: TokenPolicy, r: RLConfig) -> torch.optim.Optimizer:
    """AdamW over the policy's trainable parameters (its learning rate is set before every update); float32
    master weights with ``rl.optim.master_weights: float32``."""
    params = list(trainable_parameters(policy.model).values())
    return make_adamw(params, r.optim)


def train(
    policy: TokenPolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Any,
    r: RLConfig,
    *,
    seed: int,
    backend: str = "embedded",
    tasks: Sequence[str] = (DEFAULT_TASK,),
    region: Region | None = None,
    base: TokenPolicy | None = None,
    iteration: int = 0,
    update: int = 0,
    after_iteration: Callable[[int, int, dict[str, float]], bool] | None = None,
    progress: bool = False,
) -> tuple[int, int, bool]:
    """Iterations `iteration`..`r.iterations` - 1 of REINFORCE on `policy`, in place, on `rollout`'s workers, on the
    new task's `tasks` (ids of envs/tasks.py: one, or a suite's) at placements in `region` (None: each task's own),
    starting at update count `update` (a resumed run
    passes its saved counts).

    After each iteration, `after_iteration(iterations_done, updates_done, metrics)` does the caller's bookkeeping;
    True stops training there (e.g. a KL budget reached). Returns (iterations done, updates done, stopped)."""
    started, made, stopped = time.perf_counter(), 0, False
    while iteration < r.iterations and not stopped:
        points = iteration_points(r, seed, iteration, backend, tasks, region)
        metrics, update = reinforce_iteration(
            policy,
            optimizer,
            rollout,
            points,
            r,
            seed=seed,
            iteration=iteration,
            update=update,
            backend=backend,
            base=base,
            progress=progress,
        )
        iteration += 1
        made += 1
        metrics["iterations_per_min"] = made * 60 / (time.perf_counter() - started)
        if after_iteration is not None:
            stopped = after_iteration(iteration, update, metrics)
    return iteration, update, stopped


def reinforce_iteration(
    policy: TokenPolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Any,
    points: list[Point],
    r: RLConfig,
    *,
    seed: int,
    iteration: int,
    update: int,
    backend: str = "embedded",
    base: TokenPolicy | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], int]:
    """One iteration, as the module docstring numbers it; returns its metrics and the update count after it."""
    o = r.optim
    # 1. rollouts: every (task, placement) point x episodes_per_point, sampled by the current policy
    specs, groups = iteration_specs(points, r.episodes_per_point, seed, iteration, r.max_steps, backend)
    actor = PolicyActor(policy, temperature=r.temperature, seed=seed * 100_003 + iteration, record=True)
    policy.model.eval()
    t0 = time.perf_counter()
    rebuilds, rollout.fresh_scene = rollout.fresh_scene, r.fresh_scene  # the evaluator's simulators: set back after
    try:
        results = rollout.run(
            actor, specs, record=True, progress=f"rollouts, iteration {iteration + 1}" if progress else None
        )
    finally:
        rollout.fresh_scene = rebuilds
    rollout_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    # 2. advantages from binary success
    successes = np.array([res.success for res in results], dtype=np.float32)
    advantages = episode_advantages(successes, groups, r.baseline, r.advantage)
    # 3. rows: every step of every episode with a non-zero advantage
    rows = rows_from_rollouts(results, actor.tokens, advantages, r.length_normalize)
    if r.clip_ratio is not None:
        rows.old_logprobs = rollout_logprobs(policy, rows, o.batch_size)
    # 4. batches (`optim.epochs` passes), 5. one update each
    policy.model.train()
    step_metrics: list[dict[str, float]] = []
    for epoch in range(o.epochs):
        order = np.random.default_rng([seed, iteration] + ([epoch] if epoch else []))
        for batch in split_batches(len(rows), o.batch_size, order):
            lr = o.lr * lr_multiplier(update, 0, o.warmup_steps, "constant")
            step_metrics.append(
                policy_gradient_step(
                    policy, optimizer, subset(rows, batch), lr, o.max_grad_norm, base, r.kl_coef, update, r.clip_ratio
                )
            )
            update += 1
    policy.model.eval()
    # 6. metrics
    env_steps = sum(res.steps for res in results)
    metrics = {
        "rollout_success": float(successes.mean()),
        "env_steps": env_steps,
        "env_steps_per_s": env_steps / max(rollout_s, 1e-9),
        "rows_with_signal": len(rows),
        "updates": update,
        "rollout_s": rollout_s,
        "update_s": time.perf_counter() - t1,  # rows, the clip's old log-probs and the updates
        **peak_memory_metrics(policy.device),
    }
    for name in ("loss", "pg_loss", "grad_norm", "reverse_kl_per_dim", "clipped_fraction"):
        values = [m[name] for m in step_metrics if name in m]
        if values:
            metrics[name] = float(np.mean(values))
    return metrics, update


@dataclass
class Rows:
    """Training rows of one iteration: one per (episode, step) with a non-zero advantage."""

    images: list[np.ndarray]
    instructions: list[str]
    tokens: torch.Tensor
    """[N, 7] sampled action token ids."""
    advantages: torch.Tensor
    """[N] the episode's advantage."""
    old_logprobs: torch.Tensor | None = None
    """[N, 7] log-probs the rollout policy gave the sampled tokens (for `clip_ratio`), else None."""

    def __len__(self) -> int:
        return len(self.instructions)


def episode_advantages(
    successes: np.ndarray, groups: np.ndarray, baseline: str, advantage: str = "normalized"
) -> np.ndarray:
    """Advantages of binary episode outcomes: normalized rewards (see the module docstring), or with
    `advantage="one_zero"` 1 for a success and 0 otherwise (1-0 Reinforce: no baseline, no negative gradients)."""
    rewards = torch.as_tensor(np.asarray(successes, np.float32))
    if advantage == "one_zero":
        return core.one_zero_advantages(rewards).numpy()
    group_ids = torch.as_tensor(np.asarray(groups)) if baseline == "group" else None
    return core.normalized_advantages(rewards, group_ids).numpy()


def rows_from_rollouts(
    results: list[Any],
    tokens: dict[tuple[int, int], torch.Tensor],
    advantages: np.ndarray,
    length_normalize: bool = False,
) -> Rows:
    """One row per step of every episode with a non-zero advantage, carrying that advantage; with
    `length_normalize`, times mean_length / the episode's length (mean over those episodes), so each episode
    weighs the same in the loss while the rows' weights still average 1 (the learning rate keeps its scale)."""
    kept = [e for e, a in enumerate(advantages) if a != 0.0]
    mean_length = float(np.mean([results[e].steps for e in kept])) if kept else 1.0
    images, instructions, toks, advs = [], [], [], []
    for e in kept:
        result, t = results[e], results[e].trajectory
        weight = mean_length / max(result.steps, 1) if length_normalize else 1.0
        for step in range(result.steps):
            images.append(t.images[step])
            instructions.append(t.instruction)
            toks.append(tokens[(e, step)])
            advs.append(float(advantages[e]) * weight)
    return Rows(
        images,
        instructions,
        torch.stack(toks) if toks else torch.zeros((0, 7), dtype=torch.long),
        torch.tensor(advs, dtype=torch.float32),
    )


def rollout_logprobs(policy: TokenPolicy, rows: Rows, batch_size: int) -> torch.Tensor:
    """[N, 7] log-probs of the rows' sampled tokens under `policy` as it is now (the rollout policy, before the
    iteration's first update), in batches, without gradients."""
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            part = subset(rows, np.arange(start, min(start + batch_size, len(rows))))
            inputs = policy.encode(part.images, part.instructions)
            out.append(policy.token_logprobs(inputs, part.tokens.to(policy.device)).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, 7))


def policy_gradient_step(
    policy: TokenPolicy,
    optimizer: torch.optim.Optimizer,
    rows: Rows,
    lr: float,
    max_grad_norm: float,
    base: TokenPolicy | None = None,
    kl_coef: float = 0.0,
    update: int = 0,
    clip_ratio: float | None = None,
) -> dict[str, float]:
    """One REINFORCE update on `rows` (all of them: the caller batches); with `clip_ratio`, the clipped surrogate
    against `rows.old_logprobs`, summed over the 7 tokens and averaged over rows as REINFORCE's loss is."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    inputs = policy.encode(rows.images, rows.instructions)
    tokens = rows.tokens.to(policy.device)
    logits = policy.action_logits(inputs, tokens)
    bins = policy.bin_index(rows.tokens).to(logits.device)
    advantages = rows.advantages.to(logits.device)
    metrics: dict[str, float] = {}
    if clip_ratio is None:
        loss = core.reinforce_loss(logits, bins, None, advantages)
    else:
        old = rows.old_logprobs.to(logits.device)
        loss = core.grpo_loss(
            logits, bins, None, advantages, old, clip_eps=clip_ratio, loss_type="dr_grpo", max_tokens=1
        )
        with torch.no_grad():
            ratio = (core.token_logprobs(logits, bins) - old).exp()
            metrics["clipped_fraction"] = float(((ratio - 1).abs() > clip_ratio).float().mean())
    metrics["pg_loss"] = float(loss.detach())
    if kl_coef > 0:
        with torch.no_grad():
            base_logits = base.action_logits(base.encode(rows.images, rows.instructions), tokens)
        kl = core.kl_penalty(logits, base_logits, bins, None, kind="exact")
        loss = loss + kl_coef * kl
        metrics["reverse_kl_per_dim"] = float(kl.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    check_finite("REINFORCE", update, loss.detach(), metrics["grad_norm"])
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    metrics["loss"] = float(loss.detach())
    return metrics


Point = tuple[str, np.ndarray]
"""An iteration's point: (task id, placement xy); its episodes are one baseline group."""


def iteration_points(
    r: RLConfig,
    seed: int,
    iteration: int,
    backend: str = "embedded",
    tasks: Sequence[str] = (DEFAULT_TASK,),
    region: Region | None = None,
) -> list[Point]:
    """The iteration's (task, placement) points: for each of `tasks` (the new task's), grid_x * grid_y placements of
    its object, the fixed grid (`rl.placements: grid`, the paper's protocol; on LIBERO, stored init states), or as
    many drawn uniformly over the region afresh each iteration from (seed, iteration, the task's position)
    (`uniform`: what is learned must transfer between placements, as the evaluation's uniform placements ask), over
    `region` (None: each task's own)."""
    points = []
    for k, task in enumerate(tasks):
        if r.placements == "grid":
            xy = grid_points(task, backend, tuple(r.grid), region)
        else:  # the first task keeps the stream a one-task run has always drawn from
            rng = np.random.default_rng([seed, iteration, 3, *([k] if k else [])])
            xy = uniform_points(task, backend, int(np.prod(r.grid)), rng, region)
        points += [(task, p) for p in xy]
    return points


def iteration_specs(
    points: list[Point],
    episodes_per_point: int,
    seed: int,
    iteration: int,
    max_steps: int | None,
    backend: str = "embedded",
) -> tuple[list[Any], np.ndarray]:
    """The iteration's episodes (every (task, placement) point x episodes_per_point) and each one's point (its
    baseline group)."""
    specs, groups = [], []
    for p, (task, xy) in enumerate(points):
        for j in range(episodes_per_point):
            s = attempt_seed(seed + 7919 * (iteration + 1), p, j)
            specs.append(EpisodeSpec(task, s, placement_options(task, backend, xy), max_steps))
            groups.append(p)
    return specs, np.asarray(groups)


def split_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def subset(rows: Rows, index: np.ndarray) -> Rows:
    return Rows(
        [rows.images[i] for i in index],
        [rows.instructions[i] for i in index],
        rows.tokens[index],
        rows.advantages[index],
        None if rows.old_logprobs is None else rows.old_logprobs[index],
    )
