"""data_collection/collect.py through its command rt1_grid.py, + dataset.py: a real 2x2-grid scripted collection on the embedded world, the
on-disk format (ManiSkill .h5/.json, statistics), kill -9 and resume, and the errors for bad folders and files.

Small camera (32 px) and few episodes keep it to seconds per collection on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mani_skill")
h5py = pytest.importorskip("h5py")

from data_collection.dataset import (  # noqa: E402
    TRAJECTORY_H5,
    DatasetError,
    DemoDataset,
    array_statistics,
)
from data_collection.collect import COLLECTION_JSON, attempt_seed  # noqa: E402
from data_collection.rt1_grid import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "data_collection" / "rt1_grid.py"


def test_the_library_does_not_import_its_command():
    """vla_razor.robot uses the collector as a library: importing it must not run (or need) the script."""
    code = (
        "import sys, data_collection.collect, vla_razor.robot.config; print('data_collection.rt1_grid' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


BASE_ARGS = [
    "--grid",
    "2x2",
    "--successes_per_point",
    "2",
    "--camera_size",
    "32",
    "--expert_style",
    "top_down",
    "--progress",
    "false",
]


def collect(out: Path, *extra: str, workers: int = 0) -> int:
    return main([*BASE_ARGS, "--workers", str(workers), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2x2 x 2 collection, in this process."""
    out = tmp_path_factory.mktemp("collect") / "ds"
    assert collect(out) == 0
    return out


def test_collection_stores_successes_in_maniskill_format(dataset_dir: Path) -> None:
    ds = DemoDataset(dataset_dir)
    assert len(ds) == 8
    assert sorted((m.grid_point, m.attempt) for m in ds.episodes) == [(p, a) for p in range(4) for a in range(2)]
    for i, m in enumerate(ds.episodes):
        ep = ds.load(i)
        assert m.success and m.task == "pick_can" and ep.instruction == "pick coke can"
        assert m.seed == attempt_seed(0, m.grid_point, m.attempt)
        assert ep.images.shape == (m.steps, 32, 32, 3) and ep.images.dtype == np.uint8
        assert ep.actions.shape == (m.steps, 7) and ep.proprio.shape == (m.steps, 16)
        assert ep.rewards[-1] == 1.0  # the embedded tasks end on success
        assert ep.images.std() > 0  # real frames, not zeros
        assert m.reset_kwargs["options"]["obj_init_options"]["init_xy"] == m.grid_xy
    # the episodes of one point start from the same can placement, those of different points do not
    xy = {m.grid_point: tuple(m.grid_xy) for m in ds.episodes}
    assert len(set(xy.values())) == 4

    # ManiSkill's layout: trajectory.json episodes + trajectory.h5 with traj_<id> (links into episode files)
    meta = json.loads((dataset_dir / "trajectory.json").read_text())
    assert {"env_info", "episodes", "source_type"} <= set(meta)
    assert meta["env_info"]["env_id"] == "RazorPickCan-v1"
    with h5py.File(dataset_dir / TRAJECTORY_H5, "r") as f:
        for e in meta["episodes"]:
            g = f[f"traj_{e['episode_id']}"]
            assert g["actions"].shape == (e["elapsed_steps"], 7)
            assert g["obs/rgb"].shape[0] == e["elapsed_steps"]
            assert bool(g["success"][-1]) and bool(g["terminated"][-1])
            np.testing.assert_array_equal(g["actions"][()], ds.load(e["episode_id"]).actions)

    summary = json.loads((dataset_dir / "summary.json").read_text())
    assert set(summary) == {"episodes", "successes_stored", "attempts", "success_rate", "seconds", "workers"}
    assert summary["episodes"] == summary["successes_stored"] == 8 and summary["attempts"] >= 8
    assert summary["success_rate"] == pytest.approx(8 / summary["attempts"])


def test_action_statistics_match_the_stored_actions(dataset_dir: Path) -> None:
    ds = DemoDataset(dataset_dir)
    stats = ds.statistics()["vla_razor_embedded"]
    actions = np.concatenate([ds.load(i, images=False).actions for i in range(len(ds))])
    assert stats["num_transitions"] == len(actions) == ds.num_transitions
    assert stats["num_trajectories"] == 8
    a = stats["action"]
    np.testing.assert_allclose(a["q01"][:3], np.quantile(actions, 0.01, axis=0)[:3])
    np.testing.assert_allclose(a["q99"][:3], np.quantile(actions, 0.99, axis=0)[:3])
    assert a["mask"] == [True] * 6 + [False]
    assert all(hi > lo for hi, lo, m in zip(a["q99"], a["q01"], a["mask"]) if m)  # usable by the tokenizer
    assert a["min"][6] == -1.0 and a["max"][6] == 1.0  # the gripper both opens and closes


