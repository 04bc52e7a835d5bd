"""Batched action generation: one prefill over [BOS, patches, prompt], then 6 cached decode steps.

Each of the ``action_dim`` tokens is chosen among the ``n_action_bins`` action ids only (the softmax is
restricted to them, as the KL is): greedy (temperature 0) or sampled at ``temperature``. Rows are
left-padded (see modeling_openvla), so a batch gives each row what it would get alone. The log-probs are
those of the policy itself (temperature 1, restricted to the bins), which is what on-policy RL needs; the
per-dimension logits over the bins come back too, so exact KLs need no second pass.

Sampling draws from ``generator`` (one stream for the whole batch), or, given ``uniform_noise`` [B, D, n_bins],
by the Gumbel-max trick from each row's own noise: then a row's sample does not depend on which other rows
share its batch, which parallel rollouts need to be reproducible whatever the timing of their workers.

Three engines compute the same tokens (tests/policies/test_generation.py):
- ``eager``: transformers' own forward with its dynamic KV cache; the reference.
- ``static``: the Llama's layers driven over K/V buffers allocated once for the whole action
  (`StaticKVDecoder`, on vla_razor/policies/static_decoder.py): prefill with causal SDPA (flash attention when no row is padded), each decode step a
  fixed-shape call, the output layer applied to the 256 action rows only; q / k / v and gate / up each one
  matrix product over a concatenated weight copy kept in step with training and LoRA (``fused_projections``, the default).
- ``graph``: ``static`` with the prefill (ViTs, projector, Llama) and each decode step replayed as CUDA
  graphs, captured once per (batch, length bucket; prefill: prompt length) and kept per model, and the
  Llama's elementwise work (RMSNorm, rotary embedding, SiLU gate, residual adds) fused by torch.compile.
  A 7B action is ~4,000 kernel launches; eager, their launch overhead sets batch-1 latency, and at large
  batches the unfused elementwise passes cost as much as the matrix products (issue #9). CUDA only.
``auto`` is ``graph`` on CUDA and ``static`` elsewhere.

Decoders (and their graphs) are made per batch size, and a rollout's batches change size at every step as its
workers' episodes end and reset: on the graph engine, a batch is padded with copies of its last row up to
`row_bucket` (1, 2, 4, 8, 16, then multiples of 16), so a rollout meets a handful of sizes instead of one per
worker count, and the padded rows' outputs are dropped before sampling (``pad_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla_razor.policies.openvla.modeling_openvla import OpenVLAModel, check_left_padded
from vla_razor.policies.static_decoder import LENGTH_BUCKET, DecoderCache, StaticLlamaDecoder

Engine = Literal["auto", "eager", "static", "graph"]
MAX_GRAPHS_PER_MODEL = 4
"""Decoders kept per model: each holds K/V buffers for its rows (a 7B's batch 128: ~20 GB) and its graphs' pool; 8
put a generation bench out of memory on the H200 beside a 7B (session 13). A rollout meets ~5 row buckets, so it
makes one again at most about once an iteration."""
ROW_BUCKET_STEP = 16
"""Above this many rows, batches are padded to a multiple of it; at or below, to the next power of two."""


def row_bucket(rows: int) -> int:
    """The batch size a padded batch of ``rows`` rows is run at (see the module docstring)."""
    if rows < 1:
        raise ValueError(f"a batch needs at least one row, got {rows}")
    if rows <= ROW_BUCKET_STEP:
        return 1 << (rows - 1).bit_length()
    return -(-rows // ROW_BUCKET_STEP) * ROW_BUCKET_STEP


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


def resolve_engine(engine: Engine, device: torch.device) -> Engine:
    if engine not in ("auto", "eager", "static", "graph"):
        raise ValueError(f"generation engine must be auto, eager, static or graph, got {engine!r}")
    if engine == "auto":
        return "graph" if device.type == "cuda" else "static"
    if engine == "graph" and device.type != "cuda":
        raise ValueError(f"the 'graph' generation engine needs a CUDA device; the model is on {device}")
    return engine


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
    engine: Engine = "auto",
    fused_projections: bool = True,
    pad_rows: bool | None = None,
) -> ActionTokens:
    """Generates ``action_dim`` action tokens per row with a KV cache (see the module docstring). ``fused_projections``: the
    static and graph engines run q / k / v and gate / up as single products over concatenated weight copies
    (vla_razor/policies/static_decoder.py, `FusedProjections`); off, the layers' own five products. ``pad_rows``:
    run the static / graph decoder at `row_bucket` rows (None: on the graph engine only; on a CPU the extra rows
    cost their compute)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    gumbel = None
    if uniform_noise is not None:
        expected = (input_ids.shape[0], action_dim, vocab_ids.numel())
        gumbel = gumbel_from_uniform(uniform_noise, expected, input_ids.device)
    device = input_ids.device
    vocab_ids = vocab_ids.to(device)
    engine = resolve_engine(engine, device)
    rows = input_ids.shape[0]
    pad = engine == "graph" if pad_rows is None else pad_rows
    padded_rows = row_bucket(rows) if pad and engine != "eager" else rows
    if engine == "eager":
        embeds, mask, positions = model.multimodal_inputs(input_ids, attention_mask, pixel_values)
        steps: _EagerSteps | StaticKVDecoder = _EagerSteps(model.language_model, embeds, mask, positions, vocab_ids)
    else:
        length = input_ids.shape[1] + model.num_patches + action_dim - 1
        decoder = DECODERS.get(model, padded_rows, length, engine == "graph", fused_projections)
        steps = decoder.start(*(_pad(x, padded_rows) for x in (input_ids, attention_mask, pixel_values)), vocab_ids)
    tokens, bins, logprobs, all_logits = [], [], [], []
    for step in range(action_dim):
        logits = steps.logits()[:rows]  # [B, n_bins] float32; a padded batch's extra rows dropped
        k = choose_bins(logits, temperature, generator, None if gumbel is None else gumbel[:, step])
        token = vocab_ids[k]
        tokens.append(token)
        bins.append(k)
        logprobs.append(torch.log_softmax(logits, dim=-1).gather(-1, k[:, None]).squeeze(-1))
        all_logits.append(logits.clone())
        if step < action_dim - 1:
            steps.advance(_pad(token, padded_rows))
    return ActionTokens(
        tokens=torch.stack(tokens, dim=1),
        bins=torch.stack(bins, dim=1),
        logprobs=torch.stack(logprobs, dim=1),
        logits=torch.stack(all_logits, dim=1),
    )


def choose_bins(
    logits: Tensor, temperature: float, generator: torch.Generator | None = None, gumbel: Tensor | None = None
) -> Tensor:
    """Bins [...] chosen from restricted logits [..., n_bins]: greedy at temperature 0, else sampled at
    `temperature` from `gumbel` noise of the logits' shape (Gumbel-max) or with `generator`."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    if gumbel is not None:
        return (logits / temperature + gumbel).argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.reshape(probs.shape[:-1])


def gumbel_from_uniform(uniform_noise: Tensor, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Gumbel noise -log(-log u) of each row's own uniforms [B, D, n_bins] (checked against `shape`)."""
    if tuple(uniform_noise.shape) != shape:
        raise ValueError(f"uniform_noise has shape {tuple(uniform_noise.shape)}; expected {shape} (rows, dims, bins)")
    return -torch.log(-torch.log(uniform_noise.to(device, torch.float32).clamp(1e-20, 1.0 - 1e-7)))


@torch.no_grad()
def sample_parallel_tokens(
    logits: Tensor,
    vocab_ids: Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    uniform_noise: Tensor | None = None,
) -> ActionTokens:
    """All D action tokens at once from a parallel-decoding policy's restricted logits [B, D, n_bins] (each
    dimension independent given the context; the same choices `generate_action_tokens` makes step by step)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    gumbel = None if uniform_noise is None else gumbel_from_uniform(uniform_noise, tuple(logits.shape), logits.device)
    bins = choose_bins(logits, temperature, generator, gumbel)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, bins[..., None]).squeeze(-1)
    return ActionTokens(tokens=vocab_ids.to(logits.device)[bins], bins=bins, logprobs=logprobs, logits=logits)


def _pad(x: Tensor, rows: int) -> Tensor:
    """``x`` with copies of its last row appended up to ``rows`` rows (each row is computed on its own, so the
    copies change nothing for the others)."""
    extra = rows - x.shape[0]
    return x if extra == 0 else torch.cat([x, x[-1:].expand(extra, *x.shape[1:])])


class _EagerSteps:
    """transformers' forward and dynamic cache, one call per token (the reference engine)."""

    def __init__(self, lm: nn.Module, embeds: Tensor, mask: Tensor, positions: Tensor, vocab_ids: Tensor) -> None:
        self.lm, self.mask, self.vocab_ids = lm, mask, vocab_ids
        self.out = lm(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        self.position = positions[:, -1:]

    def logits(self) -> Tensor:
        return self.out.logits[:, -1].float().index_select(-1, self.vocab_ids)

    def advance(self, token: Tensor) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.position = self.position + 1
        self.out = self.lm(
            input_ids=token[:, None],
            attention_mask=self.mask,
            position_ids=self.position,
            past_key_values=self.out.past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )


def release_decoders(model: nn.Module) -> None:
    """Frees the model's K/V buffers and CUDA graphs (e.g. before a training phase that needs the memory)."""
    DECODERS.release(model)


class StaticKVDecoder(StaticLlamaDecoder):
    """OpenVLA's Llama over preallocated K/V buffers (vla_razor/policies/static_decoder.py), for ``batch`` rows.

    The prefill embeds [BOS, patches, prompt] (ViTs and projector inside the prefill's CUDA graph); the output
    layer is applied to the action rows only, gathered from the live weights at every step.
    """

    def __init__(self, model: OpenVLAModel, batch: int, max_len: int, graph: bool, fused: bool = True) -> None:
        super().__init__(model.language_model, model, batch, max_len, graph, fused)
        self.model = model
        self.vocab_ids = torch.zeros(0, dtype=torch.long, device=self.token.device)
        self.prefill_graphs: dict[tuple[int, bool], _PrefillGraph] = {}

    # ------------------------------------------------------------------ prefill
    def start(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, vocab_ids: Tensor
    ) -> StaticKVDecoder:
        """Runs the prefill into the buffers; the first logits are then ready."""
        batch, length = input_ids.shape
        if batch != self.batch or length + self.model.num_patches >= self.max_len:
            raise ValueError(
                f"decoder for batch {self.batch}, {self.max_len} positions got batch {batch}, {length} prompt tokens"
            )
        check_left_padded(attention_mask)
        padded = not bool(attention_mask.bool().all())
        if not torch.equal(vocab_ids, self.vocab_ids):
            self.vocab_ids = vocab_ids.clone()
            self.decode_graph, self.prefill_graphs = None, {}  # the graphs gather the head rows through these ids
        if not self.graph:
            self.step_logits = self._prefill(input_ids, attention_mask, pixel_values, padded)
            return self
        entry = self.prefill_graphs.get((length, padded))
        if entry is None:
            inputs = (input_ids.clone(), attention_mask.clone(), pixel_values.clone())
            graph, logits = self._capture(lambda: self._prefill(*inputs, padded))
            entry = self.prefill_graphs[(length, padded)] = _PrefillGraph(graph, inputs, logits)
        else:
            for buffer, value in zip(entry.inputs, (input_ids, attention_mask, pixel_values)):
                buffer.copy_(value)
            entry.graph.replay()
        self.step_logits = entry.logits
        return self

    def _prefill(self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, padded: bool) -> Tensor:
        embeds, mask, positions = self.model.multimodal_inputs(input_ids, attention_mask, pixel_values, check=False)
        return self._prefill_embeds(embeds, mask, positions, padded)

    def _head(self, h: Tensor) -> Tensor:
        """Logits [B, n_bins] (float32) of the action rows of the output layer."""
        head = self.lm.lm_head
        if type(head) is nn.Linear:  # not a LoRA-wrapped or otherwise replaced output layer
            return F.linear(h, head.weight.index_select(0, self.vocab_ids)).float()
        return head(h).float().index_select(-1, self.vocab_ids)


@dataclass
class _PrefillGraph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, Tensor, Tensor]
    """input_ids, attention_mask, pixel_values: the buffers the graph reads."""
    logits: Tensor


DECODERS = DecoderCache(StaticKVDecoder, LENGTH_BUCKET, MAX_GRAPHS_PER_MODEL)
