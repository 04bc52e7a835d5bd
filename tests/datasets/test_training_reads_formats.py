"""`robot sft` and `robot pretrain` read a LeRobotDataset and an RLDS builder from their config alone (the folder
in sft.datasets / pretrain.datasets), and pretraining writes OpenVLA's statistics into the policy's norm_stats
under the dataset's name, so that unnorm_key works as in OpenVLA."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_collection.convert import ConvertConfig, as_ours, convert
from data_collection.dataset import DemoDataset
from vla_razor.cli.main import main as cli
from vla_razor.policies.openvla import OpenVLAPolicy

from tests.robot.test_sft import SMALL_EVAL, TINY


def test_sft_reads_a_lerobot_dataset(
    lerobot_python: Path,
    demo_dirs: dict[str, Path],
    tiny_base: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    convert(ConvertConfig(src=demo_dirs["pick_can_angled"], dst=tmp_path / "angled_lerobot", to="lerobot"))
    args = [
        "robot",
        "sft",
        *TINY,
        *SMALL_EVAL,
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "e",
        "--base",
        str(tiny_base),
        "--sft.datasets",
        json.dumps([str(tmp_path / "angled_lerobot")]),
        "--sft.optim.batch_size",
        "8",
        "--sft.optim.max_steps",
        "2",
        "--sft.allow_clipped_actions",
        "true",
    ]
    assert cli(args) == 0
    assert "sft: 2 updates" in capsys.readouterr().out
    run = next((tmp_path / "runs" / "e" / "runs").iterdir())
    assert str(tmp_path / "angled_lerobot") in (run / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["method"] == "sft"


def test_pretrain_reads_rlds_and_keys_norm_stats_by_its_name(
    rlds_builders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mani_skill")
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    builder = rlds_builders["fractal20220817_data"]
    args = [
        "robot",
        "pretrain",
        *TINY,
        "--pretrain.datasets",
        json.dumps([str(builder)]),
        "--pretrain.out",
        str(tmp_path / "base"),
        "--dataset_name",
        "fractal20220817_data",
        "--pretrain.optim.batch_size",
        "4",
        "--pretrain.optim.max_steps",
        "2",
    ]
    assert cli(args) == 0
    policy = OpenVLAPolicy.from_pretrained(tmp_path / "base" / "policy", dataset="fractal20220817_data")
    stats = policy.config.norm_stats["fractal20220817_data"]["action"]
    own = DemoDataset(as_ours(builder)).statistics()["fractal20220817_data"]["action"]
    np.testing.assert_allclose(stats["q01"], own["q01"])
    np.testing.assert_allclose(stats["q99"], own["q99"])
    assert stats["mask"] == [True] * 6 + [False]
