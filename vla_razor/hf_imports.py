"""Imports of the Hugging Face model libraries (timm, transformers), with one repair for a broken torchvision.
They are imported inside the functions: heavy, and optional (the robot and llm extras).

timm imports torchvision at import time. On a machine with a CPU-only torch build and the PyPI torchvision
wheel (built against CUDA torch), torchvision's compiled ops fail to load and torchvision's own import then
fails registering a fake kernel for `torchvision::nms` (the one registration it does not guard). The ViTs
we build never call torchvision ops, so in that case we declare the two op schemas (no kernels) and import
again; any later use of those ops fails loudly, as it would have anyway.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None  # kept alive: dropping it would undefine the schemas


def _declare_torchvision_schemas() -> None:
    global _library
    if _library is not None:
        return
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _TORCHVISION_SCHEMAS.items():
        if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not _op_exists(name):
            _library.define(schema)


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def import_timm() -> ModuleType:
    """`import timm`, repairing a torchvision whose compiled ops do not match the installed torch."""
    try:
        import timm
    except ImportError as err:
        raise ImportError("the OpenVLA policy needs timm: pip install 'vla-razor[robot]'") from err
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith(("torchvision.", "timm"))]:
            del sys.modules[name]
        _declare_torchvision_schemas()
        import timm
    return timm


def import_transformers() -> ModuleType:
    import_timm()  # transformers may import torchvision too; repair it first
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "the OpenVLA policy and the LLM domain need transformers: pip install 'vla-razor[robot]' (or [llm])"
        ) from err
    return transformers
