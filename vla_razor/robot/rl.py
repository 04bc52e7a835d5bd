"""On-policy REINFORCE on pick-can with a reward-normalization baseline (paper, Appendix B.2).

One iteration:
  1. roll out `episodes_per_point` episodes (default 5) at every grid point with the current policy,
     sampling the 7 action tokens at `temperature` (1.0: the policy's own distribution), on the parallel
     simulator workers (envs/rollout.py);
  2. reward = 1 if the episode succeeded, else 0; the advantage of an episode is its reward normalized
     within the episodes of its grid point, A = (r - mean) / (std + eps) (`baseline: group`), or within the
     whole iteration (`baseline: batch`); a group whose episodes all succeeded or all failed gives A = 0
     (`advantage: one_zero`: A = r, 1-0 Reinforce);
  3. every step of an episode is a (image, instruction, 7 sampled tokens) row carrying the episode's A (with
     `length_normalize`, scaled by mean length / episode length, so long failures do not outweigh short
     successes); the
     rows with A != 0 are shuffled and cut into batches of `optim.batch_size`; each batch is one AdamW update
     of vla_razor.core.reinforce_loss, -mean(A * sum_d log pi(token_d | ...)), with grad-norm clipping;
     with `kl_coef` > 0, + kl_coef * exact KL(pi || pi0) over the bins (off by default, as in the paper).
After every iteration the training state (weights, optimizer, RNG, iteration, update count) is saved, so a
rerun continues at the next iteration; rollout seeds and sampling are functions of (seed, iteration), so the
later iterations are the same as without the interruption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vla_razor import core


@dataclass
class Rows:
    """Training rows of one iteration: one per (episode, step) with a non-zero advantage."""

    images: list[np.ndarray]
    instructions: list[str]
    tokens: torch.Tensor
    """[N, 7] sampled action token ids."""
    advantages: torch.Tensor
    """[N] the episode's advantage."""

    def __len__(self) -> int:
        return len(self.instructions)


def episode_advantages(successes: np.ndarray, groups: np.ndarray, baseline: str,
                       advantage: str = "normalized") -> np.ndarray:
    """Advantages of binary episode outcomes: normalized rewards (see the module docstring), or with
    `advantage="one_zero"` 1 for a success and 0 otherwise (1-0 Reinforce: no baseline, no negative gradients)."""
    if advantage == "one_zero":
        return (np.asarray(successes) > 0).astype(np.float32)
    rewards = torch.as_tensor(np.asarray(successes, np.float32))
    group_ids = torch.as_tensor(np.asarray(groups)) if baseline == "group" else None
    return core.normalized_advantages(rewards, group_ids).numpy()


def rows_from_rollouts(results: list[Any], tokens: dict[tuple[int, int], torch.Tensor], advantages: np.ndarray,
                       length_normalize: bool = False) -> Rows:
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
    return Rows(images, instructions, torch.stack(toks) if toks else torch.zeros((0, 7), dtype=torch.long),
                torch.tensor(advs, dtype=torch.float32))


def policy_gradient_step(policy: Any, optimizer: torch.optim.Optimizer, rows: Rows, lr: float, max_grad_norm: float,
                         base: Any = None, kl_coef: float = 0.0) -> dict[str, float]:
    """One REINFORCE update on `rows` (all of them: the caller batches)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    inputs = policy.encode(rows.images, rows.instructions)
    tokens = rows.tokens.to(policy.device)
    logits = policy.action_logits(inputs, tokens)
    bins = policy.tokenizer.bin_index(rows.tokens).to(logits.device)
    loss = core.reinforce_loss(logits, bins, None, rows.advantages.to(logits.device))
    metrics = {"pg_loss": float(loss.detach())}
    if kl_coef > 0:
        with torch.no_grad():
            base_logits = base.action_logits(base.encode(rows.images, rows.instructions), tokens)
        kl = core.kl_penalty(logits, base_logits, bins, None, kind="exact")
        loss = loss + kl_coef * kl
        metrics["kl_penalty"] = float(kl.detach())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    metrics["loss"] = float(loss.detach())
    return metrics


def iteration_specs(points_xy: np.ndarray, episodes_per_point: int, seed: int, iteration: int,
                    max_steps: int | None, backend: str = "embedded") -> tuple[list[Any], np.ndarray]:
    """The iteration's episodes (every grid point x episodes_per_point) and each one's grid point."""
    from data_collection.rt1_grid import attempt_seed
    from envs.grids import placement_options
    from envs.rollout import EpisodeSpec

    specs, groups = [], []
    for p, xy in enumerate(points_xy):
        for j in range(episodes_per_point):
            s = attempt_seed(seed + 7919 * (iteration + 1), p, j)
            specs.append(EpisodeSpec("pick_can", s, placement_options("pick_can", backend, xy), max_steps))
            groups.append(p)
    return specs, np.asarray(groups)


def split_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def subset(rows: Rows, index: np.ndarray) -> Rows:
    return Rows([rows.images[i] for i in index], [rows.instructions[i] for i in index], rows.tokens[index],
                rows.advantages[index])


def updates_for(n_rows: int, batch_size: int) -> int:
    return math.ceil(n_rows / batch_size) if n_rows else 0
