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
- ``static``: the Llama's layers driven here over K/V buffers allocated once for the whole action
  (`StaticKVDecoder`): prefill with causal SDPA (flash attention when no row is padded), each decode step a
  fixed-shape call, the output layer applied to the 256 action rows only.
- ``graph``: ``static`` with each decode step replayed as a CUDA graph, captured once per (batch, length
  bucket) and kept per model. A 7B decode step is ~700 kernel launches; eager, their launch overhead, not the
  weight reads, sets batch-1 latency (issue #9). CUDA only.
``auto`` is ``graph`` on CUDA and ``static`` elsewhere.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla_razor.policies.openvla.modeling_openvla import OpenVLAModel

Engine = Literal["auto", "eager", "static", "graph"]
LENGTH_BUCKET = 64
"""Static K/V buffers are this many positions longer at a time, so prompts of nearby lengths share a graph."""
MAX_GRAPHS_PER_MODEL = 4


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
    device = input_ids.device
    vocab_ids = vocab_ids.to(device)
    engine = resolve_engine(engine, device)
    embeds, mask, positions = model.multimodal_inputs(input_ids, attention_mask, pixel_values)
    if engine == "eager":
        steps = _EagerSteps(model.language_model, embeds, mask, positions, vocab_ids)
    else:
        decoder = _decoder_for(model, embeds.shape[0], embeds.shape[1] + action_dim - 1, engine == "graph")
        steps = decoder.start(embeds, mask, positions, vocab_ids)
    tokens, bins, logprobs, all_logits = [], [], [], []
    for step in range(action_dim):
        logits = steps.logits()  # [B, n_bins] float32
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
        all_logits.append(logits.clone())
        if step < action_dim - 1:
            steps.advance(token)
    return ActionTokens(
        tokens=torch.stack(tokens, dim=1),
        bins=torch.stack(bins, dim=1),
        logprobs=torch.stack(logprobs, dim=1),
        logits=torch.stack(all_logits, dim=1),
    )


class _EagerSteps:
    """transformers' forward and dynamic cache, one call per token (the reference engine)."""

    def __init__(self, lm: nn.Module, embeds: Tensor, mask: Tensor, positions: Tensor, vocab_ids: Tensor) -> None:
        self.lm, self.mask, self.vocab_ids = lm, mask, vocab_ids
        self.out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        self.position = positions[:, -1:]

    def logits(self) -> Tensor:
        return self.out.logits[:, -1].float().index_select(-1, self.vocab_ids)

    def advance(self, token: Tensor) -> None:
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.position = self.position + 1
        self.out = self.lm(
            input_ids=token[:, None], attention_mask=self.mask, position_ids=self.position,
            past_key_values=self.out.past_key_values, use_cache=True, logits_to_keep=1,
        )


_DECODERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, bool], StaticKVDecoder]] = weakref.WeakKeyDictionary()


