"""Tiny OpenVLA models of the real structure (fused DINOv2 + SigLIP, Llama), shared by the policy tests."""

import numpy as np
import pytest
import torch

from vla_razor.hf_imports import import_timm, import_transformers  # noqa: E402

try:  # through our import helpers, which repair a torchvision whose ops do not match torch
    import_timm()
    import_transformers()
except ImportError as err:  # the robot extra is not installed
    pytest.skip(f"policy tests need the robot extra: {err}", allow_module_level=True)

from vla_razor.policies.openvla import OpenVLAConfig  # noqa: E402


def tiny_config(**overrides) -> OpenVLAConfig:
    values = dict(image_size=28, vision_dim=32, vision_depth=2, hidden=64, layers=2, fused=True)
    values.update(overrides)
    return OpenVLAConfig.tiny(**values)


@pytest.fixture(scope="session")
def policy():
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    torch.set_num_threads(1)
    return OpenVLAPolicy.from_config(tiny_config(), seed=0)


@pytest.fixture(scope="session")
def contexts():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (36, 44, 3), dtype=np.uint8) for _ in range(3)]
    instructions = ["pick coke can", "open the top drawer of the cabinet", "close drawer"]
    return images, instructions
