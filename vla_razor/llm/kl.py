"""Exact forward KL from the base on the new task: E_x~new E_y~pi0 sum_t KL(pi0(.|x,y<t) || pi(.|x,y<t)).

The base answers the held-out new-task prompts once (sampled at temperature 1) and those responses are
stored in the experiment folder, so every model of the experiment is measured on the same tokens. At each
response position the KL runs over the full vocabulary (49,152 tokens for SmolLM2, 151,936 for Qwen2.5): the
decoders give hidden states, and the output layer turns at most `chunk_tokens` positions into logits at once,
which bounds memory whatever the response length.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vla_razor.core import forward_kl, reverse_kl, total_variation
from vla_razor.llm.sampling import TeacherForcing
from vla_razor.runs import atomic_write_json

LLM_PREDICTORS = ("forward_kl", "forward_kl_per_token", "reverse_kl_on_base_responses", "tv_per_token")
"""What `kl_to_base` returns, the LLM runs' predictors."""


@dataclass
class KLResponses:
    """The base's responses to the KL prompts (token ids), and what made them."""

    prompts: list[list[int]]
    completions: list[list[int]]
    settings: dict[str, Any]

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> KLResponses:
        data = json.loads(Path(path).read_text())
        return cls(data["prompts"], data["completions"], data["settings"])


@torch.no_grad()
def kl_to_base(
    base: Any, model: Any, responses: KLResponses, pad_id: int, batch_size: int = 16, chunk_tokens: int = 512
) -> dict[str, float]:
    """Divergences of `model` from `base` on the stored base responses.

    `forward_kl` is per response (the sum over its tokens, averaged over responses): the paper's sequence-level
    KL(pi0 || pi), exact by the chain rule since the responses are the base's own samples; `forward_kl_per_token`
    averages over tokens instead. Along the same responses, `reverse_kl_on_base_responses` sums the per-token
    KL(pi || pi0) per response and `tv_per_token` averages the per-token total variation: named for what they are,
    since the sequence-level reverse KL would need the model's own samples and a sequence TV is neither.
    """
    device = next(model.parameters()).device
    sums = {"forward_kl": 0.0, "reverse_kl": 0.0, "tv": 0.0}  # summed over every response token
    tokens = 0
    for start in range(0, len(responses.prompts), batch_size):
        batch = TeacherForcing.pack(
            responses.prompts[start : start + batch_size],
            responses.completions[start : start + batch_size],
            pad_id,
            device,
        )
        base_hidden = batch.hidden_states(base)[batch.target_mask]
        hidden = batch.hidden_states(model)[batch.target_mask]
        base_head, head = base.get_output_embeddings(), model.get_output_embeddings()
        for lo in range(0, hidden.shape[0], chunk_tokens):
            base_logits = base_head(base_hidden[lo : lo + chunk_tokens]).float()
            logits = head(hidden[lo : lo + chunk_tokens]).float()
            sums["forward_kl"] += float(forward_kl(base_logits, logits, reduction="sum"))
            sums["reverse_kl"] += float(reverse_kl(base_logits, logits, reduction="sum"))
            sums["tv"] += float(total_variation(base_logits, logits, reduction="sum"))
        tokens += int(batch.target_mask.sum())
    n = max(1, len(responses.prompts))
    return {
        "forward_kl": sums["forward_kl"] / n,
        "forward_kl_per_token": sums["forward_kl"] / max(1, tokens),
        "reverse_kl_on_base_responses": sums["reverse_kl"] / n,
        "tv_per_token": sums["tv"] / max(1, tokens),
    }
