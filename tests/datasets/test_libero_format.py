"""data_collection/libero_format.py: LIBERO's demonstration files (written here with h5py in LIBERO's own layout)
read as our episodes, as the policy sees LIBERO's envs, and listed in sft.datasets through DemoTransitions."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_collection.convert import as_ours, detect_format
from data_collection.dataset import DatasetError, DemoDataset
from data_collection.libero_format import read_libero_episodes
from envs.libero import gripper_command
from envs.tasks import get_task
from vla_razor.robot.data import DemoTransitions

SPATIAL_0 = get_task("libero_spatial_0").libero.name
SPATIAL_1 = get_task("libero_spatial_1").libero.name


def write_libero_file(folder: Path, task_name: str, demos: dict[str, int], rewards: bool = True) -> Path:
    """One task's <name>_demo.hdf5 as LIBERO (and OpenVLA's regeneration) writes it: data attrs problem_info /
    env_args / bddl_file_name, per demo actions, obs/{agentview_rgb, eye_in_hand_rgb, ee_states, gripper_states,
    joint_states}, states, rewards, dones. Each stored frame is black with a white 8 x 8 block in its top-left
    corner (LIBERO's cameras render upside down); demo k's actions are k + step / 10 on the arm, the gripper
    alternating open (-1) and closed (+1)."""
    path = folder / f"{task_name}_demo.hdf5"
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        instruction = get_task("libero_spatial_0").instruction if task_name == SPATIAL_0 else "the other task"
        data.attrs["problem_info"] = json.dumps(
            {
                "problem_name": "libero_tabletop_manipulation",
                "domain_name": "robosuite",
                "language_instruction": instruction,
            }
        )
        data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation", "env_kwargs": {}})
        data.attrs["bddl_file_name"] = f"libero/libero/bddl_files/libero_spatial/{task_name}.bddl"
        data.attrs["num_demos"] = len(demos)
        for demo, t in demos.items():
            g = data.create_group(demo)
            k = int(demo[5:])
            actions = np.zeros((t, 7))
            actions[:, :6] = k + np.arange(t)[:, None] / 10
            actions[:, 6] = np.where(np.arange(t) % 2, 1.0, -1.0)
            g.create_dataset("actions", data=actions)
            frames = np.zeros((t, 32, 32, 3), np.uint8)
            frames[:, :8, :8] = 255
            g.create_dataset("obs/agentview_rgb", data=frames)
            g.create_dataset("obs/eye_in_hand_rgb", data=np.zeros((t, 32, 32, 3), np.uint8))
            g.create_dataset("obs/ee_states", data=np.tile(np.arange(6.0), (t, 1)) + k)
            g.create_dataset("obs/gripper_states", data=np.tile([0.04, -0.04], (t, 1)))
            g.create_dataset("obs/joint_states", data=np.zeros((t, 7)))
            g.create_dataset("states", data=np.zeros((t, 45)))
            if rewards:
                g.create_dataset("rewards", data=np.eye(t)[-1].astype(np.uint8))
                g.create_dataset("dones", data=np.eye(t)[-1].astype(np.uint8))
            g.attrs["num_samples"] = t
    return path


@pytest.fixture
def libero_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "libero_spatial"
    folder.mkdir()
    write_libero_file(folder, SPATIAL_0, {"demo_0": 3, "demo_10": 2, "demo_2": 4})
    write_libero_file(folder, SPATIAL_1, {"demo_0": 2}, rewards=False)
    return folder


def test_demos_read_as_the_policy_sees_libero(libero_folder: Path) -> None:
    episodes = list(read_libero_episodes(libero_folder, image_size=16, gripper_range=(-1.0, 1.0)))
    assert [(e.meta.task, e.meta.seed, e.meta.steps) for e in episodes] == [
        ("libero_spatial_0", 0, 3),
        ("libero_spatial_0", 2, 4),  # demos by index, not by name (demo_10 after demo_2)
        ("libero_spatial_0", 10, 2),
        ("libero_spatial_1", 0, 2),
    ]
    first = episodes[0]
    assert first.instruction == get_task("libero_spatial_0").instruction  # the file's problem_info
    assert episodes[3].instruction == "the other task"
    # images: rotated 180 degrees (the white block now bottom-right), resized to 16 x 16
    assert first.images.shape == (3, 16, 16, 3) and first.images.dtype == np.uint8
    assert first.images[:, 12:, 12:].mean() > 200 and first.images[:, :4, :4].mean() < 30
    # the arm as stored; the gripper on the policy's (closed, open) = (-1, 1): LIBERO's -1 open -> 1, +1 close -> -1
    np.testing.assert_allclose(episodes[1].actions[:, :6], 2 + np.arange(4)[:, None] / 10 * np.ones(6), rtol=1e-6)
    np.testing.assert_array_equal(first.actions[:, 6], [1.0, -1.0, 1.0])
    assert [gripper_command(g, (-1.0, 1.0)) for g in first.actions[:, 6]] == [-1.0, 1.0, -1.0]  # back to LIBERO's
    # proprio as envs/libero.py builds it: eef position and axis-angle, then the two fingers
    np.testing.assert_allclose(first.proprio[0], [0, 1, 2, 3, 4, 5, 0.04, -0.04], rtol=1e-6)
    # rewards as stored, or 1 on the last step where the file has none; LIBERO's demos succeed
    np.testing.assert_array_equal(first.rewards, [0, 0, 1])
    np.testing.assert_array_equal(episodes[3].rewards, [0, 1])
    assert all(e.meta.success for e in episodes)
    openvla = next(read_libero_episodes(libero_folder, image_size=16))  # OpenVLA's default: 1 open, 0 closed
    np.testing.assert_array_equal(openvla.actions[:, 6], [1.0, 0.0, 1.0])


def test_sft_datasets_take_a_folder_of_libero_files(
    libero_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    assert detect_format(libero_folder) == "libero"
    data = DemoTransitions([libero_folder], image_size=16, gripper_range=(-1.0, 1.0))
    assert len(data) == 3 + 4 + 2 + 2 and data.tasks == ["libero_spatial_0", "libero_spatial_1"]
    images, instructions, actions = data.rows(np.arange(3))
    assert images[0].shape == (16, 16, 3) and instructions[0] == get_task("libero_spatial_0").instruction
    np.testing.assert_array_equal(actions[:, 6], [1.0, -1.0, 1.0])
    converted = as_ours(libero_folder, image_size=16, gripper_range=(-1.0, 1.0))
    assert "libero_spatial" in DemoDataset(converted).statistics()  # the suite: OpenVLA's unnorm key
    # another image size or gripper range is another conversion, not the cached one
    assert as_ours(libero_folder, image_size=32) != converted
    assert DemoDataset(as_ours(libero_folder, image_size=32)).load(0).images.shape[1:] == (32, 32, 3)


def test_a_file_not_in_libero_layout_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    with h5py.File(folder / f"{SPATIAL_0}_demo.hdf5", "w") as f:
        f.create_dataset("data/demo_0/actions", data=np.zeros((2, 6)))
    with pytest.raises(DatasetError, match=r"_demo.hdf5: demo_0/actions has shape \[2, 6\], expected \[steps, 7\]"):
        list(read_libero_episodes(folder))
