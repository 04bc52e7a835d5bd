"""Real demonstration datasets for the robot tests: the scripted experts on the embedded world, 32 px camera."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mani_skill")
try:  # through the project's import helper, which repairs a torchvision whose ops do not match torch
    from vla_razor.policies.openvla._imports import import_timm

    import_timm()
except ImportError as err:
    pytest.skip(f"robot tests need the robot extra: {err}", allow_module_level=True)

from data_collection.rt1_grid import main as collect  # noqa: E402

COMMON = ["--camera_size", "32", "--workers", "0", "--progress", "false", "--max_attempts_per_point", "3"]


@pytest.fixture(scope="session")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pick_can in both expert styles (2x2 grid, 1 success a point) and open_drawer (1x2, 1 a point)."""
    root = tmp_path_factory.mktemp("demos")
    dirs = {
        "pick_can_top_down": ["--task", "pick_can", "--expert_style", "top_down", "--grid", "2x2"],
        "pick_can_angled": ["--task", "pick_can", "--expert_style", "angled", "--grid", "2x2"],
        "open_drawer": ["--task", "open_drawer", "--grid", "1x2"],
    }
    out = {}
    for name, args in dirs.items():
        out[name] = root / name
        assert collect([*args, *COMMON, "--successes_per_point", "1", "--out", str(out[name])]) == 0
    return out
