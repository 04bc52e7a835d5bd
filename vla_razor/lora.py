"""LoRA adapters (peft) for any model we fine-tune: the OpenVLA policy (OpenVLA's recipe: rank 32 on every linear
layer) and the LLM domain's causal LMs. One `LoraOptions` section configures both (`lora:` in a robot or llm config).

``apply_lora`` injects adapters in place and leaves only them trainable; the adapters start at zero
(lora_B = 0), so the wrapped model computes exactly the base model's logits until the first update.
``merge_lora`` folds them back into the weights, so a fine-tuned model saves in its plain layout (openvla-7b's,
or the Hugging Face folder of the LLM it started from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from vla_razor.config import ConfigError, option
from vla_razor.hf_imports import import_transformers


@dataclass
class LoraOptions:
    enabled: bool = option(False, "wrap the model's linear layers with LoRA adapters (peft); only adapters train")
    r: int = option(32, "LoRA rank (OpenVLA's fine-tuning recipe: 32)", ge=1)
    alpha: int = option(16, "LoRA scaling numerator (scale = alpha / r)", ge=1)
    dropout: float = option(0.0, "dropout on the LoRA branch", ge=0, lt=1)
    target_modules: str = option(
        "all-linear",
        "'all-linear' (every nn.Linear but the output layer), 'language' (OpenVLA: its Llama's linears "
        "only), or a regex over module names (e.g. 'q_proj|v_proj')",
    )


def lora_targets(model: nn.Module, target: str) -> list[str]:
    """Names of the nn.Linear modules to adapt: 'all-linear' (all but lm_head), 'language', or a regex."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    names = [n for n in names if not n.endswith("lm_head")]
    if target == "all-linear":
        chosen = names
    elif target == "language":
        chosen = [n for n in names if n.startswith("language_model.")]
    else:
        try:
            pattern = re.compile(target)
        except re.error as err:
            raise ConfigError(f"lora.target_modules: {target!r} is not a valid regex ({err})") from None
        chosen = [n for n in names if pattern.search(n)]
    if not chosen:
        raise ConfigError(
            f"lora.target_modules: {target!r} matches no linear layer of the model (e.g. "
            f"{', '.join(names[:3])}); use 'all-linear' or a regex over those names"
        )
    return chosen


def apply_lora(model: nn.Module, options: LoraOptions, adapter: str = "default") -> nn.Module:
    """`model` with adapters on `options.target_modules` (in place), only they trainable."""
    import_transformers()  # peft imports transformers: through the helper that repairs a broken torchvision
    try:
        import peft  # optional (the robot and llm extras), and it imports transformers (heavy)
    except ImportError as err:
        raise ImportError("LoRA needs peft: pip install 'vla-razor[robot]' (or [llm])") from err
    config = peft.LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=lora_targets(model, options.target_modules),
        bias="none",
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
