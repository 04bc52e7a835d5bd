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


def test_suites_name_their_tasks_and_may_not_overlap() -> None:
    cfg = load_robot_config(
        None, {"backend": "libero", "task": "libero_spatial", "probes": ["libero_object", "libero_goal_4"]}
    )
    assert cfg.new_tasks == tuple(f"libero_spatial_{i}" for i in range(10))
    assert cfg.tasks_of("libero_object")[-1] == "libero_object_9" and cfg.tasks_of("libero_goal_4") == (
        "libero_goal_4",
    )
    short = load_robot_config(
        None, {"backend": "libero", "task": "libero_spatial", "probes": ["libero_goal"], "suite_tasks": 2}
    )
    assert short.new_tasks == ("libero_spatial_0", "libero_spatial_1") and len(short.tasks_of("libero_goal")) == 2
    with pytest.raises(ConfigError, match="distinct tasks"):  # a probe inside the new task's suite
        load_robot_config(None, {"backend": "libero", "task": "libero_spatial", "probes": ["libero_spatial_3"]})
    with pytest.raises(ConfigError, match="distinct tasks"):  # a task named twice among the probes
        load_robot_config(
            None, {"backend": "libero", "task": "libero_spatial_0", "probes": ["libero_goal", "libero_goal_1"]}
        )
    with pytest.raises(ConfigError, match="LIBERO's tasks need backend: libero"):
        load_robot_config(None, {"task": "pick_can", "probes": ["libero_goal"]})
    suite = load_robot_config(Path(__file__).resolve().parents[2] / "configs" / "libero_suite_cpu.yaml")
    assert suite.new_tasks == ("libero_spatial_0", "libero_spatial_1")
    assert [suite.tasks_of(p) for p in suite.probes] == [
        ("libero_object_0", "libero_object_1"),
        ("libero_goal_0", "libero_goal_1"),
    ]
