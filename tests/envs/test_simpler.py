"""The SimplerEnv adapter's own conversions (SimplerEnv itself cannot be installed in CI)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import envs
from envs.simpler import SIMPLER_TASKS, check_object_on_table, make_proprio, resize_image, success_from_info


def test_the_paper_tasks_have_simpler_twins():
    """pick-can and the drawers stand in for SimplerEnv's tasks; place_can exists only in the embedded world."""
    assert set(SIMPLER_TASKS) == set(envs.TASKS) - {"place_can"}
    assert SIMPLER_TASKS["pick_can"] == "google_robot_pick_coke_can"


def test_a_task_without_a_twin_is_refused_on_simpler():
    from envs.simpler import make_simpler

    with pytest.raises(ValueError, match="'place_can' has no SimplerEnv twin"):
        make_simpler("place_can")


def test_resize_image_naive_uint8():
    image = np.random.default_rng(0).integers(0, 256, (512, 640, 4)).astype(np.uint8)
    out = resize_image(image, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert resize_image(image, None).shape == (512, 640, 3)
    assert resize_image(np.full((8, 8, 3), 300.0), None).max() == 255


def test_proprio_is_tcp_pose_then_joints():
    p = make_proprio(np.arange(7), np.arange(11) + 10)
    assert p.dtype == np.float32 and p.shape == (18,)
    np.testing.assert_array_equal(p[:7], np.arange(7))
    np.testing.assert_array_equal(p[7:], np.arange(11) + 10)


def test_can_below_table_is_an_error():
    check_object_on_table(0.90, 0.87, "pick_can")
    with pytest.raises(RuntimeError, match="scene asset is probably missing"):
        check_object_on_table(-3.0, 0.87, "pick_can")


def test_success_from_info():
    assert success_from_info({"success": np.array([True])}) is True
    assert success_from_info({"success": False}) is False
    assert success_from_info({}) is False


@pytest.mark.skipif(importlib.util.find_spec("simpler_env") is not None, reason="SimplerEnv is installed")
def test_missing_simpler_env_says_how_to_install():
    with pytest.raises(ImportError, match="not on PyPI"):
        envs.make("pick_can", backend="simpler")
