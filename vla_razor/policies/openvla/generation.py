"""Batched action generation: one prefill over [BOS, patches, prompt], then 6 cached decode steps.

Each of the ``action_dim`` tokens is chosen among the ``n_action_bins`` action ids only (the softmax is
restricted to them, as the KL is): greedy (temperature 0) or sampled at ``temperature``. Rows are
left-padded (see modeling_openvla), so a batch gives each row what it would get alone. The log-probs are
those of the policy itself (temperature 1, restricted to the bins), which is what on-policy RL needs; the
per-dimension logits over the bins come back too, so exact KLs need no second pass.

Sampling draws from ``generator`` (one stream for the whole batch), or, given ``uniform_noise`` [B, D, n_bins],
by the Gumbel-max trick from each row's own noise: then a row's sample does not depend on which other rows
share its batch, which parallel rollouts need to be reproducible whatever the timing of their workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vla_razor.policies.openvla.modeling_openvla import OpenVLAModel


@dataclass
class ActionTokens:
    tokens: Tensor
    """[B, D] chosen token ids (vocabulary ids)."""
    bins: Tensor
    """[B, D] their bin indices k (columns of ``logits``)."""
    logprobs: Tensor
    """[B, D] log pi(token) under the untempered policy restricted to the bins."""
    logits: Tensor
    """[B, D, n_bins] float32 logits over the bins, column k = token ``vocab_ids[k]``."""


@torch.no_grad()
def generate_action_tokens(
    model: OpenVLAModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    pixel_values: Tensor,
    vocab_ids: Tensor,
    action_dim: int = 7,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    uniform_noise: Tensor | None = None,
) -> ActionTokens:
    """Generates ``action_dim`` action tokens per row with a KV cache (see the module docstring)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    gumbel = None
    if uniform_noise is not None:
        expected = (input_ids.shape[0], action_dim, vocab_ids.numel())
        if tuple(uniform_noise.shape) != expected:
            raise ValueError(f"uniform_noise has shape {tuple(uniform_noise.shape)}; expected {expected} (rows, dims, bins)")
        gumbel = -torch.log(-torch.log(uniform_noise.to(input_ids.device, torch.float32).clamp(1e-20, 1.0 - 1e-7)))
    lm = model.language_model
    device = input_ids.device
    vocab_ids = vocab_ids.to(device)
    embeds, mask, positions = model.multimodal_inputs(input_ids, attention_mask, pixel_values)
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    position = positions[:, -1:]
    tokens, bins, logprobs, all_logits = [], [], [], []
    for step in range(action_dim):
        logits = out.logits[:, -1].float().index_select(-1, vocab_ids)  # [B, n_bins]
        if temperature == 0:
            k = logits.argmax(dim=-1)
        elif gumbel is not None:
            k = (logits / temperature + gumbel[:, step]).argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            k = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = vocab_ids[k]
        tokens.append(token)
        bins.append(k)
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(-1, k[:, None]).squeeze(-1))
        all_logits.append(logits)
        if step == action_dim - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        position = position + 1
        out = lm(
            input_ids=token[:, None], attention_mask=mask, position_ids=position,
            past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1,
        )
    return ActionTokens(
        tokens=torch.stack(tokens, dim=1),
        bins=torch.stack(bins, dim=1),
        logprobs=torch.stack(logprobs, dim=1),
        logits=torch.stack(all_logits, dim=1),
    )
