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
- ``graph``: ``static`` with the prefill (ViTs, projector, Llama) and each decode step replayed as CUDA
  graphs, captured once per (batch, length bucket; prefill: prompt length) and kept per model, and the
  Llama's elementwise work (RMSNorm, rotary embedding, SiLU gate, residual adds) fused by torch.compile.
  A 7B action is ~4,000 kernel launches; eager, their launch overhead sets batch-1 latency, and at large
  batches the unfused elementwise passes cost as much as the matrix products (issue #9). CUDA only.
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
LENGTH_BUCKET = 16
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
    if engine == "eager":
        embeds, mask, positions = model.multimodal_inputs(input_ids, attention_mask, pixel_values)
        steps: _EagerSteps | StaticKVDecoder = _EagerSteps(model.language_model, embeds, mask, positions, vocab_ids)
    else:
        length = input_ids.shape[1] + model.num_patches + action_dim - 1
        decoder = _decoder_for(model, input_ids.shape[0], length, engine == "graph")
        steps = decoder.start(input_ids, attention_mask, pixel_values, vocab_ids)
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
    """The model's decoder for this batch size and length bucket (made, or made again if the weights moved)."""
    bucket = -(-length // LENGTH_BUCKET) * LENGTH_BUCKET
    decoders = _DECODERS.setdefault(model, {})
    key = (batch, bucket, graph)
    decoder = decoders.pop(key, None)
    if decoder is None or not decoder.matches(model):
        while len(decoders) >= MAX_GRAPHS_PER_MODEL:
            decoders.pop(next(iter(decoders)))
        decoder = StaticKVDecoder(model, batch, bucket, graph)
    decoders[key] = decoder  # most recently used last
    return decoder


def release_decoders(model: nn.Module) -> None:
    """Frees the model's K/V buffers and CUDA graphs (e.g. before a training phase that needs the memory)."""
    _DECODERS.pop(model, None)


class StaticKVDecoder:
    """OpenVLA's Llama run over preallocated K/V buffers of ``max_len`` positions, for ``batch`` rows.

    The layers' own projections (LoRA-wrapped ones too) and rotary embedding do the work; attention, the
    cache, the norms and the gated MLP activation are written here (`LlamaOps`) so they can be fused. The
    output layer is applied to the action rows only, gathered from the live weights at every step, so the
    decoder follows in-place updates of the weights (training between rollouts). A CUDA graph holds the
    addresses of the tensors it read: ``matches`` tells the caller when the model's parameters were
    replaced (``.to()``, merged adapters) and the graphs must be captured again. All graphs of a decoder
    share one memory pool: they run one after another, and what one returns is copied out before the next.
    """

    def __init__(self, model: OpenVLAModel, batch: int, max_len: int, graph: bool) -> None:
        lm = model.language_model
        cfg = lm.config
        self.model, self.lm = model, lm
        self.layers = list(lm.model.layers)
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.batch, self.max_len, self.graph = batch, max_len, graph
        self.ops = LlamaOps.compiled() if graph else LlamaOps()
        self.gated_silu = all(isinstance(layer.mlp.act_fn, nn.SiLU) or type(layer.mlp.act_fn).__name__ == "SiLUActivation"
                              for layer in self.layers)
        self.signature = _parameter_signature(model)
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
        self.decode_graph: torch.cuda.CUDAGraph | None = None
        self.prefill_graphs: dict[tuple[int, bool], _PrefillGraph] = {}
        self.pool: tuple[int, int] | None = None

    def matches(self, model: nn.Module) -> bool:
        return model is self.model and _parameter_signature(model) == self.signature

    # ------------------------------------------------------------------ prefill
    def start(self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, vocab_ids: Tensor) -> StaticKVDecoder:
        """Runs the prefill into the buffers; the first logits are then ready."""
        from vla_razor.policies.openvla.modeling_openvla import check_left_padded

        batch, length = input_ids.shape
        if batch != self.batch or length + self.model.num_patches >= self.max_len:
            raise ValueError(f"decoder for batch {self.batch}, {self.max_len} positions got batch {batch}, "
                             f"{length} prompt tokens")
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
        length = mask.shape[1]
        self.valid.zero_()
        self.valid[:, :length] = mask.bool()
        attn_mask = None
        if padded:  # causal, padding keys hidden; each query also sees itself, so padding rows stay finite
            causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            attn_mask = (causal & mask.bool()[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device)
            attn_mask = attn_mask[:, None]
        h = self._layers(embeds, positions, None, attn_mask, causal=not padded, prefill=True)
        self.position.copy_(positions[:, -1:])
        self.write.fill_(length - 1)
        return self._head(h[:, -1])

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
        elif self.decode_graph is None:
            self.decode_graph, self.decode_logits = self._capture(self._decode_step)
            self.step_logits = self.decode_logits
        else:
            self.decode_graph.replay()
            self.step_logits = self.decode_logits

    def _decode_step(self) -> Tensor:
        self.valid.index_fill_(1, self.write, True)
        h = self.lm.get_input_embeddings()(self.token[:, None])
        h = self._layers(h, self.position, self.write, self.valid[:, None, None, :], causal=False, prefill=False)
        return self._head(h[:, -1])

    def _capture(self, fn) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        """Captures ``fn`` as a CUDA graph and replays it once. The warm-up runs (compilation, cuBLAS
        workspaces) make the same writes to the buffers that the replay makes again, so they change nothing."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn()
        self.pool = graph.pool()
        graph.replay()
        return graph, out

    # ------------------------------------------------------------------ shared
    def _layers(self, h: Tensor, positions: Tensor, write: Tensor | None, attn_mask: Tensor | None, causal: bool,
                prefill: bool) -> Tensor:
        """The decoder layers and the final norm over ``h`` [B, T, H]; the K/V of its T positions go to positions
        0 .. T-1 (prefill) or to ``write`` (decode)."""
        ops = self.ops
        cos, sin = self.lm.model.rotary_emb(h, positions)
        batch, length = h.shape[:2]
        gqa = self.kv_heads != self.heads
        first = self.layers[0].input_layernorm
        x = ops.rms_norm(h, first.weight, first.variance_epsilon)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            q = attn.q_proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = ops.rotary(q, k, cos, sin)
            if prefill:  # positions 0 .. T-1: a plain copy
                self.keys[i][:, :, :length].copy_(k)
                self.values[i][:, :, :length].copy_(v)
            else:
                self.keys[i].index_copy_(2, write, k)
                self.values[i].index_copy_(2, write, v)
            if prefill:  # attend over the fresh keys only: causal flash attention when nothing is padded
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,
                                                     scale=attn.scaling, enable_gqa=gqa)
            else:
                out = F.scaled_dot_product_attention(q, self.keys[i], self.values[i], attn_mask=attn_mask,
                                                     scale=attn.scaling, enable_gqa=gqa)
            post = layer.post_attention_layernorm
            h, x = ops.add_rms_norm(h, attn.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), post.weight,
                                    post.variance_epsilon)
            mlp = layer.mlp
            if self.gated_silu:
                gated = ops.silu_mul(mlp.gate_proj(x), mlp.up_proj(x))
            else:
                gated = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
            norm = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else self.lm.model.norm
            h, x = ops.add_rms_norm(h, mlp.down_proj(gated), norm.weight, norm.variance_epsilon)
        return x

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


def _rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """transformers' LlamaRMSNorm: normalized in float32, scaled in the input's dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def _add_rms_norm(h: Tensor, delta: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """The residual add and the next RMSNorm, in one pass when compiled."""
    h = h + delta
    return h, _rms_norm(h, weight, eps)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """transformers' apply_rotary_pos_emb (cos, sin [B, T, D]; q, k [B, heads, T, D])."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _silu_mul(gate: Tensor, up: Tensor) -> Tensor:
    return F.silu(gate) * up


class LlamaOps:
    """The elementwise parts of a Llama layer; ``compiled()`` fuses each into one kernel (torch.compile)."""

    rms_norm = staticmethod(_rms_norm)
    add_rms_norm = staticmethod(_add_rms_norm)
    rotary = staticmethod(_rotary)
    silu_mul = staticmethod(_silu_mul)

    @classmethod
    def compiled(cls) -> LlamaOps:
        global _COMPILED
        if _COMPILED is None:
            ops = cls()
            for name in ("rms_norm", "add_rms_norm", "rotary", "silu_mul"):
                setattr(ops, name, torch.compile(getattr(cls, name), dynamic=True, fullgraph=True))
            _COMPILED = ops
        return _COMPILED


_COMPILED: LlamaOps | None = None


def _parameter_signature(module: nn.Module) -> tuple[int, ...]:
    return tuple(p.data_ptr() for p in module.parameters())
