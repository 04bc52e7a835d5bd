"""Gripper conventions (envs/gripper.py) on hand-made sequences, and where the project applies them."""

from __future__ import annotations

import numpy as np
import pytest

from data_collection.collect import stored_actions
from envs.gripper import StickyRelativeGripper, relative_to_absolute
from envs.simpler import pose_in_frame


def test_relative_to_absolute_starts_opposite_to_the_first_command() -> None:
    # RT-1: +1 close, -1 open, |g| < 0.1 keep; absolute: 1 open, 0 closed
    np.testing.assert_array_equal(relative_to_absolute([0, 0.05, 1, 0, 0, -1, 0]), [1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(relative_to_absolute([0, -0.8, 0, 0.7]), [0, 1, 1, 0])  # first "open": was closed
    np.testing.assert_array_equal(relative_to_absolute([0.0, 0.09, -0.09]), [1, 1, 1])  # no command: open throughout


def test_sticky_gripper_holds_a_change_for_fifteen_steps() -> None:
    sticky = StickyRelativeGripper()
    openings = [1.0] * 3 + [0.0] * 20 + [1.0] * 20
    commands = [sticky(o) for o in openings]
    assert commands[:3] == [0.0, 0.0, 0.0]  # nothing before the first change
    assert commands[3:18] == [1.0] * 15 and commands[18:23] == [0.0] * 5  # close, held 15 steps
    assert commands[23:38] == [-1.0] * 15 and commands[38:] == [0.0] * 5  # open, held 15 steps
    sticky.reset()
    assert sticky(0.0) == 0.0  # a new episode has no previous opening
    with pytest.raises(ValueError, match="repeat"):
        StickyRelativeGripper(repeat=0)


def test_absolute_to_relative_and_back() -> None:
    """OpenVLA's openings, made relative for the Google robot and converted back as OpenVLA converted RT-1's data,
    are the openings again (changes at least the 15 held steps apart)."""
    openings = np.array([1.0] * 5 + [0.0] * 30 + [1.0] * 20)
    sticky = StickyRelativeGripper()
    relative = np.array([sticky(o) for o in openings])
    back = relative_to_absolute(relative)
    np.testing.assert_array_equal(back[1:], openings[1:])


def test_simpler_datasets_store_openvla_absolute_grippers() -> None:
    executed = np.zeros((6, 7), np.float32)
    executed[:, 0] = 0.01
    executed[2, 6], executed[4, 6] = 1.0, -1.0  # close at step 2, open at step 4 (the Google robot's commands)
    stored = stored_actions(executed, "simpler")
    np.testing.assert_array_equal(stored[:, 6], [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(stored[:, :6], executed[:, :6])
    assert stored_actions(executed, "embedded") is executed


def test_pose_in_the_robot_base_frame() -> None:
    quarter = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # 90 degrees about z
    frame = np.concatenate([[1.0, 0.0, 0.5], quarter])
    pose = np.concatenate([[1.0, 1.0, 0.5], quarter])
    np.testing.assert_allclose(pose_in_frame(frame, pose), [1, 0, 0, 1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pose_in_frame(frame, frame), [0, 0, 0, 1, 0, 0, 0], atol=1e-12)


def test_simpler_envs_get_the_configs_options_and_the_bases_gripper() -> None:
    from vla_razor.policies.openvla import OpenVLAConfig
    from vla_razor.robot.evaluate import simpler_env_kwargs
    from vla_razor.robot.stages import load_robot_config

    cfg = load_robot_config(None, {"backend": "simpler", "simpler_env_kwargs": {"prepackaged_config": False}})
    gripper = OpenVLAConfig.openvla_7b().gripper  # OpenVLA-7B's: absolute
    assert simpler_env_kwargs(cfg, gripper) == {"prepackaged_config": False, "gripper": "absolute"}
