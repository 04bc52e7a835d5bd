"""Distances between the base policy's and a fine-tuned policy's output distributions.

Forward KL(pi0 || pi) on the new task is the paper's predictor of forgetting; reverse KL, total variation
and the L2 distance are the alternatives of its Table 1. Each function takes two logit tensors
[..., V] (e.g. [B, T, V] or [N, V]); the distributions are softmaxes over the last dim, restricted to
`vocab_ids` when given (the 256 OpenVLA action ids). `mask` has shape [...]. Reductions:
  "none"     per-position values [...] (masked positions are 0),
  "mean"     mean over valid positions (all positions when mask is None),
  "sum"      sum over valid positions,
  "sequence" sum over the last position dim (T) then mean over the rest: the KL of a 7-token VLA action
             is the sum over its 7 dimensions, averaged over actions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from vla_razor.core.logprobs import restrict_logits, valid_mask

REDUCTIONS = ("none", "mean", "sum", "sequence")


def reduce_positions(values: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    """Reduce per-position values [...] over valid positions (see the module docstring)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    valid = valid_mask(mask, values)
    # where (not multiply) so that a NaN/inf at a padded position cannot leak into the result
    masked = torch.where(valid, values, torch.zeros_like(values))
    if reduction == "none":
        return masked
    if reduction == "sum":
        return masked.sum()
    if reduction == "mean":
        return masked.sum() / valid.sum().clamp(min=1).to(values.dtype)
    if values.dim() == 0:
        return masked
    return masked.sum(dim=-1).mean()


def _log_probs(logits: Tensor, vocab_ids: Tensor | None) -> Tensor:
    return torch.log_softmax(restrict_logits(logits, vocab_ids), dim=-1)


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) over the last dim, with 0 * log 0 = 0 (no NaN when p underflows or has -inf logits)."""
    p = log_p.exp()
    support = p > 0
    log_ratio = torch.where(support, log_p - log_q, torch.zeros_like(log_p))
    return (p * log_ratio).sum(dim=-1)


def _check_same_shape(base_logits: Tensor, logits: Tensor) -> None:
    if base_logits.shape != logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(base_logits.shape)} vs {tuple(logits.shape)}")


def _tv(log_p_base: Tensor, log_p: Tensor) -> Tensor:
    return 0.5 * (log_p.exp() - log_p_base.exp()).abs().sum(dim=-1)


def _l2(log_p_base: Tensor, log_p: Tensor) -> Tensor:
    return torch.linalg.vector_norm(log_p.exp() - log_p_base.exp(), ord=2, dim=-1)


def _divergence(name: str, per_position: Callable[[Tensor, Tensor], Tensor], doc: str) -> Callable[..., Tensor]:
    """A public divergence: `per_position(log p_base, log p)` [...] on the (restricted) log-softmaxes, reduced."""

    def divergence(
        base_logits: Tensor,
        logits: Tensor,
        mask: Tensor | None = None,
        vocab_ids: Tensor | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        _check_same_shape(base_logits, logits)
        values = per_position(_log_probs(base_logits, vocab_ids), _log_probs(logits, vocab_ids))
        return reduce_positions(values, mask, reduction)

    divergence.__name__ = divergence.__qualname__ = name
    divergence.__doc__ = doc
    return divergence


forward_kl = _divergence(
    "forward_kl", _kl, "KL(p_base || p) = sum_v p_base (log p_base - log p): the paper's forgetting predictor."
)
reverse_kl = _divergence(
    "reverse_kl", lambda log_p_base, log_p: _kl(log_p, log_p_base), "KL(p || p_base) = sum_v p (log p - log p_base)."
)
total_variation = _divergence("total_variation", _tv, "0.5 * sum_v |p - p_base|.")
l2_distance = _divergence(
    "l2_distance", _l2, "Euclidean norm ||p - p_base||_2 of the difference of the two probability vectors."
)


DIVERGENCES: dict[str, Callable[..., Tensor]] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "tv": total_variation,
    "dist_l2": l2_distance,
}
