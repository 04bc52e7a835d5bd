"""RLDS read without TensorFlow (data_collection/rlds.py) on builders written by tensorflow_datasets itself
(tests/datasets/tiny_rlds.py, in .venv-rt1): OpenVLA's fractal20220817_data and bridge_orig transforms against
hand-computed actions, OpenVLA's statistics under the builder's name, one-line errors for a corrupt shard, a
missing feature and a wrong action dimension, and SFT's loader reading a builder folder from its path alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_collection.convert import ConvertConfig, as_ours, convert, detect_format
from data_collection.dataset import DatasetError, DemoDataset
from data_collection.rlds import binarize_gripper, rel2abs_gripper, rlds_to_ours
from tests.datasets import tiny_rlds
from vla_razor.robot.data import DemoTransitions


def test_rel2abs_gripper_closed_form() -> None:
    # +1 closes, -1 opens, small values change nothing; before the first command, the opposite of it.
    np.testing.assert_array_equal(rel2abs_gripper(np.array([0.0, 1.0, 0.05, 0.0, -1.0, 0.0])), [1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(rel2abs_gripper(np.array([0.0, -0.5, 0.0])), [0, 1, 1])
    np.testing.assert_array_equal(rel2abs_gripper(np.zeros(3)), [1, 1, 1])  # never commanded: open


def test_binarize_gripper_closed_form() -> None:
    # in-between values take the next settled value; a trailing in-between run keeps the last raw value
    np.testing.assert_allclose(binarize_gripper(np.array([1.0, 0.6, 0.3, 0.02, 0.5, 0.97])), [1, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(binarize_gripper(np.array([0.99, 0.4, 0.4])), [1, 0.4, 0.4])


def _raw(name: str) -> list[dict]:
    return tiny_rlds.episodes(name)


def test_fractal_as_openvla_sees_it(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    root = rlds_builders["fractal20220817_data"]
    assert detect_format(root) == "rlds"
    frames = rlds_to_ours(root, tmp_path / "ours")
    ds = DemoDataset(tmp_path / "ours")
    raw = _raw("fractal20220817_data")
    assert len(ds) == len(raw) and frames == sum(len(e["steps"]) for e in raw)
    for i, episode in enumerate(raw):
        steps, ep = episode["steps"], ds.load(i)
        world = np.array([s["action"]["world_vector"] for s in steps])
        rotation = np.array([s["action"]["rotation_delta"] for s in steps])
        # raw gripper_closedness_action 0, +1 (close), 0, 0, -1 (open) -> 1 open, then closed until reopened
        np.testing.assert_array_equal(
            ep.actions, np.concatenate([world, rotation, [[1], [0], [0], [0], [1]]], 1).astype(np.float32)
        )
        np.testing.assert_array_equal(ep.images, np.stack([s["observation"]["image"] for s in steps]))
        np.testing.assert_array_equal(ep.rewards, [0, 0, 0, 0, 1])
        assert ep.instruction == f"pick coke can {i}"
    assert ds.env_info["transform"] == "fractal20220817_data" and ds.source_type == "rlds"


def test_bridge_orig_as_openvla_sees_it(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    rlds_to_ours(rlds_builders["bridge_orig"], tmp_path / "ours")
    ds = DemoDataset(tmp_path / "ours")
    for i, episode in enumerate(_raw("bridge_orig")):
        steps, ep = episode["steps"], ds.load(i)
        state = np.array([s["observation"]["state"] for s in steps])
        # first step dropped, arm action = change of reached state[:6], last step dropped; raw openings
        # 1, 1, 0.5, 0, 0 -> (drop first) 1, 0.5, 0, 0 -> binarized 1, 0, 0, 0 -> (drop last) 1, 0, 0
        expected = np.concatenate([state[2:, :6] - state[1:-1, :6], [[1], [0], [0]]], 1).astype(np.float32)
        np.testing.assert_allclose(ep.actions, expected, atol=1e-7)
        np.testing.assert_array_equal(ep.images, np.stack([s["observation"]["image_0"] for s in steps])[1:-1])
        np.testing.assert_array_equal(ep.proprio, state[1:-1])
        assert ep.instruction == f"put the spoon in the pot {i}"


def test_statistics_are_openvlas_under_the_builder_name(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    rlds_to_ours(rlds_builders["fractal20220817_data"], tmp_path / "ours")
    stats = DemoDataset(tmp_path / "ours").statistics()
    assert list(stats) == ["fractal20220817_data"]  # OpenVLA's unnorm_key for the Google robot
    raw = _raw("fractal20220817_data")
    arm = np.array(
        [[*s["action"]["world_vector"], *s["action"]["rotation_delta"]] for e in raw for s in e["steps"]], np.float32
    ).astype(np.float64)
    a = stats["fractal20220817_data"]["action"]
    np.testing.assert_allclose(a["q01"][:6], np.quantile(arm, 0.01, axis=0), rtol=1e-6)
    np.testing.assert_allclose(a["q99"][:6], np.quantile(arm, 0.99, axis=0), rtol=1e-6)
    assert a["mask"] == [True] * 6 + [False] and (a["min"][6], a["max"][6]) == (0.0, 1.0)
    assert stats["fractal20220817_data"]["num_transitions"] == 10


def _copy(builder: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = tmp_path / builder.parent.name / builder.name
    shutil.copytree(builder, copy)
    return copy, next(copy.glob("*.tfrecord-*"))


def test_truncated_shard_names_the_file(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    copy, shard = _copy(rlds_builders["fractal20220817_data"], tmp_path)
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=rf"{shard.name}: record at byte \d+ is truncated"):
        rlds_to_ours(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_length_checksum_names_the_file(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    copy, shard = _copy(rlds_builders["fractal20220817_data"], tmp_path)
    data = bytearray(shard.read_bytes())
    data[0] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"{shard.name}: record at byte 0 has a bad length checksum"):
        rlds_to_ours(copy, tmp_path / "out")


def test_missing_feature_names_the_shard_and_feature(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    # Bridge's shards read with the fractal transform: no action dict (its gripper is read first).
    with pytest.raises(
        DatasetError,
        match=r"bridge_orig-train\.tfrecord-00000-of-00001 \(episode 0\): episode has "
        r"no feature 'steps/action/gripper_closedness_action'",
    ):
        convert(
            ConvertConfig(
                src=rlds_builders["bridge_orig"],
                dst=tmp_path / "out",
                to="ours",
                rlds_transform="fractal20220817_data",
                image_key="image_0",
            )
        )
    missing = tmp_path / "nofeatures"
    shutil.copytree(rlds_builders["bridge_orig"], missing)
    (missing / "features.json").unlink()
    with pytest.raises(DatasetError, match=r"nofeatures: not a dataset folder of a known format"):
        as_ours(missing)


def test_wrong_action_dimension_names_the_shard_and_feature(rlds_builders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError,
        match=r"tiny_six_dof-train\.tfrecord-00000-of-00001 \(episode 0\): feature "
        r"'steps/action' has 30 values for 5 steps, expected 7 per step",
    ):
        rlds_to_ours(rlds_builders["tiny_six_dof"], tmp_path / "out")


def test_sft_loader_reads_a_builder_folder(
    rlds_builders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    data = DemoTransitions([rlds_builders["fractal20220817_data"], rlds_builders["bridge_orig"]])
    assert len(data) == 10 + 6 and data.tasks == ["bridge_orig", "fractal20220817_data"]
    images, texts, actions = data.rows(np.array([0, 10]))
    assert texts == ["pick coke can 0", "put the spoon in the pot 0"] and images[0].shape == (16, 16, 3)
    stats = data.action_statistics("mix")["mix"]["action"]
    assert stats["mask"][6] is False and stats["max"][6] == 1.0


def test_rlds_to_lerobot(rlds_builders: dict[str, Path], lerobot_python: Path, tmp_path: Path) -> None:
    frames = convert(ConvertConfig(src=rlds_builders["fractal20220817_data"], dst=tmp_path / "lr", to="lerobot"))
    back = DemoDataset(as_ours(tmp_path / "lr"))
    assert frames == 10 and [m.instruction for m in back.episodes] == ["pick coke can 0", "pick coke can 1"]
    assert list(back.statistics()) == ["fractal20220817_data"]
    assert not list(tmp_path.glob(".lr*"))  # the staging folder is gone
