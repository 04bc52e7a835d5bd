"""The OpenVLA (Prismatic) model: timm ViT(s) -> GELU MLP projector -> patch embeddings after BOS -> Llama.

Parameter names are those of the released ``openvla/openvla-7b`` checkpoint, so ``state_dict()`` is the
checkpoint's key set: ``vision_backbone.featurizer.*`` (DINOv2, or the single ViT), ``vision_backbone.
fused_featurizer.*`` (SigLIP), ``projector.fc{1,2,3}.*``, ``language_model.*`` (transformers'
LlamaForCausalLM). timm's LayerScale ``gamma`` is held as ``scale_factor`` (OpenVLA renamed it because
transformers' loader rewrites parameters called gamma). Image features are the patch tokens (no CLS or
register tokens) of each ViT's second-to-last block, before the final norm, concatenated on channels.

Sequence layout, also for left-padded batches: ``[pad ... pad, BOS, patch_1 .. patch_P, prompt tokens ...]``.
The patches go right after each example's BOS (OpenVLA inserts them at position 1, which is BOS only
without left padding), and position ids count from each example's BOS, so a left-padded batch computes the
same logits as each example alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vla_razor.hf_imports import import_timm, import_transformers
from vla_razor.policies.openvla.configuration_openvla import OpenVLAConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ScaledLayer(nn.Module):
    """timm's LayerScale (x * gamma) with the parameter named ``scale_factor`` as in OpenVLA's checkpoints."""

    def __init__(self, gamma: Tensor) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(gamma.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale_factor


def _rename_layer_scale(vit: nn.Module) -> None:
    timm = import_timm()
    layer_scale = timm.layers.LayerScale
    for parent in list(vit.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, layer_scale):
                setattr(parent, name, ScaledLayer(child.gamma))


def create_vit(model_id: str, image_size: int, act_layer: str | None, extra: dict | None) -> nn.Module:
    """A timm ViT with random weights (pretrained=False), classifier removed, LayerScale renamed."""
    timm = import_timm()
    kwargs = dict(pretrained=False, num_classes=0, img_size=image_size, **(extra or {}))
    if act_layer is not None:
        kwargs["act_layer"] = act_layer
    vit = timm.create_model(model_id, **kwargs)
    if len(vit.blocks) < 2:
        raise ValueError(f"{model_id}: the penultimate-layer features need a ViT of depth >= 2")
    _rename_layer_scale(vit)
    return vit


def penultimate_patches(vit: nn.Module, pixels: Tensor) -> Tensor:
    """Patch tokens [B, N, D] of the second-to-last block (no prefix tokens, no final norm)."""
    (features,) = vit.forward_intermediates(
        pixels,
        indices=[len(vit.blocks) - 2],
        norm=False,
        output_fmt="NLC",
        intermediates_only=True,
        stop_early=True,
    )
    return features


class PrismaticVisionBackbone(nn.Module):
    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        extra = config.timm_kwargs or [{}] * config.num_backbones
        self.use_fused = config.use_fused_vision_backbone
        self.featurizer = create_vit(
            config.timm_model_ids[0], config.image_sizes[0], config.timm_override_act_layers[0], extra[0]
        )
        self.embed_dim = self.featurizer.embed_dim
        if self.use_fused:
            self.fused_featurizer = create_vit(
                config.timm_model_ids[1], config.image_sizes[1], config.timm_override_act_layers[1], extra[1]
            )
            self.embed_dim += self.fused_featurizer.embed_dim

    def forward(self, pixel_values: Tensor) -> Tensor:
        """pixel_values [B, 3 * n_vits, H, W] (one normalized copy per ViT, stacked on channels) -> [B, N, D]."""
        if not self.use_fused:
            return penultimate_patches(self.featurizer, pixel_values)
        first, second = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat(
            [penultimate_patches(self.featurizer, first), penultimate_patches(self.fused_featurizer, second)], dim=2
        )


class PrismaticProjector(nn.Module):
    """fused: fc1 (d -> 4d) GELU fc2 (-> llm) GELU fc3 (llm -> llm); single: fc1 (d -> llm) GELU fc2."""

    def __init__(self, fused: bool, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim)
            self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, patches: Tensor) -> Tensor:
        x = self.fc2(self.act(self.fc1(patches)))
        return self.fc3(self.act(x)) if self.fused else x


def check_left_padded(attention_mask: Tensor) -> None:
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("input_ids must be left-padded: the last position of every row must be valid")


class OpenVLAModel(nn.Module):
    """Vision backbone + projector + LlamaForCausalLM, with OpenVLA's parameter names."""

    def __init__(self, config: OpenVLAConfig) -> None:
        super().__init__()
        config.validate()
        transformers = import_transformers()
        self.config = config
        self.vision_backbone = PrismaticVisionBackbone(config)
        self.projector = PrismaticProjector(
            config.use_fused_vision_backbone, self.vision_backbone.embed_dim, config.hidden_size
        )
        self.language_model = transformers.LlamaForCausalLM(config.llama_config())

    @property
    def num_patches(self) -> int:
        return int(self.vision_backbone.featurizer.patch_embed.num_patches)

    def embed_images(self, pixel_values: Tensor) -> Tensor:
        """[B, 3 * n_vits, H, W] -> projected patch embeddings [B, P, hidden]."""
        dtype = self.projector.fc1.weight.dtype
        return self.projector(self.vision_backbone(pixel_values.to(dtype)))

    def multimodal_inputs(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, check: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Embeddings [B, T + P, H], attention mask and position ids with the patches after each BOS.

        ``input_ids`` [B, T] are left-padded (``attention_mask`` 0 on the padding) and each row's first
        valid token is BOS. ``check=False`` skips the left-padding check, the one step that waits for the
        device (a CUDA graph cannot contain it; the caller checks first).
        """
        batch, length = input_ids.shape
        mask = attention_mask.to(torch.long)
        if check:
            check_left_padded(mask)
        patches = self.embed_images(pixel_values)
        num_patches = patches.shape[1]
        text = self.language_model.get_input_embeddings()(input_ids)
        bos = (mask.cumsum(dim=1) == 0).sum(dim=1)  # index of each row's first valid token
        positions = torch.arange(length, device=input_ids.device).expand(batch, length)
        text_dest = positions + num_patches * (positions > bos[:, None])
        patch_dest = bos[:, None] + 1 + torch.arange(num_patches, device=input_ids.device)
        rows = torch.arange(batch, device=input_ids.device)[:, None]
        embeds = text.new_zeros(batch, length + num_patches, text.shape[-1])
        embeds[rows, text_dest] = text
        embeds[rows, patch_dest] = patches.to(text.dtype)
        full_mask = mask.new_ones(batch, length + num_patches)
        full_mask[rows, text_dest] = mask
        position_ids = (full_mask.cumsum(dim=1) - 1).clamp(min=0)
        return embeds, full_mask, position_ids

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, use_cache: bool = False
    ):  # -> transformers CausalLMOutputWithPast over the multimodal sequence
        embeds, mask, position_ids = self.multimodal_inputs(input_ids, attention_mask, pixel_values)
        return self.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=use_cache
        )


def build_model(config: OpenVLAConfig, device: str | torch.device | None = None) -> OpenVLAModel:
    """A randomly initialized model in ``config.dtype`` (``device="meta"``: shapes only, no memory)."""
    dtype = DTYPES[config.dtype]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if device is not None:
            with torch.device(device):
                model = OpenVLAModel(config)
        else:
            model = OpenVLAModel(config)
    finally:
        torch.set_default_dtype(previous)
    return model
