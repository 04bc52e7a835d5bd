"""A Llama-family decoder (Llama, Qwen2: the same layer up to q / k / v biases) run over K/V buffers allocated once.

Shared by OpenVLA's action generation (7 action tokens after the image) and the LLM domain's rollouts
(variable-length completions): each subclass makes the prefill's input embeddings and chooses the output rows.
The layers' own projections (LoRA-wrapped ones too) and rotary embedding do the work; attention, the cache,
the norms and the gated MLP activation are written here (`LlamaOps`) so they can be fused, and so every decode
step is a call of fixed shapes that a CUDA graph can replay. The weights are read live at every step, so the
decoder follows in-place updates (training between rollouts); ``matches`` tells the caller when parameters were
replaced (``.to()``, merged adapters) and the buffers and graphs must be made again. All graphs of a decoder
share one memory pool: they run one after another, and what one returns is copied out before the next.

With ``fused`` (the default), q / k / v run as one matrix product and gate / up as another, over concatenated
copies of the weights (`FusedProjections`, one per model, shared by its decoders) that are brought up to date
before every generation call in which the weights changed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

LENGTH_BUCKET = 16
"""Static K/V buffers are this many positions longer at a time, so prompts of nearby lengths share a graph."""


class StaticLlamaDecoder:
    """``lm`` (a *ForCausalLM of the Llama family) over ``max_len`` cached positions for ``batch`` rows.

    ``owner`` is the module whose parameters the decoder depends on (the LM itself, or the VLA around it).
    Subclasses implement ``_head`` (hidden state [B, H] -> float32 logits over the rows they need) and a
    ``start`` that calls ``_prefill_embeds``; ``advance`` then appends one token per row.
    """

    def __init__(
        self, lm: nn.Module, owner: nn.Module, batch: int, max_len: int, graph: bool, fused: bool = True
    ) -> None:
        cfg = lm.config
        self.owner, self.lm = owner, lm
        self.layers = list(lm.model.layers)
        self.signature = parameter_signature(owner)
        self.fused = fused_projections(lm) if fused else None
        self.fused_generation = self.fused.sync(self.signature) if self.fused is not None else 0
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.batch, self.max_len, self.graph = batch, max_len, graph
        self.ops = LlamaOps.compiled() if graph else LlamaOps()
        self.gated_silu = all(
            isinstance(layer.mlp.act_fn, nn.SiLU) or type(layer.mlp.act_fn).__name__ == "SiLUActivation"
            for layer in self.layers
        )
        weight = lm.get_input_embeddings().weight
        shape = (len(self.layers), batch, self.kv_heads, max_len, self.head_dim)
        self.keys = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.values = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=weight.device)
        # inputs and output of one decode step (fixed addresses: a CUDA graph reads and writes these)
        self.token = torch.zeros(batch, dtype=torch.long, device=weight.device)
        self.position = torch.zeros(batch, 1, dtype=torch.long, device=weight.device)
        self.write = torch.zeros(1, dtype=torch.long, device=weight.device)
        self.step_logits: Tensor | None = None
        self.decode_graph: torch.cuda.CUDAGraph | None = None
        self.decode_logits: Tensor | None = None
        self.pool: tuple[int, int] | None = None

    def matches(self, owner: nn.Module) -> bool:
        """Whether this decoder still serves ``owner``: the same parameters, and fused copies that are up to date
        (synced here) in the same buffers its CUDA graphs read."""
        signature = parameter_signature(owner)
        if owner is not self.owner or signature != self.signature:
            return False
        return self.fused is None or self.fused.sync(signature) == self.fused_generation

    # ------------------------------------------------------------------ prefill
    def _prefill_embeds(self, embeds: Tensor, mask: Tensor, positions: Tensor, padded: bool) -> Tensor:
        """Runs ``embeds`` [B, T, H] (left-padded by ``mask``) into positions 0 .. T-1; the last position's logits."""
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

    def _capture(self, fn: Callable[[], Tensor]) -> tuple[torch.cuda.CUDAGraph, Tensor]:
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
    def _layers(
        self, h: Tensor, positions: Tensor, write: Tensor | None, attn_mask: Tensor | None, causal: bool, prefill: bool
    ) -> Tensor:
        """The decoder layers and the final norm over ``h`` [B, T, H]; the K/V of its T positions go to positions
        0 .. T-1 (prefill) or to ``write`` (decode)."""
        ops = self.ops
        cos, sin = self.lm.model.rotary_emb(h, positions)
        batch, length = h.shape[:2]
        gqa = self.kv_heads != self.heads
        first = self.layers[0].input_layernorm
        x = ops.rms_norm(h, first.weight, first.variance_epsilon)
        fused = self.fused
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            qkv = fused.qkv[i] if fused is not None else None
            if qkv is not None:  # one product; q, k, v are column blocks of its output
                q, k, v = F.linear(x, qkv.weight, qkv.bias).split(qkv.splits, dim=-1)
            else:
                q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
            q = q.view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            k = k.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = ops.rotary(q, k, cos, sin)
            if prefill:  # positions 0 .. T-1: a plain copy
                self.keys[i][:, :, :length].copy_(k)
                self.values[i][:, :, :length].copy_(v)
            else:
                self.keys[i].index_copy_(2, write, k)
                self.values[i].index_copy_(2, write, v)
            if prefill:  # attend over the fresh keys only: causal flash attention when nothing is padded
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=attn_mask, is_causal=causal, scale=attn.scaling, enable_gqa=gqa
                )
            else:
                out = F.scaled_dot_product_attention(
                    q, self.keys[i], self.values[i], attn_mask=attn_mask, scale=attn.scaling, enable_gqa=gqa
                )
            post = layer.post_attention_layernorm
            h, x = ops.add_rms_norm(
                h, attn.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), post.weight, post.variance_epsilon
            )
            mlp = layer.mlp
            gate_up = fused.gate_up[i] if fused is not None else None
            if gate_up is not None:
                gate, up = F.linear(x, gate_up.weight, gate_up.bias).split(gate_up.splits, dim=-1)
            else:
                gate, up = mlp.gate_proj(x), mlp.up_proj(x)
            gated = ops.silu_mul(gate, up) if self.gated_silu else mlp.act_fn(gate) * up
            norm = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else self.lm.model.norm
            h, x = ops.add_rms_norm(h, mlp.down_proj(gated), norm.weight, norm.variance_epsilon)
        return x

    def _head(self, h: Tensor) -> Tensor:
        raise NotImplementedError


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


