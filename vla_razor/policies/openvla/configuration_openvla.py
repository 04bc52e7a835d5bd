"""Configuration of the OpenVLA (Prismatic) policy: the real 7B layout and tiny variants of the same structure.

One dataclass covers both: ``OpenVLAConfig.openvla_7b()`` is the released ``openvla/openvla-7b`` (fused
DINOv2 ViT-L/14 + SigLIP So400m/14 at 224 px, Llama-2-7B, 256 action bins), ``OpenVLAConfig.tiny()`` the
embedded default that trains on 2 CPU cores (one small ViT, a 4-layer Llama of width 256). Swapping one for
the other is a config change (configs/policy_tiny.yaml, configs/policy_openvla_7b.yaml).

The fields named as in OpenVLA's ``config.json`` (vision_backbone_id, timm_model_ids, image_sizes,
text_config, pad_to_multiple_of, n_action_bins, norm_stats, ...) are written to and read from that file
unchanged; the rest (tiny ViT sizes, normalization constants, tokenizer) go to a ``vla_razor`` block that the
released checkpoint lacks, where the 7B defaults apply.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Literal

from vla_razor.config import option
from vla_razor.hf_imports import import_transformers
from vla_razor.lora import LoraOptions
from vla_razor.policies.openvla.action_tokenizer import (
    EMBEDDED,
    EMBEDDED_ACTION_STATS,
    FRACTAL,
    FRACTAL_ACTION_STATS,
)

DINOV2_MEAN, DINOV2_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SIGLIP_MEAN, SIGLIP_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
"""OpenVLA's prompt around the instruction (its training prompts)."""
LLAMA2_SPACE_TOKEN = 29871
"""Llama-2's empty "▁" token: OpenVLA's training prompts end with it after "Out:", so inference appends it."""

# The text_config keys that decide the Llama architecture (the rest of a saved text_config is bookkeeping).
LLAMA_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "hidden_act",
    "attention_bias",
    "mlp_bias",
    "tie_word_embeddings",
    "initializer_range",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "rope_scaling",
    "head_dim",
)

LLAMA2_7B_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "vocab_size": 32064,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "pad_token_id": 32000,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def with_llama_defaults(text_config: dict[str, Any]) -> dict[str, Any]:
    """``text_config`` with every architecture key it lacks set to transformers' LlamaConfig default.

    OpenVLA saves only the fields that differ from those defaults (the released openvla-7b has ``{model_type,
    pad_token_id, torch_dtype, vocab_size}``: Llama's defaults *are* Llama-2-7B) and rebuilds the rest with
    ``LlamaConfig(**text_config)``; so do we. Keys present are kept as they are."""
    missing = [k for k in LLAMA2_7B_TEXT_CONFIG if k not in text_config]
    if not missing:
        return text_config

    model_type = text_config.get("model_type", "llama")
    if model_type != "llama":
        raise ValueError(f"text_config.model_type: OpenVLA's language model is a Llama, got {model_type!r}")
    given = {k: v for k, v in text_config.items() if k != "model_type"}
    defaults = import_transformers().LlamaConfig(**given).to_dict()
    defaults.update(defaults.get("rope_parameters") or {})  # transformers >= 5 keeps rope_theta in there
    return {**text_config, **{k: defaults.get(k, LLAMA2_7B_TEXT_CONFIG[k]) for k in missing}}


