"""Every robot experiment config in configs/ loads into RobotConfig (a typo in one is an error naming it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_razor.config import ConfigError
from vla_razor.robot.stages import load_robot_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("robot_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_robot_config_loads(path: Path) -> None:
    cfg = load_robot_config(path)
    assert cfg.experiment == path.stem
    assert cfg.rl.optim.schedule == "constant" and cfg.sft.optim.epochs == 1  # the paper's B.2 settings


def test_config_error_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "robot_bad.yaml"
    bad.write_text("rl:\n  episodes_per_pointt: 5\n")
    with pytest.raises(ConfigError, match=r"robot_bad.yaml.*rl.episodes_per_pointt"):
        load_robot_config(bad)


def test_libero_config_loads_and_tasks_must_match_the_backend() -> None:
    cfg = load_robot_config(Path(__file__).resolve().parents[2] / "configs" / "libero_cpu.yaml")
    assert cfg.backend == "libero" and cfg.task == "libero_spatial_0" and cfg.probes == ["libero_object_1"]
    with pytest.raises(ConfigError, match="LIBERO's tasks need backend: libero"):
        load_robot_config(None, {"task": "libero_goal_0"})
    with pytest.raises(ConfigError, match=r"\['open_drawer'\].*runs LIBERO's tasks only"):
        load_robot_config(None, {"backend": "libero", "task": "libero_goal_0", "probes": ["open_drawer"]})