def parameter_signature(module: nn.Module) -> tuple[int, ...]:
    return tuple(p.data_ptr() for p in module.parameters())


class DecoderCache:
    """Each model's static decoders by (batch, length rounded up to ``bucket``, CUDA graph or not): at most
    ``per_model`` kept, the least recently used dropped first, and one made again once the model's weights moved
    (``matches``). ``make(model, batch, max_len, graph)`` builds a decoder; the OpenVLA and LLM engines each keep one."""

    def __init__(
        self, make: Callable[[nn.Module, int, int, bool, bool], StaticLlamaDecoder], bucket: int, per_model: int
    ) -> None:
        self.make, self.bucket, self.per_model = make, bucket, per_model
        self.decoders: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, bool, bool], StaticLlamaDecoder]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, model: nn.Module, batch: int, length: int, graph: bool, fused: bool = True) -> StaticLlamaDecoder:
        """The model's decoder for this batch size and a length of at least ``length``, its fused weight copies
        (``fused``) up to date."""
        bucket = -(-length // self.bucket) * self.bucket
        decoders = self.decoders.setdefault(model, {})
        key = (batch, bucket, graph, fused)
        decoder = decoders.pop(key, None)
        if decoder is None or not decoder.matches(model):
            decoder = None  # its buffers and graphs go before the new ones are made
            while len(decoders) >= self.per_model:
                decoders.pop(next(iter(decoders)))
            decoder = self.make(model, batch, bucket, graph, fused)
        decoders[key] = decoder  # most recently used last
        return decoder

    def release(self, model: nn.Module) -> None:
        """Frees the model's K/V buffers, CUDA graphs and fused weight copies (e.g. before a training phase that
        needs the memory)."""
        for decoder in self.decoders.pop(model, {}).values():
            _FUSED.pop(decoder.lm.model.layers, None)


@dataclass
class FusedProduct:
    """One concatenated projection: ``F.linear(x, weight, bias).split(splits, -1)`` gives the separate outputs."""

    weight: Tensor
    bias: Tensor | None
    splits: list[int]


_OPTIMIZER_STEPS = 0
"""Optimizer steps taken in this process (a global post-step hook): a fused optimizer kernel (AdamW(fused=True))
writes the weights without bumping their version counters, so the staleness check counts steps too."""


def _count_optimizer_step(*_: object) -> None:
    global _OPTIMIZER_STEPS
    _OPTIMIZER_STEPS += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class FusedProjections:
    """Each layer's q / k / v weights as one [(H + 2 KV) D, hidden] matrix and gate / up as one [2 I, hidden], so
    the decoder makes two products where the layers make five. ``qkv[i]`` / ``gate_up[i]`` is None where layer i
    keeps its own projections (see below).

    The copies follow the model. ``sync()``, called before every generation (``StaticLlamaDecoder.matches``),
    compares a signature of their sources with the last one: each source tensor's in-place version counter
    (``_version``: bumped by an optimizer's foreach or per-tensor update, ``load_state_dict``'s ``copy_``,
    ``mul_`` under no_grad), the count of optimizer steps taken in the process (a fused AdamW kernel bumps no
    counter), and each projection module's identity, storage and adapter state. A changed version rewrites the
    copies in place, so CUDA graphs captured over them stay valid; a changed structure (replaced parameters, a
    LoRA layer merged or disabled) makes new buffers and a new ``generation``, which remakes the decoders.
    Writes through ``.data`` bypass the version counter: call ``release_decoders`` after those.

    LoRA adapters are folded into the copy: W + (alpha / r) B A, recomputed whenever the base weight or the
    adapter changes (after every optimizer step while training LoRA: a rank-r product per projection, small
    against a generation call). Folding keeps the fused products exactly where they matter most, rollouts of a
    LoRA-trained 7B; the alternative (the unfused path whenever adapters are on) would lose them there. Folded,
    the product rounds once instead of twice (W x + s B (A x)), which the tests hold to the unfused logits. A
    layer keeps its own projections (unfused) when an adapter cannot be folded exactly: LoRA dropout (random
    per call), DoRA, several active adapters, or an unknown wrapper.
    """

    def __init__(self, lm: nn.Module) -> None:
        self.layers = list(lm.model.layers)
        self.qkv: list[FusedProduct | None] = []
        self.gate_up: list[FusedProduct | None] = []
        self.generation = 0
        self.structure: tuple = ()
        self.versions: tuple = ()
        self.signature: tuple | None = None
        self.sources: list[list[_Source | None]] = []
        self.tensors: list[Tensor] = []
        self.lora_modules: list[nn.Module] = []
        self.lora_key: tuple = ()

    def _groups(self) -> list[list[nn.Module]]:
        groups = []
        for layer in self.layers:
            attn, mlp = layer.self_attn, layer.mlp
            groups.append([attn.q_proj, attn.k_proj, attn.v_proj])
            groups.append([mlp.gate_proj, mlp.up_proj])
        return groups

    def sync(self, signature: tuple | None = None) -> int:
        """Brings the copies up to date with the layers; returns ``generation`` (changed when buffers were made).
        ``signature``: the owner's `parameter_signature`; while it and the adapters' state are those of the last
        call, the modules and tensors are those of the last call too, and only their versions are compared."""
        if signature is not None and signature == self.signature and _lora_state(self.lora_modules) == self.lora_key:
            versions = (_OPTIMIZER_STEPS, *(t._version for t in self.tensors))
            if versions != self.versions:
                self._refill(self.sources, versions)
            return self.generation
        groups = self._groups()
        sources = [[_fold_source(m) for m in group] for group in groups]
        versions = (_OPTIMIZER_STEPS, *(t._version for group in sources for src in group if src for t in src.tensors))
        structure = tuple(
            (id(m), src.structure if src else None)
            for group, srcs in zip(groups, sources)
            for m, src in zip(group, srcs)
        )
        self.signature, self.sources = signature, sources
        self.tensors = [t for group in sources for src in group if src for t in src.tensors]
        self.lora_modules = [m for group in groups for m in group if hasattr(m, "lora_A")]
        self.lora_key = _lora_state(self.lora_modules)
        if structure != self.structure:
            self.structure, self.versions = structure, versions
            products = [_fused_product(srcs) for srcs in sources]
            self.qkv, self.gate_up = products[0::2], products[1::2]
            self.generation += 1
        elif versions != self.versions:
            self._refill(sources, versions)
        return self.generation

    def _refill(self, sources: list[list[_Source | None]], versions: tuple) -> None:
        self.versions = versions
        for srcs, product in zip(sources, [p for pair in zip(self.qkv, self.gate_up) for p in pair]):
            if product is not None:
                _fill(product, srcs)


def _lora_state(modules: list[nn.Module]) -> tuple:
    """What decides whether and how each LoRA layer folds, besides its tensors."""
    return tuple((m.merged, m.disable_adapters, tuple(m.active_adapters)) for m in modules)


@dataclass
class _Source:
    """A projection's effective weight: ``weight`` (+ ``scale`` B A with LoRA) and ``bias``."""

    weight: Tensor
    bias: Tensor | None
    lora: tuple[Tensor, Tensor, float] | None

    @property
    def tensors(self) -> list[Tensor]:
        extra = [self.lora[0], self.lora[1]] if self.lora is not None else []
        return [self.weight] + ([self.bias] if self.bias is not None else []) + extra

    @property
    def structure(self) -> tuple:
        return tuple((t.data_ptr(), t.shape, t.dtype, t.device) for t in self.tensors) + (
            self.lora[2] if self.lora else None,
        )


def _fold_source(module: nn.Module) -> _Source | None:
    """The projection as weight (+ folded LoRA), or None where it cannot be folded exactly."""
    if type(module) is nn.Linear:
        return _Source(module.weight, module.bias, None)
    base = getattr(module, "base_layer", None)
    if not (hasattr(module, "lora_A") and type(base) is nn.Linear):
        return None  # an unknown wrapper
    if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
        return _Source(base.weight, base.bias, None)  # peft's forward is the base layer's alone
    active = [a for a in module.active_adapters if a in module.lora_A]
    if not active:
        return _Source(base.weight, base.bias, None)
    if len(active) > 1:
        return None
    (name,) = active
    if module.use_dora.get(name, False) or not isinstance(module.lora_dropout[name], nn.Identity):
        return None
    lora = (module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name]))
    return _Source(base.weight, base.bias, lora)


