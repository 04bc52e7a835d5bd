"""RT-1 output -> env action conversion (data_collection/rt1.py), closed form; needs no TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from data_collection.rt1 import convert_rt1_action


def raw(world=(0.0, 0.0, 0.0), rotation=(0.0, 0.0, 0.0), gripper=0.0) -> dict:
    return {
        "world_vector": np.array(world, np.float32),
        "rotation_delta": np.array(rotation, np.float32),
        "gripper_closedness_action": np.array([gripper], np.float32),
    }


def test_translation_and_axis_angle_pass_through_scaled() -> None:
    action, c = convert_rt1_action(raw((0.01, -0.02, 0.03), (0.1, 0.0, -0.2)), 0.0, "absolute", action_scale=2.0)
    np.testing.assert_allclose(action[:6], [0.02, -0.04, 0.06, 0.2, 0.0, -0.4], rtol=1e-6)
    assert action.dtype == np.float32 and action.shape == (7,)


def test_relative_gripper_integrates_to_absolute_panda_command() -> None:
    c, out = 0.0, []
    for g in (0.0, 0.6, 0.6, 0.6, -0.3, -1.0, 0.005):
        action, c = convert_rt1_action(raw(gripper=g), c, "absolute")
        out.append(action[6])
    # closedness 0, 0.6, 1 (clipped), 1, 0.7, 0 (clipped), 0 (0.005 is under the small-action filter)
    np.testing.assert_allclose(out, [1.0, -0.2, -1.0, -1.0, -0.4, 1.0, 1.0], atol=1e-6)


def test_relative_gripper_passes_through_for_simpler() -> None:
    action, c = convert_rt1_action(raw(gripper=0.7), 0.25, "relative")
    assert action[6] == pytest.approx(0.7) and c == 0.25
    action, _ = convert_rt1_action(raw(gripper=-0.009), 0.0, "relative")
    assert action[6] == 0.0
