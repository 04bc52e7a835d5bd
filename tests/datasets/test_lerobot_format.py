"""Ours <-> LeRobotDataset v3.0 through lerobot's own LeRobotDataset (data_collection/lerobot_format.py, run by
data_collection/convert.py in .venv-lerobot): round trips keep every field, lerobot itself reads what we write,
a foreign LeRobotDataset (written by lerobot, other keys) converts, bad ones give one line naming file and field,
and SFT's loader reads a LeRobotDataset folder from its path alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_collection.convert import ConvertConfig, as_ours, convert, detect_format
from data_collection.dataset import DatasetError, DemoDataset
from tests.datasets.conftest import make_ours, run_in
from vla_razor.cli.main import main as cli
from vla_razor.robot.data import DemoTransitions

# Writes a LeRobotDataset the way another stack would: lerobot's API, its own feature names.
FOREIGN = """
import json, sys, numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root, action_dim, with_image = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
features = {"action": {"dtype": "float32", "shape": (action_dim,), "names": None},
            "observation.state": {"dtype": "float32", "shape": (2,), "names": None}}
if with_image:
    features["observation.images.top"] = {"dtype": "image", "shape": (20, 20, 3), "names": ["h", "w", "c"]}
ds = LeRobotDataset.create("someone/foreign", fps=10, features=features, root=root, use_videos=False)
rng = np.random.default_rng(5)
actions = []
for e, task in enumerate(["open the drawer", "close the drawer"]):
    for k in range(3 + e):
        a = rng.uniform(-1, 1, action_dim).astype(np.float32)
        actions.append(a.tolist())
        frame = {"action": a, "observation.state": np.array([e, k], np.float32), "task": task}
        if with_image:
            frame["observation.images.top"] = np.full((20, 20, 3), 10 * k + e, np.uint8)
        ds.add_frame(frame)
    ds.save_episode()
ds.finalize()
print(json.dumps({"actions": actions}))
"""

# Reads a folder with lerobot's LeRobotDataset, as another stack would.
READ_BACK = """
import json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset("local/check", root=sys.argv[1])
item = ds[int(sys.argv[2])]
print(json.dumps({"episodes": ds.num_episodes, "frames": ds.num_frames, "fps": ds.fps,
                  "features": sorted(ds.features), "task": item["task"],
                  "action": item["action"].tolist(), "image": item["observation.images.rgb"].shape[-2:] and
                  (item["observation.images.rgb"] * 255).round().to(dtype=__import__("torch").uint8)
                  .permute(1, 2, 0).numpy().tolist(),
                  "success": [bool(x) for x in ds.hf_dataset.with_format(None)["next.success"]]}))
