"""Divergences between two policies' distributions over a whole action (D tokens, each over the 256 bins).

The joint distribution of a D-token action factorizes over its dimensions, p(a|x) = prod_d p(a_d | x, a_<d),
so by the chain rule

    KL(p || q)(x) = E_{a ~ p(.|x)} [ sum_d KL( p(.|x, a_<d) || q(.|x, a_<d) ) ],

an expectation over prefixes **sampled from p**, with each inner KL exact over the bins. Summing the
per-dimension KLs along one fixed prefix (e.g. p's greedy action) is not the action's KL: the conditionals of
q off that prefix never enter. Here:
- `chain_rule_kl_terms` gives each sampled row's inner sum; its mean over rows sampled from p estimates
  KL(p || q) without bias. Forward KL(pi0 || pi), the paper's predictor, takes prefixes sampled from the base;
  reverse KL(pi || pi0) takes them from the fine-tuned policy.
- `action_tv_terms` gives (1 - q(a)/p(a))_+ per row sampled from p, whose mean is the total variation of the two
  action distributions (in [0, 1]).
- `mean_and_se` turns [frames, samples] terms into the estimate and its standard error over frames
  (clustered by the rollout each frame comes from, when given).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vla_razor import core


def chain_rule_kl_terms(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """[...]: sum over the D dimensions of KL(p(.|x,a_<d) || q(.|x,a_<d)), from both policies' logits
    [..., D, n_bins] teacher-forced on the same prefixes a. Averaged over prefixes sampled from p, it is the
    KL(p || q) of the whole action; along any other prefix it is not (see the module docstring). Each
    per-dimension KL is clamped at 0: exact over the bins it cannot be negative, but float32 rounding makes the KL
    of a policy to itself come out as -1e-8 or so (and a KL budget of 0 would then never be reached)."""
    return core.forward_kl(p_logits.float(), q_logits.float(), reduction="none").clamp(min=0.0).sum(dim=-1)


def action_tv_terms(p_logits: Tensor, q_logits: Tensor, bins: Tensor) -> Tensor:
    """[...]: (1 - q(a)/p(a))_+ of each row's whole action a (bin indices [..., D]), from logits [..., D, n_bins]
    teacher-forced on a. Averaged over actions sampled from p, it is TV(p, q) of the whole action."""
    log_p = core.token_logprobs(p_logits.float(), bins).sum(dim=-1)
    log_q = core.token_logprobs(q_logits.float(), bins).sum(dim=-1)
    return (1.0 - torch.exp(log_q - log_p)).clamp(min=0.0)


def mean_and_se(terms: Tensor, clusters: Tensor | None = None) -> tuple[float, float]:
    """Estimate and standard error from per-sample terms [frames, samples]: each frame's samples are averaged,
    then the frames (the expectation over x). The error holds both the sampling of prefixes and the spread over
    frames. Frames of one rollout are not independent draws of x: with `clusters` [frames] (e.g. the episode each
    frame comes from) it is the cluster-robust error of the mean, sqrt(C / (C - 1) * sum_c (sum_{i in c}
    (m_i - m))^2) / N, which is std / sqrt(N) when every frame is its own cluster (0 with one cluster)."""
    per_frame = terms.double().mean(dim=1)
    n = per_frame.numel()
    mean = float(per_frame.mean())
    if clusters is None:
        clusters = torch.arange(n)
    ids = torch.unique(torch.as_tensor(clusters), return_inverse=True)[1]
    c = int(ids.max()) + 1 if n else 0
    if c < 2:
        return mean, 0.0
    sums = torch.zeros(c, dtype=torch.float64).index_add_(0, ids, per_frame - mean)
    return mean, math.sqrt(c / (c - 1) * float((sums**2).sum())) / n
