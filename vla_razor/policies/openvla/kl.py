"""Exact divergences between two policies' action-token distributions, through vla_razor.core.

A VLA action is ``D`` tokens (7), each a softmax over the 256 bins. Teacher-forced on the same token
prefixes (the logits of dimension d are conditioned on the given tokens of dimensions < d), the KL of the
joint action distribution along that prefix is the sum of the per-dimension KLs; ``action_token_kl``
returns that sum averaged over the batch (core's ``reduction="sequence"``) for forward KL(pi0 || pi), the
paper's forgetting predictor, with reverse KL and total variation (also summed over dimensions) beside it.
"""

from __future__ import annotations

from torch import Tensor

from vla_razor import core


def action_token_kl(
    base_logits: Tensor, logits: Tensor, mask: Tensor | None = None, vocab_ids: Tensor | None = None
) -> dict[str, Tensor]:
    """{"forward_kl", "reverse_kl", "tv"} from logits [B, D, n_bins] (or [B, D, V] with ``vocab_ids``).

    ``base_logits`` are pi0's. Each value is the sum over the D dimensions, averaged over the batch.
    """
    kwargs = dict(mask=mask, vocab_ids=vocab_ids, reduction="sequence")
    base_logits, logits = base_logits.float(), logits.float()
    return {
        "forward_kl": core.forward_kl(base_logits, logits, **kwargs),
        "reverse_kl": core.reverse_kl(base_logits, logits, **kwargs),
        "tv": core.total_variation(base_logits, logits, **kwargs),
    }


def policy_action_kl(base_policy, policy, batch: dict[str, Tensor], action_tokens: Tensor) -> dict[str, Tensor]:
    """``action_token_kl`` of two OpenVLAPolicy objects, both teacher-forced on ``action_tokens`` [B, D].

    The base policy runs without gradients; the fine-tuned one keeps them (usable as a KL penalty).
    """
    import torch

    with torch.no_grad():
        base_logits = base_policy.action_logits(batch, action_tokens)
    return action_token_kl(base_logits, policy.action_logits(batch, action_tokens))