def test_statistics_of_known_values() -> None:
    values = np.arange(101, dtype=np.float64)[:, None] * [1.0, -2.0]
    s = array_statistics(values)
    assert s["q01"] == pytest.approx([1.0, -198.0]) and s["q99"] == pytest.approx([99.0, -2.0])
    assert s["mean"] == pytest.approx([50.0, -100.0]) and s["mask"] == [True, True]


def test_rerun_of_a_finished_collection_does_nothing(dataset_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ds"
    shutil.copytree(dataset_dir, copy)
    before = json.loads((copy / COLLECTION_JSON).read_text())["attempts"]
    assert collect(copy) == 0
    assert json.loads((copy / COLLECTION_JSON).read_text())["attempts"] == before


def test_episode_written_but_not_recorded_is_adopted(dataset_dir: Path, tmp_path: Path) -> None:
    """kill -9 between the episode file and collection.json: the file is kept, once; temporaries go."""
    copy = tmp_path / "ds"
    shutil.copytree(dataset_dir, copy)
    state = json.loads((copy / COLLECTION_JSON).read_text())
    dropped = state["attempts"].pop()
    (copy / COLLECTION_JSON).write_text(json.dumps(state))
    stray = copy / "episodes" / ".p0000_a0005.h5.abc.tmp"
    stray.write_bytes(b"half an episode")
    assert collect(copy) == 0
    after = json.loads((copy / COLLECTION_JSON).read_text())["attempts"]
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, state["attempts"] + [dropped]))
    assert not stray.exists()
    assert len(DemoDataset(copy)) == 8


