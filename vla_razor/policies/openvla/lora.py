"""LoRA adapters (peft) on the OpenVLA model, as OpenVLA's fine-tuning recipe: rank 32 on every linear layer.

``apply_lora`` injects adapters in place and leaves only them trainable; the adapters start at zero
(lora_B = 0), so the wrapped model computes exactly the base model's logits until the first update.
``merge_lora`` folds them back into the weights, so a fine-tuned model saves in the plain openvla-7b layout.
"""

from __future__ import annotations

import re

from torch import nn

from vla_razor.policies.openvla.configuration_openvla import LoraOptions


def lora_targets(model: nn.Module, target: str) -> list[str]:
    """Names of the nn.Linear modules to adapt: 'all-linear' (all but lm_head), 'language', or a regex."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    names = [n for n in names if not n.endswith("lm_head")]
    if target == "all-linear":
        return names
    if target == "language":
        return [n for n in names if n.startswith("language_model.")]
    pattern = re.compile(target)
    chosen = [n for n in names if pattern.search(n)]
    if not chosen:
        raise ValueError(f"lora.target_modules {target!r} matches no linear layer")
    return chosen


def apply_lora(model: nn.Module, options: LoraOptions, adapter: str = "default") -> nn.Module:
    try:
        import peft
    except ImportError as err:
        raise ImportError("LoRA needs peft: pip install 'vla-razor[robot]'") from err
    config = peft.LoraConfig(
        r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=lora_targets(model, options.target_modules), bias="none",
    )
    model = peft.inject_adapter_in_model(config, model, adapter_name=adapter)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    return model


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())


def merge_lora(model: nn.Module) -> nn.Module:
    """Folds every LoRA adapter into its base layer and removes the adapter modules."""
    from peft.tuners.lora import LoraLayer

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())
    return model
