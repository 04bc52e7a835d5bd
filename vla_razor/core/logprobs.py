"""Token log-probabilities under teacher forcing, optionally over a restricted vocabulary.

A VLA action token is scored by a softmax over the 256 action-bin ids only (not the full 32064-token
vocabulary), so every function here takes an optional `vocab_ids` index tensor that restricts the
softmax to those ids. Shapes: logits [..., T, V], tokens [..., T], mask [..., T] (bool or float; any
non-zero entry marks a valid position).
"""

from __future__ import annotations

import torch
from torch import Tensor


def valid_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """Boolean validity mask shaped like `like`; None means every position is valid."""
    if mask is None:
        return torch.ones_like(like, dtype=torch.bool)
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {tuple(like.shape)}")
    return mask.to(device=like.device) != 0


def restrict_logits(logits: Tensor, vocab_ids: Tensor | None) -> Tensor:
    """logits[..., vocab_ids]: the logits of a sub-vocabulary (identity when vocab_ids is None)."""
    if vocab_ids is None:
        return logits
    return logits.index_select(-1, vocab_ids.to(device=logits.device, dtype=torch.long))


def tokens_to_restricted(tokens: Tensor, vocab_ids: Tensor, mask: Tensor | None = None) -> Tensor:
    """Map full-vocabulary token ids to their positions in `vocab_ids`.

    Positions where `mask` is 0 (padding, prompt) are mapped to 0 without checking, so they may hold any
    id (e.g. -100). A valid token outside `vocab_ids` raises ValueError naming it: silently scoring a
    wrong token would corrupt every loss and divergence downstream.
    """
    vocab_ids = vocab_ids.to(device=tokens.device, dtype=torch.long)
    if vocab_ids.dim() != 1 or vocab_ids.numel() == 0:
        raise ValueError("vocab_ids must be a non-empty 1-D tensor of token ids")
    sorted_ids, order = torch.sort(vocab_ids)
    if bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
        raise ValueError("vocab_ids contains duplicate ids")
    tokens_long = tokens.to(torch.long)
    slot = torch.searchsorted(sorted_ids, tokens_long).clamp(max=vocab_ids.numel() - 1)
    found = sorted_ids[slot] == tokens_long
    valid = valid_mask(mask, tokens)
    missing = valid & ~found
    if bool(missing.any()):
        offending = int(tokens_long[missing][0])
        raise ValueError(f"token id {offending} is not in vocab_ids (restricted vocabulary of {vocab_ids.numel()} ids)")
    restricted = order[slot]
    return torch.where(valid, restricted, torch.zeros_like(restricted))


def token_logprobs(
    logits: Tensor,
    tokens: Tensor,
    vocab_ids: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """log pi(token_t | context) per position, shape [..., T]; masked positions are 0.

    The log-softmax runs over the restricted vocabulary when `vocab_ids` is given.
    """
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tokens {tuple(tokens.shape)} do not align")
    valid = valid_mask(mask, tokens)
    log_probs = torch.log_softmax(restrict_logits(logits, vocab_ids), dim=-1)
    if vocab_ids is None:
        index = torch.where(valid, tokens.to(torch.long), torch.zeros_like(tokens, dtype=torch.long))
    else:
        index = tokens_to_restricted(tokens, vocab_ids, valid)
    gathered = log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, gathered, torch.zeros_like(gathered))


def sequence_logprobs(
    logits: Tensor,
    tokens: Tensor,
    mask: Tensor | None,
    vocab_ids: Tensor | None = None,
    length_normalize: bool = False,
) -> Tensor:
    """log pi(sequence | context), shape [...]: sum of token log-probs over valid positions.

    With `length_normalize` it is the mean over valid tokens instead (SimPO's length-normalized
    reward); a sequence with no valid token gives 0.
    """
    valid = valid_mask(mask, tokens)
    total = token_logprobs(logits, tokens, vocab_ids, valid).sum(dim=-1)
    if not length_normalize:
        return total
    return total / valid.sum(dim=-1).clamp(min=1).to(total.dtype)