def test_kill_9_then_resume_loses_and_duplicates_nothing(
    dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "ds"
    cmd = [sys.executable, str(SCRIPT), *BASE_ARGS, "--workers", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    recorded = 0  # episode files written: collection.json follows every SAVE_EVERY_S, so resume adopts the rest
    while time.time() < deadline and proc.poll() is None:
        recorded = len(list((out / "episodes").glob("p*.h5"))) if (out / "episodes").is_dir() else 0
        if recorded >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"collection ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    # a second collection into the folder while the first is writing it is refused, naming the writer
    assert collect(out) == 2
    assert f"another process is writing this run (pid {proc.pid} on " in capsys.readouterr().err
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its simulator worker
    proc.wait()
    assert 3 <= recorded < 8

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"taking over from pid {proc.pid}" in done.stdout, "the killed writer's lock is taken over, saying so"
    assert (out / ".lock").read_text() == "", "a finished collection leaves no holder behind"
    resumed, reference = DemoDataset(out), DemoDataset(dataset_dir)
    keys = [(m.grid_point, m.attempt) for m in resumed.episodes]
    assert len(keys) == len(set(keys)) == 8
    assert keys == [(m.grid_point, m.attempt) for m in reference.episodes]
    for i in range(8):  # the same episodes as the uninterrupted, in-process collection, bit for bit
        np.testing.assert_array_equal(resumed.load(i).actions, reference.load(i).actions)
        np.testing.assert_array_equal(resumed.load(i).images, reference.load(i).images)
    assert not list((out / "episodes").glob(".*.tmp"))


def test_points_that_never_succeed_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # a 1x1 "grid" far out of the panda's reach: the expert fails every attempt
    code = main(
        [
            "--grid",
            "1x1",
            "--region",
            "[[0.45, 0.45], [0.6, 0.6]]",
            "--successes_per_point",
            "1",
            "--max_attempts_per_point",
            "1",
            "--max_steps",
            "20",
            "--camera_size",
            "32",
            "--workers",
            "0",
            "--progress",
            "false",
            "--out",
            str(tmp_path / "ds"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "points that never succeeded (1)" in out and "0 of 1 attempts" in out
    summary = json.loads((tmp_path / "ds" / "summary.json").read_text())
    assert summary["episodes"] == 0 and summary["attempts"] == 1 and summary["success_rate"] == 0.0

    # keep_failures: the failed attempt is stored, and the summary counts it apart from the successes
    args = ["--grid", "1x1", "--region", "[[0.45, 0.45], [0.6, 0.6]]", "--successes_per_point", "1"]
    args += ["--max_attempts_per_point", "1", "--max_steps", "20", "--camera_size", "32", "--workers", "0"]
    assert main([*args, "--progress", "false", "--keep_failures", "true", "--out", str(tmp_path / "kept")]) == 0
    assert "episodes stored  1 (0 successes)" in capsys.readouterr().out
    kept = json.loads((tmp_path / "kept" / "summary.json").read_text())
    assert kept["episodes"] == 1 and kept["successes_stored"] == 0 and len(DemoDataset(tmp_path / "kept")) == 1


def test_bad_files_and_settings_are_named(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "ds"
    shutil.copytree(dataset_dir, copy)
    episode = sorted((copy / "episodes").glob("*.h5"))[0]

    # changed settings on an existing folder
    assert collect(copy, "--grid", "3x3") == 2
    assert "grid: '2x2' -> '3x3'" in capsys.readouterr().err

    # a truncated episode file: named by the collector and by the reader
    data = episode.read_bytes()
    episode.write_bytes(data[: len(data) // 2])
    assert collect(copy) == 2
    assert episode.name in capsys.readouterr().err
    with pytest.raises(DatasetError, match=episode.name):
        ds = DemoDataset(copy)
        ds.load(next(i for i, m in enumerate(ds.episodes) if m.file.endswith(episode.name)))
    episode.write_bytes(data)

    # a foreign file among the episodes
    (copy / "episodes" / "notes.txt").write_text("hello")
    assert collect(copy) == 2
    assert "notes.txt" in capsys.readouterr().err
    (copy / "episodes" / "notes.txt").unlink()

    # a foreign collection.json / index
    (copy / COLLECTION_JSON).write_text("{not json")
    assert collect(copy) == 2
    assert COLLECTION_JSON in capsys.readouterr().err
    (copy / "trajectory.json").write_text(json.dumps({"episodes": []}))
    with pytest.raises(DatasetError, match="trajectory.json"):
        DemoDataset(copy)
    with pytest.raises(DatasetError, match="no such file"):
        DemoDataset(tmp_path / "nowhere")


def test_bad_options_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--grid", "2by2", "--out", str(tmp_path / "a"), "--progress", "false"]) == 2
    assert "grid: expected NxM" in capsys.readouterr().err
    assert main(["--grid", "2x2", "--points", "[7]", "--out", str(tmp_path / "b"), "--progress", "false"]) == 2
    assert "points: [7]" in capsys.readouterr().err
    assert main(["--demonstrator", "rt1", "--out", str(tmp_path / "c"), "--progress", "false"]) == 2
    assert "rt1.saved_model" in capsys.readouterr().err
    assert main(["--backend", "simpler", "--out", str(tmp_path / "e"), "--progress", "false"]) == 2
    assert "demonstrator: the scripted experts" in capsys.readouterr().err and not (tmp_path / "e").exists()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "something.txt").write_text("x")
    assert main(["--grid", "1x1", "--out", str(tmp_path / "d"), "--progress", "false"]) == 2
    assert "not a collection folder" in capsys.readouterr().err


def test_placement_jitter_spreads_a_points_demonstrations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The scripted expert repeats itself at one placement; with placement_jitter each attempt at a grid point
    starts from its own nearby placement (seeded, inside the region), and the dataset records it."""
    out = tmp_path / "jittered"
    args = [
        "--grid",
        "1x2",
        "--successes_per_point",
        "2",
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
    ]
    assert main([*args, "--placement_jitter", "0.02"]) == 0
    ds = DemoDataset(out)
    placed = {(m.grid_point, m.attempt): m.reset_kwargs["options"]["obj_init_options"]["init_xy"] for m in ds.episodes}
    assert len(set(map(tuple, placed.values()))) == len(placed) == 4  # every demonstration its own placement
    for m in ds.episodes:
        offset = np.subtract(placed[(m.grid_point, m.attempt)], m.grid_xy)
        assert np.abs(offset).max() <= 0.02 + 1e-9 and np.abs(offset).max() > 0
    first = ds.load(0).images
    assert not np.array_equal(first, ds.load(1).images)  # the same point, different frames
    # the jitter is part of what the data is: resuming with another value is refused, naming it
    assert main([*args, "--placement_jitter", "0.01"]) == 2
    assert "placement_jitter" in capsys.readouterr().err
    assert main([*args, "--placement_jitter", "-1"]) == 2
    assert "--placement_jitter: expected a number >= 0" in capsys.readouterr().err