@dataclass
class OpenVLAConfig:
    vision_backbone_id: str = option("dinosiglip-vit-so-224px", "Prismatic name of the vision backbone(s)")
    llm_backbone_id: str = option("llama2-7b-pure", "Prismatic name of the language model")
    arch_specifier: str = option("no-align+fused-gelu-mlp", "Prismatic projector name (informational)")
    use_fused_vision_backbone: bool = option(True, "two ViTs (DINOv2 + SigLIP) concatenated on channels")
    timm_model_ids: list[str] = option(
        ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"], "timm ids of the ViT(s)"
    )
    timm_override_act_layers: list[str | None] = option([None, None], "timm act_layer override per ViT")
    timm_kwargs: list[dict[str, Any]] = option(
        [], "extra timm.create_model kwargs per ViT (embed_dim, depth, num_heads, patch_size: tiny variants)"
    )
    image_sizes: list[int] = option([224, 224], "square input resolution of each ViT")
    image_resize_strategy: str = option("resize-naive", "'resize-naive' (OpenVLA): resize to the square size")
    image_means: list[list[float]] = option([DINOV2_MEAN, SIGLIP_MEAN], "per-ViT normalization mean (RGB)")
    image_stds: list[list[float]] = option([DINOV2_STD, SIGLIP_STD], "per-ViT normalization std (RGB)")
    text_config: dict[str, Any] = option(LLAMA2_7B_TEXT_CONFIG, "transformers LlamaConfig fields")
    pad_token_id: int = option(32000, "id used for padding (the first of the pad_to_multiple_of extra ids)")
    pad_to_multiple_of: int = option(64, "embedding rows added after the real vocabulary (vocab_end = V - this)")
    llm_max_length: int = option(2048, "maximum context of the language model")
    n_action_bins: int = option(256, "action bins per dimension; the ids just below vocab_end")
    norm_stats: dict[str, Any] = option(
        {FRACTAL: {"action": FRACTAL_ACTION_STATS}}, "per-dataset action statistics {name: {action: {q01, q99, mask}}}"
    )
    default_dataset: str | None = option(FRACTAL, "norm_stats key used when the caller names none")
    tokenizer: Literal["pretrained", "bytes"] = option(
        "pretrained", "'pretrained': the checkpoint folder's Llama tokenizer; 'bytes': built-in byte tokenizer"
    )
    prompt_template: str = option(
        OPENVLA_PROMPT,
        "the prompt around the instruction ({instruction}); OpenVLA's unless the policy was trained with another "
        "(a small CPU base: '{instruction}', 14 positions instead of 62)",
    )
    action_prefix_token_ids: list[int] = option(
        [LLAMA2_SPACE_TOKEN], "ids appended after the prompt, before the action tokens (OpenVLA: [29871])"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = option("bfloat16", "parameter dtype (checkpoint dtype)")
    attn_implementation: Literal["sdpa", "eager"] = option("sdpa", "Llama attention kernel")
    gripper: Literal["absolute", "relative"] = option(
        "absolute",
        "what the action's last dimension means: absolute, a target opening (OpenVLA-7B: 1 open, 0 "
        "closed; the embedded panda: +1 open .. -1 closed), or relative, a change (RT-1: +1 close); "
        "the SimplerEnv adapter converts an absolute policy's for the Google robot (envs/gripper.py)",
    )
    action_decoding: Literal["autoregressive", "parallel"] = option(
        "autoregressive",
        "autoregressive: the D action tokens one after another, each given the earlier ones (OpenVLA); parallel: all "
        "D in one forward pass from D query positions after the prompt, each dimension independent given the "
        "context (OpenVLA-OFT's parallel decoding with discrete tokens; no decode steps)",
    )
    lora: LoraOptions = option(LoraOptions(), "LoRA fine-tuning")

    # ------------------------------------------------------------------ derived facts
    @property
    def vocab_end(self) -> int:
        """One past the last real token id: action token ids are vocab_end - 256 .. vocab_end - 1."""
        return int(self.text_config["vocab_size"]) - self.pad_to_multiple_of

    @property
    def hidden_size(self) -> int:
        return int(self.text_config["hidden_size"])

    @property
    def num_backbones(self) -> int:
        return 2 if self.use_fused_vision_backbone else 1

    def validate(self) -> None:
        n = self.num_backbones
        for name in ("timm_model_ids", "timm_override_act_layers", "image_sizes", "image_means", "image_stds"):
            if len(getattr(self, name)) < n:
                raise ValueError(f"policy config: {name} needs {n} entries (one per ViT), got {getattr(self, name)}")
        if self.timm_kwargs and len(self.timm_kwargs) < n:
            raise ValueError(f"policy config: timm_kwargs needs {n} entries or none")
        if self.vocab_end < self.n_action_bins:
            raise ValueError("policy config: text_config.vocab_size - pad_to_multiple_of < n_action_bins")
        if "{instruction}" not in self.prompt_template:
            raise ValueError(
                f"policy config: prompt_template must contain {{instruction}}, got {self.prompt_template!r}"
            )
        if self.action_decoding not in ("autoregressive", "parallel"):
            raise ValueError(
                f"policy config: action_decoding must be autoregressive or parallel, got {self.action_decoding!r}"
            )
        if self.default_dataset is not None and self.norm_stats and self.default_dataset not in self.norm_stats:
            raise ValueError(
                f"policy config: default_dataset {self.default_dataset!r} is not in norm_stats {sorted(self.norm_stats)}"
            )

    def llama_config(self):  # -> transformers.LlamaConfig

        transformers = import_transformers()
        values = {k: v for k, v in self.text_config.items() if k in LLAMA_KEYS}
        values.setdefault("pad_token_id", self.pad_token_id)
        cfg = transformers.LlamaConfig(**values)
        cfg._attn_implementation = self.attn_implementation
        return cfg

    # ------------------------------------------------------------------ presets
    @classmethod
    def openvla_7b(cls, **overrides: Any) -> OpenVLAConfig:
        """The released openvla/openvla-7b (Prismatic dinosiglip-224px + Llama-2-7B, bf16)."""
        return cls(**overrides)

    @classmethod
    def tiny(
        cls,
        image_size: int = 112,
        vision_dim: int = 128,
        vision_depth: int = 3,
        hidden: int = 256,
        layers: int = 4,
        fused: bool = False,
        patch_size: int = 14,
        **overrides: Any,
    ) -> OpenVLAConfig:
        """The same structure at a size that trains on 2 CPU cores; byte tokenizer, float32.

        One SigLIP-style ViT by default (``fused=True``: a tiny DINOv2 + SigLIP pair, as the 7B). The
        vocabulary is 3 specials + 256 bytes below vocab_end = 512, the action ids are 256..511 (bytes
        0xFD-0xFF, never valid in UTF-8 text, share ids with the top action bins, as OpenVLA overwrites
        Llama's least-used tokens), and 64 pad rows follow (pad id 512). ``patch_size`` 28 at 112 px: 16 patches
        that still see every pixel (56 px at 14 would see a quarter of them).
        """
        heads = max(1, vision_dim // 32)
        vit: dict[str, Any] = {"embed_dim": vision_dim, "depth": vision_depth, "num_heads": heads, "mlp_ratio": 4.0}
        if patch_size != 14:  # the timm ids' own patch size is 14; another one is saved with the ViT's kwargs
            vit["patch_size"] = patch_size
        if fused:
            ids = ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
            values: dict[str, Any] = dict(
                vision_backbone_id="dinosiglip-vit-so-224px",
                arch_specifier="no-align+fused-gelu-mlp",
                use_fused_vision_backbone=True,
                timm_model_ids=ids,
                timm_override_act_layers=[None, None],
                timm_kwargs=[dict(vit), dict(vit)],
                image_sizes=[image_size, image_size],
                image_means=[DINOV2_MEAN, SIGLIP_MEAN],
                image_stds=[DINOV2_STD, SIGLIP_STD],
            )
        else:
            values = dict(
                vision_backbone_id="siglip-vit-so400m",
                arch_specifier="no-align+gelu-mlp",
                use_fused_vision_backbone=False,
                timm_model_ids=["vit_so400m_patch14_siglip_224"],
                timm_override_act_layers=[None],
                timm_kwargs=[dict(vit)],
                image_sizes=[image_size],
                image_means=[SIGLIP_MEAN],
                image_stds=[SIGLIP_STD],
            )
        values.update(
            llm_backbone_id="llama2-7b-pure",
            text_config={
                "model_type": "llama",
                "vocab_size": 576,
                "hidden_size": hidden,
                "intermediate_size": int(hidden * 8 / 3) // 16 * 16,
                "num_hidden_layers": layers,
                "num_attention_heads": max(1, hidden // 64),
                "num_key_value_heads": max(1, hidden // 64),
                "max_position_embeddings": 512,
                "rms_norm_eps": 1e-6,
                "rope_theta": 10000.0,
                "hidden_act": "silu",
                "tie_word_embeddings": False,
                "pad_token_id": 512,
                "bos_token_id": 1,
                "eos_token_id": 2,
            },
            pad_token_id=512,
            pad_to_multiple_of=64,
            llm_max_length=512,
            norm_stats={EMBEDDED: {"action": EMBEDDED_ACTION_STATS}, FRACTAL: {"action": FRACTAL_ACTION_STATS}},
            default_dataset=EMBEDDED,
            tokenizer="bytes",
            action_prefix_token_ids=[],
            dtype="float32",
            attn_implementation="sdpa",
        )
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ config.json
    HF_FIELDS = (
        "vision_backbone_id",
        "llm_backbone_id",
        "arch_specifier",
        "use_fused_vision_backbone",
        "timm_model_ids",
        "timm_override_act_layers",
        "image_sizes",
        "image_resize_strategy",
        "text_config",
        "pad_token_id",
        "pad_to_multiple_of",
        "llm_max_length",
        "n_action_bins",
        "norm_stats",
    )
    OWN_FIELDS = (
        "timm_kwargs",
        "image_means",
        "image_stds",
        "default_dataset",
        "tokenizer",
        "prompt_template",
        "action_prefix_token_ids",
        "attn_implementation",
        "gripper",
        "action_decoding",
    )

    def to_hf_dict(self) -> dict[str, Any]:
        """config.json in the openvla-7b layout, plus a ``vla_razor`` block for fields it does not have."""
        out: dict[str, Any] = {"architectures": ["OpenVLAForActionPrediction"], "model_type": "openvla"}
        for name in self.HF_FIELDS:
            out[name] = copy.deepcopy(getattr(self, name))
        out["text_config"] = {**out["text_config"], "torch_dtype": self.dtype}
        out["output_projector_states"] = False
        out["torch_dtype"] = self.dtype
        out["vla_razor"] = {name: copy.deepcopy(getattr(self, name)) for name in self.OWN_FIELDS}
        return out

    @classmethod
    def from_hf_dict(cls, values: dict[str, Any], source: str = "config.json") -> OpenVLAConfig:
        """Reads a config.json (ours or the released one); the released one gets the 7B defaults for the rest."""
        missing = [k for k in ("timm_model_ids", "image_sizes", "text_config") if k not in values]
        if missing:
            raise ValueError(f"{source}: not an OpenVLA config.json (missing {', '.join(missing)})")
        known = {f.name for f in fields(cls)}
        kwargs = {k: copy.deepcopy(values[k]) for k in cls.HF_FIELDS if k in values}
        kwargs.update({k: v for k, v in (values.get("vla_razor") or {}).items() if k in known})
        dtype = values.get("torch_dtype") or values["text_config"].get("torch_dtype") or "bfloat16"
        kwargs["dtype"] = str(dtype).replace("torch.", "")
        if kwargs["dtype"] not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"{source}: unsupported torch_dtype {dtype!r}")
        text = {k: v for k, v in kwargs["text_config"].items() if k in LLAMA_KEYS or k == "model_type"}
        kwargs["text_config"] = with_llama_defaults(text)
        if "norm_stats" in kwargs and kwargs["norm_stats"] and "default_dataset" not in kwargs:
            stats = kwargs["norm_stats"]
            kwargs["default_dataset"] = (
                FRACTAL if FRACTAL in stats else (next(iter(stats)) if len(stats) == 1 else None)
            )
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg


__all__ = ["LoraOptions", "OpenVLAConfig", "LLAMA2_7B_TEXT_CONFIG", "LLAMA2_SPACE_TOKEN"]
