"""The robot tests need the simulator and the robot extra; their datasets and tiny base are session fixtures in
tests/conftest.py (shared with the robot sweep test)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mani_skill")
try:  # through the project's import helper, which repairs a torchvision whose ops do not match torch
    from vla_razor.hf_imports import import_timm

    import_timm()
except ImportError as err:
    pytest.skip(f"robot tests need the robot extra: {err}", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
QUICK = {
    "progress": False,
    "wandb": "off",
    "threads": 1,
    "camera_size": 32,
    "workers": 0,
    "pretrain.policy_config": REPO / "configs/policy_tiny.yaml",
    "eval.pick_can_episodes": 2,
    "eval.probe_episodes": 1,
    "eval.kl_episodes": 1,
    "eval.kl_frames_per_episode": 3,
    "eval.max_steps": 6,
}
"""Config overrides that keep a robot stage to seconds: 32 px camera, in-process simulator, tiny evaluation."""