def _decoder_for(model: OpenVLAModel, batch: int, length: int, graph: bool) -> StaticKVDecoder:
    """The model's decoder for this batch size and length bucket (made, or rebuilt if the weights moved)."""
    bucket = -(-length // LENGTH_BUCKET) * LENGTH_BUCKET
    decoders = _DECODERS.setdefault(model, {})
    key = (batch, bucket, graph)
    decoder = decoders.get(key)
    if decoder is None or not decoder.matches(model.language_model):
        decoders.pop(key, None)
        while len(decoders) >= MAX_GRAPHS_PER_MODEL:
            decoders.pop(next(iter(decoders)))
        decoder = StaticKVDecoder(model.language_model, batch, bucket, graph)
    decoders[key] = decoders.pop(key, decoder)  # most recently used last
    return decoder


class StaticKVDecoder:
    """A Llama (transformers' LlamaForCausalLM) run over preallocated K/V buffers of ``max_len`` positions.

    The layers' own modules (norms, projections, MLPs, rotary embedding; LoRA-wrapped ones too) do the
    work; only attention and the cache are done here, so there is one code path for any weights. The
    output layer is applied to the action rows only, gathered from the live weights at every step, so the
    decoder follows in-place updates of the weights (training between rollouts). A CUDA graph holds the
    addresses of the tensors it read: ``matches`` tells the caller when the model's parameters were
    replaced (``.to()``, merged adapters) and the graph must be captured again.
    """

    def __init__(self, lm: nn.Module, batch: int, max_len: int, graph: bool) -> None:
        cfg = lm.config
        self.lm = lm
        self.layers = list(lm.model.layers)
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.batch, self.max_len, self.graph = batch, max_len, graph
        self.signature = _parameter_signature(lm)
        weight = lm.get_input_embeddings().weight
        shape = (len(self.layers), batch, self.kv_heads, max_len, self.head_dim)
        self.keys = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=weight.device)
        # inputs and output of one decode step (fixed addresses: a CUDA graph reads and writes these)
        self.token = torch.zeros(batch, dtype=torch.long, device=weight.device)
        self.position = torch.zeros(batch, 1, dtype=torch.long, device=weight.device)
        self.write = torch.zeros(1, dtype=torch.long, device=weight.device)
        self.vocab_ids = torch.zeros(0, dtype=torch.long, device=weight.device)
        self.step_logits: Tensor | None = None
        self.cuda_graph: torch.cuda.CUDAGraph | None = None
        from vla_razor.hf_imports import import_transformers

        self.apply_rotary = import_transformers().models.llama.modeling_llama.apply_rotary_pos_emb

    def matches(self, lm: nn.Module) -> bool:
        return lm is self.lm and _parameter_signature(lm) == self.signature

    # ------------------------------------------------------------------ prefill
    def start(self, embeds: Tensor, mask: Tensor, positions: Tensor, vocab_ids: Tensor) -> StaticKVDecoder:
        """Runs the prefill over ``embeds`` [B, T, H] into the buffers; the first logits are then ready."""
        batch, length = mask.shape
        if batch != self.batch or length >= self.max_len:
            raise ValueError(f"decoder for batch {self.batch}, {self.max_len} positions got batch {batch}, length {length}")
        if not torch.equal(vocab_ids, self.vocab_ids):
            self.vocab_ids = vocab_ids.clone()
            self.cuda_graph = None  # the graph gathers the head rows through these ids
        self.valid.zero_()
        self.valid[:, :length] = mask.bool()
        padded = not bool(mask.bool().all())
        attn_mask = None
        if padded:  # causal, padding keys hidden; each query also sees itself, so padding rows stay finite
            causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            attn_mask = (causal & mask.bool()[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device)
            attn_mask = attn_mask[:, None]
        write = torch.arange(length, device=mask.device)
        h = self._layers(embeds, positions, write, attn_mask, causal=not padded, prefill=True)
        self.step_logits = self._head(h[:, -1])
        self.position.copy_(positions[:, -1:])
        self.write.fill_(length - 1)
        return self

    # ------------------------------------------------------------------ decode
    def logits(self) -> Tensor:
        assert self.step_logits is not None
        return self.step_logits

    def advance(self, token: Tensor) -> None:
        """Appends ``token`` [B] to every row and computes the next logits."""
        self.token.copy_(token)
        self.position.add_(1)
        self.write.add_(1)
        if not self.graph:
            self.step_logits = self._decode_step()
            return
        if self.cuda_graph is None:
            self._capture()
        assert self.cuda_graph is not None
        self.cuda_graph.replay()

    def _decode_step(self) -> Tensor:
        self.valid.index_fill_(1, self.write, True)
        h = self.lm.get_input_embeddings()(self.token[:, None])
        h = self._layers(h, self.position, self.write, self.valid[:, None, None, :], causal=False, prefill=False)
        return self._head(h[:, -1])

    def _capture(self) -> None:
        """Captures one decode step, then replays it. The warm-up runs the same step (same token, position and
        write index), so its writes are the ones the replay makes again."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph (cuBLAS workspaces, lazy initializations)
                self._decode_step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step_logits = self._decode_step()
        self.cuda_graph = graph
        graph.replay()

    # ------------------------------------------------------------------ shared
    def _layers(self, h: Tensor, positions: Tensor, write: Tensor, attn_mask: Tensor | None, causal: bool,
                prefill: bool) -> Tensor:
        cos, sin = self.lm.model.rotary_emb(h, positions)
        batch, length = h.shape[:2]
        gqa = self.kv_heads != self.heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.apply_rotary(q, k, cos, sin)
            self.keys[i].index_copy_(2, write, k)
            self.values[i].index_copy_(2, write, v)
            if prefill:  # attend over the fresh keys only: causal flash attention when nothing is padded
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,
                                                     scale=attn.scaling, enable_gqa=gqa)
            else:
                out = F.scaled_dot_product_attention(q, self.keys[i], self.values[i], attn_mask=attn_mask,
                                                     scale=attn.scaling, enable_gqa=gqa)
            h = h + attn.o_proj(out.transpose(1, 2).reshape(batch, length, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return self.lm.model.norm(h)

    def _head(self, h: Tensor) -> Tensor:
        """Logits [B, n_bins] (float32) of the action rows of the output layer."""
        head = self.lm.lm_head
        if type(head) is nn.Linear:  # not a LoRA-wrapped or otherwise replaced output layer
            return F.linear(h, head.weight.index_select(0, self.vocab_ids)).float()
        return head(h).float().index_select(-1, self.vocab_ids)


def _parameter_signature(module: nn.Module) -> tuple[int, ...]:
    return tuple(p.data_ptr() for p in module.parameters())
