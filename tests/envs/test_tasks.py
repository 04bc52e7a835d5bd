"""The task registry (envs/tasks.py): lookup by id, clear errors, and the records the rest of envs/ reads."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.experts import make_expert
from envs.grids import default_region, grid_points, placement_options
from envs.tasks import TASK_GROUPS, TASKS, check_tasks, get_task, group_tasks


def test_lookup_by_id_and_unknown_ids_name_the_known_ones():
    assert get_task("place_can").id == "place_can"
    with pytest.raises(ValueError, match=r"unknown task 'stack_cubes'; known tasks: pick_can, open_drawer, "):
        get_task("stack_cubes")
    with pytest.raises(ValueError, match=r"probes: unknown task\(s\) \['pick_cube'\]; known tasks: pick_can"):
        check_tasks(["open_drawer", "pick_cube"], "probes")


def test_the_paper_tasks_keep_their_instructions_and_ids():
    assert envs.INSTRUCTIONS["pick_can"] == "pick coke can"
    assert envs.INSTRUCTIONS["open_drawer"] == "open top drawer"
    assert envs.INSTRUCTIONS["close_drawer"] == "close top drawer"
    assert envs.TASKS["pick_can"] == "RazorPickCan-v1"
    assert list(TASKS)[:3] == ["pick_can", "open_drawer", "close_drawer"]


def test_every_record_has_a_region_an_expert_and_a_unique_eval_stream():
    assert len({t.eval_stream for t in TASKS.values()}) == len(TASKS)
    for task in (t for t in TASKS.values() if t.libero is None):  # LIBERO's records: tests/envs/test_libero.py
        assert "embedded" in task.regions and task.experts and task.max_steps > 0
        assert make_expert(task.id).plan is task.experts[task.default_style]
        (x0, x1), (y0, y1) = default_region(task.id, "embedded")
        assert x0 < x1 and y0 < y1
        xy = grid_points(task.id, "embedded", (2, 2))[3]
        assert placement_options(task.id, "embedded", xy) == {"obj_init_options": {task.placement_key: list(xy)}}


def test_regions_and_errors_per_backend():
    np.testing.assert_allclose(default_region("pick_can", "simpler"), ((-0.35, -0.12), (-0.02, 0.42)))
    with pytest.raises(ValueError, match="SimplerEnv varies the robot pose"):
        default_region("open_drawer", "simpler")
    with pytest.raises(ValueError, match="no placement grid for 'place_can' on the 'simpler' backend"):
        default_region("place_can", "simpler")


def test_expert_styles_come_from_the_record():
    assert make_expert("pick_can").plan is TASKS["pick_can"].experts["top_down"]
    assert make_expert("pick_can", "angled").plan is TASKS["pick_can"].experts["angled"]
    assert make_expert("open_drawer", "angled").plan is TASKS["open_drawer"].experts["default"]  # one plan: any style
    with pytest.raises(ValueError, match="style 'sideways' unknown"):
        make_expert("pick_can", "sideways")


def test_the_can_region_matches_the_embedded_world():
    pytest.importorskip("mani_skill")
    from envs.embedded.pick_can import GRID_X, GRID_Y
    from envs.embedded.scene import ROBOT_BASE_XY

    assert GRID_X == (ROBOT_BASE_XY[0] + 0.40, ROBOT_BASE_XY[0] + 0.63) and GRID_Y == (-0.22, 0.22)


def test_a_suite_id_stands_for_its_tasks_and_a_task_id_for_itself():
    assert group_tasks("libero_object") == tuple(f"libero_object_{i}" for i in range(10))
    assert group_tasks("libero_90")[-1] == "libero_90_89" and len(group_tasks("libero_90")) == 90
    assert group_tasks("libero_goal", limit=2) == ("libero_goal_0", "libero_goal_1")
    assert group_tasks("libero_goal_3") == ("libero_goal_3",) and group_tasks("pick_can", limit=2) == ("pick_can",)
    assert set(TASK_GROUPS) == {"libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90"}
    assert not set(TASK_GROUPS) & set(TASKS)  # a group's id never names a task
    with pytest.raises(ValueError, match="unknown task 'libero_long'"):
        group_tasks("libero_long")