"""


@pytest.fixture(scope="module")
def converted(lerobot_python: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoDataset, Path, Path]:
    """(our source, its LeRobotDataset, the LeRobotDataset converted back to ours)."""
    base = tmp_path_factory.mktemp("lerobot")
    src = make_ours(base / "ours")
    assert convert(ConvertConfig(src=base / "ours", dst=base / "lr", to="lerobot")) == src.num_transitions
    assert convert(ConvertConfig(src=base / "lr", dst=base / "back", to="ours")) == src.num_transitions
    return src, base / "lr", base / "back"


def test_round_trip_keeps_every_field(converted: tuple[DemoDataset, Path, Path]) -> None:
    src, lr, back_root = converted
    assert detect_format(lr) == "lerobot" and detect_format(back_root) == "ours"
    back = DemoDataset(back_root)
    assert back.episodes == src.episodes  # task, instruction, seed, grid point / xy, attempt, steps, success, kwargs
    assert (back.env_info, back.source_type) == (src.env_info, src.source_type)
    index = lambda root: json.loads((root / "trajectory.json").read_text())  # noqa: E731
    assert index(back_root) == index(src.root)
    for i in range(len(src)):
        a, b = src.load(i), back.load(i)
        for name in ("images", "proprio", "actions", "rewards"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    assert back.statistics() == src.statistics()  # same key (the unnorm_key), same numbers


def test_lerobot_reads_what_we_write(converted: tuple[DemoDataset, Path, Path], lerobot_python: Path) -> None:
    src, lr, _ = converted
    info = json.loads((lr / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["video_path"] is None  # images in the parquet, no ffmpeg
    row = src.episodes[0].steps + 2  # third frame of the second episode
    got = run_in(lerobot_python, READ_BACK, str(lr), str(row))
    ep1 = src.load(1)
    assert (got["episodes"], got["frames"], got["fps"]) == (len(src), src.num_transitions, 3)
    assert {"observation.images.rgb", "observation.state", "action", "next.reward", "next.success"} <= set(
        got["features"]
    )
    assert got["task"] == ep1.instruction
    np.testing.assert_allclose(got["action"], ep1.actions[2], rtol=0, atol=0)
    np.testing.assert_array_equal(np.array(got["image"], np.uint8), ep1.images[2])
    ends = np.cumsum([m.steps for m in src.episodes]) - 1
    assert [i for i, s in enumerate(got["success"]) if s] == [
        int(ends[e]) for e, m in enumerate(src.episodes) if m.success
    ]


def test_foreign_lerobot_dataset_converts(lerobot_python: Path, tmp_path: Path) -> None:
    written = run_in(lerobot_python, FOREIGN, str(tmp_path / "foreign"), "7", "1")
    ours = DemoDataset(as_ours(tmp_path / "foreign"))
    assert [m.instruction for m in ours.episodes] == ["open the drawer", "close the drawer"]
    assert [m.steps for m in ours.episodes] == [3, 4] and ours.source_type == "lerobot"
    np.testing.assert_array_equal(
        np.concatenate([ours.load(i).actions for i in range(2)]), np.array(written["actions"], np.float32)
    )
    ep = ours.load(1)
    assert ep.images.shape == (4, 20, 20, 3) and int(ep.images[3, 0, 0, 0]) == 31
    np.testing.assert_array_equal(ep.proprio[:, 1], [0, 1, 2, 3])
    stats = ours.statistics()["foreign"]["action"]
    actions = np.array(written["actions"])
    np.testing.assert_allclose(stats["q01"][:6], np.quantile(actions, 0.01, axis=0)[:6], rtol=1e-6)
    assert stats["mask"] == [True] * 6 + [False]


def test_wrong_action_dimension_names_the_file_and_field(lerobot_python: Path, tmp_path: Path) -> None:
    run_in(lerobot_python, FOREIGN, str(tmp_path / "six"), "6", "1")
    with pytest.raises(DatasetError, match=r"six/meta/info\.json: features\.action has shape \[6\], expected \[7\]"):
        convert(ConvertConfig(src=tmp_path / "six", dst=tmp_path / "out", to="ours"))
    assert not (tmp_path / "out").exists()


def test_missing_image_feature_names_the_file(lerobot_python: Path, tmp_path: Path) -> None:
    run_in(lerobot_python, FOREIGN, str(tmp_path / "blind"), "7", "0")
    with pytest.raises(DatasetError, match=r"blind/meta/info\.json: features has no image or video feature"):
        convert(ConvertConfig(src=tmp_path / "blind", dst=tmp_path / "out", to="ours"))
    with pytest.raises(DatasetError, match=r"no feature 'observation\.images\.wrist'"):
        convert(
            ConvertConfig(src=tmp_path / "blind", dst=tmp_path / "out", to="ours", image_key="observation.images.wrist")
        )


def test_corrupt_parquet_names_the_dataset(converted: tuple[DemoDataset, Path, Path], tmp_path: Path) -> None:
    _, lr, _ = converted
    broken = tmp_path / "broken"
    shutil.copytree(lr, broken)
    data = broken / "data" / "chunk-000" / "file-000.parquet"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"broken: lerobot cannot open it as a LeRobotDataset"):
        convert(ConvertConfig(src=broken, dst=tmp_path / "out", to="ours"))


def test_sft_loader_reads_a_lerobot_folder(
    converted: tuple[DemoDataset, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, lr, _ = converted
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    direct, via_lerobot = DemoTransitions([src.root]), DemoTransitions([lr])
    rows = np.arange(len(direct))
    a_images, a_text, a_actions = direct.rows(rows)
    b_images, b_text, b_actions = via_lerobot.rows(rows)
    assert a_text == b_text
    np.testing.assert_array_equal(a_actions, b_actions)
    np.testing.assert_array_equal(np.stack(a_images), np.stack(b_images))
    assert via_lerobot.action_statistics("vla_razor_embedded") == direct.action_statistics("vla_razor_embedded")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    DemoTransitions([lr])  # the second reader reuses the cached conversion
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_cli_convert_and_its_errors(
    converted: tuple[DemoDataset, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _, _ = converted
    assert cli(["data", "convert", str(src.root), str(tmp_path / "lr"), "--fps", "5", "--repo_id", "me/demos"]) == 0
    assert "(ours) -> " in capsys.readouterr().out
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["fps"] == 5 and info["total_episodes"] == len(src)
    (tmp_path / "nothing").mkdir()
    assert cli(["data", "convert", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a dataset folder of a known format" in err
    assert cli(["data", "convert", str(src.root), str(tmp_path / "y"), "--to", "rlds"]) == 2
    assert "--to: expected one of" in capsys.readouterr().err


def test_collection_writes_a_lerobot_dataset(lerobot_python: Path, tmp_path: Path) -> None:
    pytest.importorskip("mani_skill")
    from data_collection.rt1_grid import main as collect

    out = tmp_path / "demos"
    assert (
        collect(
            [
                "--grid",
                "1x2",
                "--successes_per_point",
                "1",
                "--camera_size",
                "32",
                "--expert_style",
                "top_down",
                "--progress",
                "false",
                "--workers",
                "0",
                "--out",
                str(out),
                "--format",
                "lerobot",
            ]
        )
        == 0
    )
    back = DemoDataset(as_ours(out.with_name("demos_lerobot")))
    ours = DemoDataset(out)
    assert back.episodes == ours.episodes and [m.grid_xy for m in back.episodes] == [m.grid_xy for m in ours.episodes]
    for name in ("summary.json", "collection.json"):  # the grid, attempts and success rate come back too
        assert json.loads((back.root / name).read_text()) == json.loads((out / name).read_text())
    np.testing.assert_array_equal(back.load(1).images, ours.load(1).images)


def test_an_episode_unlike_the_first_names_its_file(lerobot_python: Path, tmp_path: Path) -> None:
    from data_collection.dataset import Episode, write_episode

    ds = make_ours(tmp_path / "mixed", episodes=2)
    meta, ep = ds.episodes[1], ds.load(1)
    write_episode(
        ds.root,
        Episode(
            images=np.zeros((meta.steps, 30, 30, 3), np.uint8),
            proprio=ep.proprio,
            actions=ep.actions,
            rewards=ep.rewards,
            meta=meta,
        ),
    )
    with pytest.raises(
        DatasetError,
        match=rf"{meta.file}: step 0 does not match the first episode's features "
        r"\(The feature 'observation\.images\.rgb' of shape '\(30, 30, 3\)'",
    ):
        convert(ConvertConfig(src=ds.root, dst=tmp_path / "lr", to="lerobot"))
    assert not (tmp_path / "lr").exists() and not list(tmp_path.glob(".lr.*"))  # nothing half-written is left
