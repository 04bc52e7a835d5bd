"""A policy folder -> a folder OpenVLA's own code loads as it loads the released openvla-7b folder
(`AutoModelForVision2Seq` / `AutoProcessor`, which run the folder's *_prismatic.py: the user's step, in OpenVLA's
environment; this project itself never runs checkpoint code), then `predict_action(..., unnorm_key=...)`.

Our policy folders already use the openvla-7b layout (config.json fields, safetensors key names, tokenizer files);
an export adds what OpenVLA's remote code needs around them: config.json's `auto_map`, a preprocessor_config.json
for its PrismaticImageProcessor (sizes, bicubic, per-backbone means / stds) and the three *_prismatic.py files.
Those files are OpenVLA's code, not ours: they are copied from `code_from` (the user's openvla-7b folder, or
prismatic/extern/hf of an OpenVLA clone). LoRA adapters are merged first.

OpenVLA's code builds its vision backbones from `vision_backbone_id` alone (timm ids and image sizes from its own
tables), so only policies with a released Prismatic vision side export; the tiny CPU policy (custom ViT widths,
byte tokenizer) is refused, saying why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from vla_razor.policies.openvla.configuration_openvla import OPENVLA_PROMPT
from vla_razor.runs import atomic_write_folder, atomic_write_json

OPENVLA_CODE_FILES = ("configuration_prismatic.py", "modeling_prismatic.py", "processing_prismatic.py")
AUTO_MAP = {
    "AutoConfig": "configuration_prismatic.OpenVLAConfig",
    "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
}
PROCESSOR_AUTO_MAP = {
    "AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
    "AutoProcessor": "processing_prismatic.PrismaticProcessor",
}


class ExportError(ValueError):
    """A policy or code folder that cannot make an OpenVLA-loadable export; the message says why."""


def check_exportable(config: Any) -> None:
    """Refuses what OpenVLA's code would build differently from the weights."""
    if any(kwargs for kwargs in (config.timm_kwargs or [])):
        raise ExportError(
            f"{config.vision_backbone_id}: this policy's ViTs are resized (timm_kwargs "
            f"{config.timm_kwargs}); OpenVLA's code builds the released backbones from "
            "vision_backbone_id alone, so it could not load these weights"
        )
    if getattr(config, "action_decoding", "autoregressive") != "autoregressive":
        raise ExportError(
            f"action_decoding: {config.action_decoding}; OpenVLA's predict_action decodes the action tokens one "
            "after another, so it would not compute this policy's actions"
        )
    if getattr(config, "prompt_template", OPENVLA_PROMPT) != OPENVLA_PROMPT:
        raise ExportError(
            f"prompt_template: {config.prompt_template!r}; OpenVLA's users prompt with {OPENVLA_PROMPT!r}, so an "
            "export would be asked what this policy was never trained on"
        )
    if config.tokenizer == "bytes":
        raise ExportError(
            "tokenizer: bytes; OpenVLA's processor needs a Hugging Face tokenizer (the checkpoint's tokenizer files)"
        )


def check_code_folder(code_from: Path) -> None:
    missing = [name for name in OPENVLA_CODE_FILES if not (code_from / name).is_file()]
    if missing:
        raise ExportError(
            f"{code_from}: no {', '.join(missing)}; point --code-from at the openvla-7b folder or "
            "at prismatic/extern/hf of an OpenVLA clone"
        )


def preprocessor_config(config: Any) -> dict[str, Any]:
    """PrismaticImageProcessor's constructor arguments for this policy (it derives the rest itself)."""
    n = config.num_backbones
    return {
        "auto_map": PROCESSOR_AUTO_MAP,
        "image_processor_type": "PrismaticImageProcessor",
        "processor_class": "PrismaticProcessor",
        "use_fused_vision_backbone": config.use_fused_vision_backbone,
        "image_resize_strategy": config.image_resize_strategy,
        "input_sizes": [[3, size, size] for size in config.image_sizes[:n]],
        "interpolations": ["bicubic"] * n,
        "means": [list(m) for m in config.image_means[:n]],
        "stds": [list(s) for s in config.image_stds[:n]],
    }


def export_openvla(policy_dir: Path, out: Path, code_from: Path) -> Path:
    """Writes the export of `policy_dir` (a policy folder, or a run folder holding policy/) to `out`, whole or
    not at all; returns `out`."""
    from vla_razor.policies.openvla import OpenVLAPolicy  # the model code: the CLI imports ExportError on any error

    policy_dir, out, code_from = Path(policy_dir), Path(out), Path(code_from)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: exists and is not an empty folder; choose another output or delete it")
    if (policy_dir / "policy" / "config.json").is_file():
        policy_dir = policy_dir / "policy"
    check_code_folder(code_from)
    policy = OpenVLAPolicy.from_pretrained(policy_dir)
    check_exportable(policy.config)
    policy.merge_adapters()

    def write(folder: Path) -> None:
        policy.save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        atomic_write_json(folder / "config.json", {**config, "auto_map": AUTO_MAP})
        atomic_write_json(folder / "preprocessor_config.json", preprocessor_config(policy.config))
        for name in OPENVLA_CODE_FILES:
            shutil.copyfile(code_from / name, folder / name)

    atomic_write_folder(out, write)
    return out
