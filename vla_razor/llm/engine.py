"""Our rollout engine: a Llama or Qwen2 causal LM decoded over a static K/V cache, CUDA graphs on a GPU.

The decoder is the one OpenVLA's actions use (vla_razor/policies/static_decoder.py), here with the full
vocabulary as output and completions of any length: each step samples one token per row, a row that emits a
stop token is finished (it is fed padding afterwards and its tokens are ignored), and the batch ends when every
row has finished or after ``max_new_tokens``. Every decode step has the same shapes, so on CUDA it is one graph
replay; on the CPU the same code runs eagerly. It runs in the model's dtype (bfloat16 on a GPU is the fast path).

Sampling is transformers' own: softmax of the float32 logits divided by the temperature, one
``torch.multinomial`` draw per row (every row, finished or not, as `generate` does), so the same seed gives the
same tokens wherever the logits agree (tests/llm/test_engine.py). The log-probs returned are those of the
policy itself (temperature 1), which is what on-policy RL scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from vla_razor.config import ConfigError
from vla_razor.policies.static_decoder import DecoderCache, StaticLlamaDecoder

Engine = Literal["transformers", "static"]
ENGINES = ("transformers", "static")
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
LENGTH_BUCKET = 64
"""K/V buffers grow this many positions at a time: rollouts of nearby prompt lengths share one decoder (and graph)."""
MAX_DECODERS_PER_MODEL = 4


@dataclass
class Generated:
    tokens: Tensor
    """[B, N] completion token ids; ``pad_id`` after a row's stop token."""
    lengths: Tensor
    """[B] tokens of each completion, its stop token included."""
    logprobs: Tensor
    """[B, N] float32 log pi(token | context) at temperature 1; 0 past a row's end."""

    def completions(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.tokens.cpu(), self.lengths.tolist())]


def check_static_supported(model: Any) -> None:
    """Refuses, naming the setting, a model the static engine does not implement (it writes the layer itself)."""
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"sampling.engine: 'static' runs {' and '.join(SUPPORTED_MODEL_TYPES)} models; this one is "
            f"{kind!r}: set sampling.engine to transformers"
        )
    if getattr(cfg, "use_sliding_window", False) or "sliding_attention" in (getattr(cfg, "layer_types", None) or ()):
        raise ConfigError(
            "sampling.engine: 'static' has no sliding-window attention, which this model's config turns "
            "on: set sampling.engine to transformers"
        )


class TextDecoder(StaticLlamaDecoder):
    """A causal LM's own decoder over static K/V buffers; the prefill embeds token ids, the head is the full
    output layer."""

    def __init__(self, lm: nn.Module, batch: int, max_len: int, graph: bool, fused: bool = True) -> None:
        super().__init__(lm, lm, batch, max_len, graph, fused)

    def start(self, input_ids: Tensor, attention_mask: Tensor) -> TextDecoder:
        """Runs the left-padded prompts into the buffers (eagerly: prompt lengths vary by round); the first
        logits are then ready."""
        batch, length = input_ids.shape
        if batch != self.batch or length > self.max_len:
            raise ValueError(
                f"decoder for batch {self.batch}, {self.max_len} positions got batch {batch}, {length} prompt tokens"
            )
        mask = attention_mask.bool()
        if bool((mask[:, 1:].int() < mask[:, :-1].int()).any()) or not bool(mask[:, -1].all()):
            raise ValueError("prompts must be left-padded: each attention mask row 0 ... 0 1 ... 1")
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        embeds = self.lm.get_input_embeddings()(input_ids)
        self.step_logits = self._prefill_embeds(embeds, mask, positions, padded=not bool(mask.all()))
        return self

    def _head(self, h: Tensor) -> Tensor:
        return self.lm.lm_head(h).float()


DECODERS = DecoderCache(TextDecoder, LENGTH_BUCKET, MAX_DECODERS_PER_MODEL)


def release_decoders(model: nn.Module) -> None:
    """Frees the model's K/V buffers and CUDA graphs (e.g. when a training phase needs the memory)."""
    DECODERS.release(model)


@torch.no_grad()
def static_generate(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> Generated:
    """Completions of the left-padded prompts (see the module docstring); CUDA graphs when on a GPU."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    check_static_supported(model)
    device = input_ids.device
    batch, width = input_ids.shape
    decoder = DECODERS.get(model, batch, width + max_new_tokens - 1, graph=device.type == "cuda")
    decoder.start(input_ids, attention_mask)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        logits = decoder.logits()
        if greedy:
            token = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        logprob = torch.log_softmax(logits, dim=-1).gather(-1, token[:, None]).squeeze(-1)
        token = token.masked_fill(finished, pad_id)
        tokens[:, step] = token
        logprobs[:, step] = logprob.masked_fill(finished, 0.0)
        stopped = torch.isin(token, stops) & ~finished
        lengths.masked_fill_(stopped, step + 1)
        finished |= stopped
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        decoder.advance(token)
    return Generated(tokens, lengths, logprobs)