def _fused_product(sources: list[_Source | None]) -> FusedProduct | None:
    if any(src is None for src in sources):
        return None
    first = sources[0].weight
    if any(s.weight.dtype != first.dtype or s.weight.device != first.device for s in sources):
        return None
    rows = [s.weight.shape[0] for s in sources]
    weight = torch.empty(sum(rows), first.shape[1], dtype=first.dtype, device=first.device)
    bias = None
    if any(s.bias is not None for s in sources):
        bias = torch.zeros(sum(rows), dtype=first.dtype, device=first.device)
    product = FusedProduct(weight, bias, rows)
    _fill(product, sources)
    return product


@torch.no_grad()
def _fill(product: FusedProduct, sources: list[_Source]) -> None:
    """Writes the sources' effective weights into the product's buffers (in place: same storage)."""
    start = 0
    for src in sources:
        rows = src.weight.shape[0]
        block = product.weight[start : start + rows]
        if src.lora is None:
            block.copy_(src.weight)
        else:
            lora_a, lora_b, scale = src.lora
            block.copy_(torch.addmm(src.weight.float(), lora_b.float(), lora_a.float(), alpha=scale))
        if product.bias is not None and src.bias is not None:
            product.bias[start : start + rows].copy_(src.bias)
        start += rows


_FUSED: weakref.WeakKeyDictionary[nn.Module, FusedProjections] = weakref.WeakKeyDictionary()


def fused_projections(lm: nn.Module) -> FusedProjections:
    """The LM's fused weight copies (one per model, shared by all its decoders)."""
    layers = lm.model.layers
    fused = _FUSED.get(layers)
    if fused is None:
        fused = _FUSED[layers] = FusedProjections(lm)
    return fused
