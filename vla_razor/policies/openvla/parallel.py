"""Parallel action decoding: the logits of all D action dimensions from one pass over [BOS, patches, prompt,
queries] (config.action_decoding = "parallel"; OpenVLA-OFT's parallel decoding, with discrete tokens).

Only the D query positions' outputs are read, so the last decoder layer computes its keys and values for every
position but its queries, attention, output projection and MLP for the D query rows alone: with a 2-layer Llama
that is about a third of the language model's work saved, and the outputs are those of the full forward
(tests/policies/test_parallel_decoding.py holds them to transformers' own). The same function serves sampling
(under no_grad) and training (gradients flow), and it calls the layers' own projection modules, so LoRA-wrapped
layers work unchanged. Under FSDP (torchrun) the policy takes transformers' own forward instead (`is_sharded`):
a sharded layer gathers its weights in its own forward, which this function does not call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla_razor.policies.static_decoder import LlamaOps

OPS = LlamaOps()  # transformers' RMSNorm, uncompiled


def query_logits(lm: nn.Module, embeds: Tensor, mask: Tensor, positions: Tensor, queries: int) -> Tensor:
    """Logits [B, queries, V] at the last ``queries`` positions of ``embeds`` [B, T, H] (left-padded by ``mask``
    [B, T], positions ``positions`` [B, T]) through ``lm``, a transformers *ForCausalLM of the Llama family."""
    cfg = lm.config
    layers = list(lm.model.layers)
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    batch, length = embeds.shape[:2]
    valid = mask.bool()
    padded = not bool(valid.all())
    cos, sin = lm.model.rotary_emb(embeds, positions)
    h = embeds
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        rows = queries if last else length  # the last layer's outputs are needed at the queries only
        attn = layer.self_attn
        x = OPS.rms_norm(h, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        k = attn.k_proj(x).view(batch, length, kv_heads, head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(batch, length, kv_heads, head_dim).transpose(1, 2)
        if last:
            h, x = h[:, -rows:], x[:, -rows:]
        q = _rope(attn.q_proj(x).view(batch, rows, heads, head_dim).transpose(1, 2), cos[:, -rows:], sin[:, -rows:])
        k = _rope(k, cos, sin)
        attn_mask = _mask(valid, rows) if padded or last else None
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None, scale=attn.scaling, enable_gqa=heads != kv_heads
        )
        h = h + attn.o_proj(out.transpose(1, 2).reshape(batch, rows, -1))
        post = layer.post_attention_layernorm
        h = h + layer.mlp(OPS.rms_norm(h, post.weight, post.variance_epsilon))
    norm = lm.model.norm
    return lm.lm_head(OPS.rms_norm(h, norm.weight, norm.variance_epsilon))


def is_sharded(lm: nn.Module) -> bool:
    """Whether ``lm``'s decoder layers are FSDP2-sharded (fully_shard)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return isinstance(lm, FSDPModule) or any(isinstance(layer, FSDPModule) for layer in lm.model.layers)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """transformers' rotary embedding of ``x`` [B, heads, T, D] (cos, sin [B, T, D])."""
    half = x.shape[-1] // 2
    return x * cos[:, None] + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin[:, None]


def _mask(valid: Tensor, rows: int) -> Tensor:
    """[B, 1, rows, T] boolean: the last ``rows`` positions attend causally to the valid keys (and to themselves,
    so a padding row stays finite)."""
    length = valid.shape[1]
    query_pos = torch.arange(length - rows, length, device=valid.device)
    key_pos = torch.arange(length, device=valid.device)
    causal = key_pos[None, :] <= query_pos[:, None]
    own = key_pos[None, :] == query_pos[:, None]
    return ((causal[None] & valid[:, None, :]) | own[None])[:, None]
