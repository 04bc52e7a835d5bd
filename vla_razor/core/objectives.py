"""Fine-tuning objectives over (logits, tokens, mask); each returns a scalar loss to minimize.

The paper (section 5.1) contrasts four objectives along two axes: on-policy vs offline data, and with vs
without negative gradients: GRPO (on-policy, negatives), 1-0 Reinforce (on-policy, no negatives), SFT
(offline, no negatives) and SimPO (offline, negatives). Shapes: logits [B, T, V], tokens [B, T],
mask [B, T]; leading dims beyond B are allowed and treated as batch dims.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vla_razor.core.divergences import reverse_kl
from vla_razor.core.logprobs import sequence_logprobs, token_logprobs, valid_mask

GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "bnpo")
KL_PENALTY_KINDS = ("exact", "k3")


def sft_loss(logits: Tensor, tokens: Tensor, mask: Tensor | None, vocab_ids: Tensor | None = None) -> Tensor:
    """Mean negative log-likelihood over all valid tokens of the batch (cross-entropy on the labels)."""
    valid = valid_mask(mask, tokens)
    log_probs = token_logprobs(logits, tokens, vocab_ids, valid)
    return -log_probs.sum() / valid.sum().clamp(min=1).to(log_probs.dtype)


def normalized_advantages(
    rewards: Tensor,
    group_ids: Tensor | None = None,
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """(r - mean_group(r)) / (std_group(r) + eps): the reward normalized within its group.

    A group is the set of samples drawn for one context (one prompt, one grid placement); the whole batch
    is one group when `group_ids` is None. The std is the population std (unbiased=False), as in GRPO
    implementations (TRL uses it too): it is defined for groups of size 1 and makes the advantages of
    every group have exactly unit variance. Groups of size 1 or with all-equal rewards get advantage 0:
    the numerator is then exactly 0. The result carries no gradient.
    """
    rewards = rewards.detach().to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B], got shape {tuple(rewards.shape)}")
    if group_ids is None:
        group_index = torch.zeros_like(rewards, dtype=torch.long)
    else:
        if group_ids.shape != rewards.shape:
            raise ValueError(f"group_ids shape {tuple(group_ids.shape)} != rewards {tuple(rewards.shape)}")
        _, group_index = torch.unique(group_ids.to(rewards.device), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if rewards.numel() > 0 else 0
    counts = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device)
    counts.index_add_(0, group_index, torch.ones_like(rewards))
    sums = torch.zeros_like(counts).index_add_(0, group_index, rewards)
    means = sums / counts
    centered = rewards - means[group_index]
    if not scale_by_std:
        return centered
    squares = torch.zeros_like(counts).index_add_(0, group_index, centered**2)
    stds = (squares / counts).sqrt()
    return centered / (stds[group_index] + eps)


def one_zero_advantages(rewards: Tensor) -> Tensor:
    """1-0 Reinforce's advantages (paper section 5.1): 1 for a rewarded sample, 0 otherwise; no baseline, so no
    negative gradients. Float32 (float64 rewards stay float64), no gradient."""
    rewards = rewards.detach()
    return (rewards > 0).to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)


def _batch_size(tokens: Tensor) -> int:
    """Number of sequences: the product of all dims but the last (T)."""
    return max(1, tokens[..., 0].numel()) if tokens.dim() > 0 else 1


def reinforce_loss(
    logits: Tensor,
    tokens: Tensor,
    mask: Tensor | None,
    advantages: Tensor,
    vocab_ids: Tensor | None = None,
) -> Tensor:
    """Policy-gradient loss -mean_b(A_b * sum_t log pi(y_bt)); per-token A [B, T] gives -sum(A*logp)/B.

    Advantages are detached: the gradient flows only through the log-probabilities (the policy-gradient
    trick, paper section 5.1 footnote).
    """
    valid = valid_mask(mask, tokens)
    log_probs = token_logprobs(logits, tokens, vocab_ids, valid)
    advantages = advantages.detach().to(device=log_probs.device, dtype=log_probs.dtype)
    if advantages.shape == log_probs.shape[:-1]:
        return -(advantages * log_probs.sum(dim=-1)).mean()
    if advantages.shape == log_probs.shape:
        return -(advantages * log_probs).sum() / _batch_size(tokens)
    raise ValueError(
        f"advantages shape {tuple(advantages.shape)} must be {tuple(log_probs.shape[:-1])} (per sequence) "
        f"or {tuple(log_probs.shape)} (per token)"
    )


def one_zero_reinforce_loss(
    logits: Tensor,
    tokens: Tensor,
    mask: Tensor | None,
    rewards: Tensor,
    vocab_ids: Tensor | None = None,
) -> Tensor:
    """1-0 Reinforce (paper section 5.1): A = 1 for rewarded samples, 0 otherwise (no negative gradients).

    Equivalent to SFT on the model's own successful samples.
    """
    return reinforce_loss(logits, tokens, mask, one_zero_advantages(rewards).to(logits.dtype), vocab_ids)


def grpo_loss(
    logits: Tensor,
    tokens: Tensor,
    mask: Tensor | None,
    advantages: Tensor,
    old_logprobs: Tensor | None = None,
    clip_eps: float = 0.2,
    loss_type: str = "grpo",
    max_tokens: int | None = None,
    vocab_ids: Tensor | None = None,
) -> Tensor:
    """Clipped-ratio GRPO loss (negative objective), without a KL term (the paper's setting: KL reg. 0).

    Per token: min(r * A, clip(r, 1 - eps, 1 + eps) * A) with r = exp(logp - old_logp). `old_logprobs`
    None means on-policy (one update per batch): old = logp.detach(), so r == 1 but dr/dtheta =
    dlogp/dtheta, and the loss reduces to REINFORCE with the group-normalized baseline.
    Aggregation (`loss_type`):
      "grpo"     mean over each sequence's valid tokens, then mean over the batch (Shao et al. 2024);
      "dr_grpo"  sum over valid tokens / (B * max_tokens), max_tokens a constant, default T (Liu et al.
                 2025; the paper's LLM runs use it);
      "bnpo"     sum over valid tokens / number of valid tokens.
    Advantages are [B] (one per sequence) or [B, T]; they are detached.
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(GRPO_LOSS_TYPES)}")
    valid = valid_mask(mask, tokens)
    log_probs = token_logprobs(logits, tokens, vocab_ids, valid)
    if old_logprobs is None:
        old = log_probs.detach()
    else:
        if old_logprobs.shape != log_probs.shape:
            raise ValueError(f"old_logprobs shape {tuple(old_logprobs.shape)} != {tuple(log_probs.shape)}")
        old = old_logprobs.detach().to(device=log_probs.device, dtype=log_probs.dtype)
    advantages = advantages.detach().to(device=log_probs.device, dtype=log_probs.dtype)
    if advantages.shape == log_probs.shape[:-1]:
        advantages = advantages.unsqueeze(-1)
    elif advantages.shape != log_probs.shape:
        raise ValueError(
            f"advantages shape {tuple(advantages.shape)} must be {tuple(log_probs.shape[:-1])} "
            f"or {tuple(log_probs.shape)}"
        )
    log_ratio = torch.where(valid, log_probs - old, torch.zeros_like(log_probs))
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    per_token = torch.where(valid, torch.minimum(unclipped, clipped), torch.zeros_like(log_probs))
    if loss_type == "grpo":
        per_sequence = per_token.sum(dim=-1) / valid.sum(dim=-1).clamp(min=1).to(per_token.dtype)
        objective = per_sequence.mean()
    elif loss_type == "dr_grpo":
        horizon = tokens.shape[-1] if max_tokens is None else max_tokens
        objective = per_token.sum() / (_batch_size(tokens) * horizon)
    else:
        objective = per_token.sum() / valid.sum().clamp(min=1).to(per_token.dtype)
    return -objective


def simpo_loss(
    logits_w: Tensor,
    tokens_w: Tensor,
    mask_w: Tensor | None,
    logits_l: Tensor,
    tokens_l: Tensor,
    mask_l: Tensor | None,
    margin: float = 1.0,
    beta: float = 1.0,
    length_normalize: bool = False,
    vocab_ids: Tensor | None = None,
) -> Tensor:
    """SimPO: -mean log sigmoid(beta * (log pi(y_w|x) - log pi(y_l|x)) - margin).

    With beta = 1 and margin = 1 this is the paper's form (section 5.1, summed sequence log-probs);
    `length_normalize` uses the mean token log-prob as in the original SimPO (Meng et al. 2024).
    """
    logp_w = sequence_logprobs(logits_w, tokens_w, mask_w, vocab_ids, length_normalize)
    logp_l = sequence_logprobs(logits_l, tokens_l, mask_l, vocab_ids, length_normalize)
    return -F.logsigmoid(beta * (logp_w - logp_l) - margin).mean()


def kl_penalty(
    logits: Tensor,
    ref_logits: Tensor,
    tokens: Tensor,
    mask: Tensor | None,
    kind: str = "exact",
    vocab_ids: Tensor | None = None,
) -> Tensor:
    """Estimate of KL(pi || pi_ref) per token, averaged over valid tokens (for "GRPO + KL reg.").

    "exact": the full-distribution KL(pi || ref) summed over the (restricted) vocabulary at each position;
    "k3": GRPO's estimator exp(ref_lp - lp) - (ref_lp - lp) - 1 at the sampled tokens (unbiased for
    on-policy samples, always >= 0). The reference is detached.
    """
    if kind not in KL_PENALTY_KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KL_PENALTY_KINDS)}")
    valid = valid_mask(mask, tokens)
    ref_logits = ref_logits.detach()
    if kind == "exact":
        return reverse_kl(ref_logits, logits, valid, vocab_ids, reduction="mean")
    log_probs = token_logprobs(logits, tokens, vocab_ids, valid)
    ref_log_probs = token_logprobs(ref_logits, tokens, vocab_ids, valid)
    delta = ref_log_probs - log_probs
    per_token = torch.where(valid, delta.exp() - delta - 1.0, torch.zeros_like(delta))
    return per_token.sum() / valid.sum().clamp(min=1).to(per_token.dtype)
