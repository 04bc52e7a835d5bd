"""`vla-razor robot pipeline`, the main job, end to end at CI size: a 2x2-grid SFT demonstration collection,
one SFT epoch, one RL iteration, evaluation of base / SFT / RL, summary.json and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vla_razor.cli.main import main as cli
from vla_razor.analysis.runs import load_points
from vla_razor.robot import stages

from tests.robot.conftest import QUICK


def test_pipeline_end_to_end(
    tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main job as the quickstart runs it, on a part of the can's region (`region`): every pick-can episode it
    rolls out (RL's, the evaluations', the KL frames') and every demonstration it collects is placed there, and the
    SFT and RL stages share one set of simulator workers (started once)."""
    from envs.rollout import ExpertPolicy, ParallelRollout

    placed: list[list[float]] = []  # a spy: the real rollouts run, their pick-can placements are noted
    pools: set[int] = set()  # and which simulator pools the policies' rollouts ran on
    real_run = ParallelRollout.run

    def noting_run(self: ParallelRollout, actor: object, specs: list, *a: object, **k: object) -> list:
        placed.extend(s.options["obj_init_options"]["init_xy"] for s in specs if s.task == "pick_can")
        if not isinstance(actor, ExpertPolicy):  # not the demonstrations' collection
            pools.add(id(self))
        return real_run(self, actor, specs, *a, **k)

    monkeypatch.setattr(ParallelRollout, "run", noting_run)
    region = [[-0.15, -0.05], [-0.08, 0.08]]
    demos = tmp_path / "demos"
    args = [
        "robot",
        "pipeline",
        "--region",
        json.dumps(region),
        "--base",
        str(tiny_base),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "ci",
        "--collect.grid",
        "2x2",
        "--collect.successes_per_point",
        "1",
        "--collect.camera_size",
        "32",
        "--collect.workers",
        "0",
        "--collect.out",
        str(demos),
        "--sft.datasets",
        json.dumps([str(demos)]),
        "--sft.optim.batch_size",
        "8",
        "--rl.grid",
        "[2, 2]",
        "--rl.episodes_per_point",
        "1",
        "--rl.iterations",
        "1",
        "--rl.max_steps",
        "4",
        "--rl.optim.batch_size",
        "8",
    ]
    for key, value in QUICK.items():
        if not key.startswith("pretrain."):
            args += [f"--{key}", json.dumps(value) if not isinstance(value, (str, Path)) else str(value)]
    args += ["--eval.probe_episodes", "2"]  # a paired interval needs 2 episodes to estimate a spread from
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "collecting SFT demonstrations" in out and "report:" in out
    assert len(pools) == 1, "the evaluations and RL's rollouts share one set of simulator workers"
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("base", "sft:", "rl:"))]
    assert [line[0] for line in lines] == ["base", "sft:", "rl:"]

    experiment = tmp_path / "runs" / "ci"
    summary = json.loads((experiment / "summary.json").read_text())
    assert [r["method"] for r in summary["runs"]] == ["sft", "rl"]
    assert set(summary["base"]) == {"pick_can", "open_drawer", "close_drawer"}
    for run in summary["runs"]:
        assert {"pick_can", "open_drawer", "close_drawer", "forward_kl", "hparams"} <= set(run)
    assert summary["runs"][0]["forward_kl"] > 0  # SFT moved the policy
    report = experiment / "report"
    assert {
        "report.html",
        "report.md",
        "tradeoff.png",
        "forgetting_vs_forward_kl.png",
        "new_task_vs_forward_kl.png",
    } <= {p.name for p in report.iterdir()}
    assert "| base | - |" in (report / "report.md").read_text()
    assert (demos / "dataset_statistics.json").is_file()
    demo_xy = [e["grid_xy"] for e in json.loads((demos / "trajectory.json").read_text())["episodes"]]
    (x0, x1), (y0, y1) = region
    for xy in (placed, demo_xy):  # RL's grid (2 x 2: the region's corners), the evaluations, the KL frames; demos
        assert len(xy) >= 4 and all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in xy), xy
    assert {(x0, y0), (x1, y1)} <= {tuple(p) for p in placed} and {(x0, y0), (x1, y1)} <= {tuple(p) for p in demo_xy}
    assert json.loads((experiment / "base_eval.json").read_text())["settings"]["region"] == region
    # each run keeps its per-episode successes (and its base's): the report's rates carry 95 % intervals, not n/a
    for run in summary["runs"]:
        kept = json.loads((experiment / "runs" / run["run"] / "summary.json").read_text())
        assert np.mean(kept["new_task_examples"]) == kept["new_task"] == run["pick_can"]
        assert {p: np.mean(v) for p, v in kept["prior_examples"].items()} == kept["prior"]
        assert len(kept["base"]["prior_examples"]["open_drawer"]) == 2
        assert {"pick_can", "open_drawer", "close_drawer", "forgetting"} == set(run["intervals"])
    assert set(summary["base_intervals"]) == {"pick_can", "open_drawer", "close_drawer"}
    markdown = (report / "report.md").read_text()
    models = markdown.split("## Models", 1)[1].split("## What was pooled", 1)[0]
    assert "[n/a]" not in models and models.count(" [") >= 3 * 4 + 2 * 2  # every rate and forgetting
    assert "over its n episodes" in models and "Episodes per probe: close_drawer 2, open_drawer 2." in models

    # everything finished: a rerun redoes nothing, loads no base (a spy: the real loader runs when called) and
    # gives the same table
    bases_loaded: list[Path] = []
    real_load_base = stages.load_base
    monkeypatch.setattr(stages, "load_base", lambda cfg: bases_loaded.append(cfg.base) or real_load_base(cfg))
    assert cli(args) == 0
    again = capsys.readouterr().out
    assert "collecting" not in again
    assert [line.split() for line in again.splitlines() if line.strip().startswith(("base", "sft:", "rl:"))] == lines
    assert bases_loaded == []

    # another SFT setting: its run joins the summary and the report, the finished ones are not redone
    assert cli([*args, "--sft.optim.lr", "1e-3"]) == 0
    assert "collecting" not in capsys.readouterr().out
    assert bases_loaded == [tiny_base]  # once, for the new run
    summary = json.loads((experiment / "summary.json").read_text())
    assert [(r["method"], r["hparams"]["lr"]) for r in summary["runs"]] == [("sft", 3e-4), ("sft", 1e-3), ("rl", 1e-4)]
    assert (report / "report.md").read_text().count("| sft |") >= 2

    # the generic analysis on the experiment folder itself: its summary.json is the experiment's table, not a run
    assert summary["kind"] == "experiment"
    assert (summary["n_runs"], summary["n_points"]) == (3, len(load_points(experiment)[0])), "what the report pooled"
    capsys.readouterr()
    headline = tmp_path / "results" / "summary.json"
    assert cli(["report", str(experiment), "--out", str(tmp_path / "generic"), "--summary-out", str(headline)]) == 0
    assert "(3 runs," in capsys.readouterr().out
    assert json.loads(headline.read_text()) == summary, "the experiment's table, with what the report pooled"
    assert cli(["report", str(experiment / "runs"), "--out", str(tmp_path / "g2"), "--summary-out", str(headline)]) == 2
    assert "--summary-out: " in capsys.readouterr().err and not (tmp_path / "g2").exists(), "refused before the report"
    # a summary.json older than the last run (a sweep cut before its end writes none) is not passed on as the headline
    stale = {**summary, "runs": summary["runs"][:2]}
    (experiment / "summary.json").write_text(json.dumps(stale))
    assert cli(["report", str(experiment), "--out", str(tmp_path / "g3"), "--summary-out", str(headline)]) == 2
    assert "lists 2 finished runs, its runs folder holds 3" in capsys.readouterr().err
    assert json.loads(headline.read_text()) == summary, "the headline is not overwritten by the stale table"
    (experiment / "summary.json").write_text(json.dumps(summary))

    assert sorted(p.method for p in load_points(experiment)[0]) == sorted(r["method"] for r in summary["runs"])
    # forecast reads the same runs; their 3 final points are too few to hold runs out (a clear refusal, not a crash)
    assert cli(["forecast", str(experiment), "--out", str(tmp_path / "forecast.json"), "--folds", "2"]) == 2
    assert "points report forward_kl; a degree-2 fit needs at least 3" in capsys.readouterr().err

    # `robot report` rewrites the summary and the report from the run folders alone
    (experiment / "summary.json").unlink()
    (report / "report.md").unlink()
    report_args = [
        "robot",
        "report",
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "ci",
        "--base",
        str(tiny_base),
    ]
    assert cli(report_args) == 0
    assert "report:" in capsys.readouterr().out
    again = json.loads((experiment / "summary.json").read_text())
    assert again["runs"] == summary["runs"] and again["base"] == summary["base"]
    assert (report / "report.md").read_text().count("| sft |") >= 2
    assert cli(["robot", "report", "--runs_dir", str(tmp_path / "nothing"), "--experiment", "ci"]) == 2
    assert "no finished robot run (sft, rl)" in capsys.readouterr().err

    # another base in the same experiment folder is refused (its runs, frames and base results are the old base's)
    import shutil

    other = tmp_path / "other_base"
    shutil.copytree(tiny_base, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "note": "remade"}))
    capsys.readouterr()
    assert (
        cli(
            [
                "robot",
                "eval",
                "--runs_dir",
                str(tmp_path / "runs"),
                "--experiment",
                "ci",
                "--base",
                str(other),
                *[
                    a
                    for k, v in QUICK.items()
                    if not k.startswith("pretrain.")
                    for a in (f"--{k}", json.dumps(v) if not isinstance(v, (str, Path)) else str(v))
                ],
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "is not the base the experiment" in err and "use another --experiment" in err


def test_robot_collect_collects_its_collect_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`robot collect` writes collect.out even when sft.datasets lists another, finished dataset: it used to see
    that one finished, collect nothing and exit 0."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = [
        "robot",
        "collect",
        "--collect.grid",
        "1x1",
        "--collect.successes_per_point",
        "1",
        "--collect.camera_size",
        "32",
        "--camera_size",
        "32",
        "--collect.workers",
        "0",
        "--collect.progress",
        "false",
        "--wandb",
        "off",
    ]
    assert cli([*args, "--collect.out", str(first)]) == 0
    assert (first / "dataset_statistics.json").is_file()
    assert cli([*args, "--collect.out", str(second), "--sft.datasets", json.dumps([str(first)])]) == 0
    assert (second / "dataset_statistics.json").is_file(), "robot collect did not collect collect.out"
    assert f"demonstrations: {second}" in capsys.readouterr().out


def test_eval_at_the_rl_grid_points_with_held_out_placements(
    tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """eval.pick_can_placements grid: pick-can at rl.grid's points in turn (the new-task score), and
    eval.heldout_episodes uniform placements beside it as pick_can_heldout; held-out without grid is refused."""
    from envs.grids import grid_points
    from vla_razor.robot.evaluate import new_task_specs

    points = grid_points("pick_can", "embedded", (2, 2))
    specs = new_task_specs("pick_can", 6, seed=3, points=points)
    placed = [s.options["obj_init_options"]["init_xy"] for s in specs]
    np.testing.assert_allclose(placed, np.resize(points, (6, 2)))
    assert len({s.seed for s in specs}) == 6
    uniform = [s.options["obj_init_options"]["init_xy"] for s in new_task_specs("pick_can", 6, seed=3)]
    assert not np.allclose(placed, uniform)

    quick = [
        a
        for k, v in QUICK.items()
        if not k.startswith("pretrain.")
        for a in (f"--{k}", json.dumps(v) if not isinstance(v, (str, Path)) else str(v))
    ]
    args = [
        "robot",
        "eval",
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "grid",
        "--base",
        str(tiny_base),
        *quick,
        "--rl.grid",
        "[2, 2]",
        "--eval.pick_can_placements",
        "grid",
        "--eval.heldout_episodes",
        "2",
        "--out",
        str(tmp_path / "eval.json"),
    ]
    assert cli(args) == 0
    assert "held out" in capsys.readouterr().out
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert 0 <= summary["new_task_heldout"] <= 1 and "new_task_heldout" in summary["base"]
    base_eval = json.loads((tmp_path / "runs" / "grid" / "base_eval.json").read_text())
    assert base_eval["settings"]["pick_can_grid"] == [2, 2] and "pick_can_heldout" in base_eval["results"]

    uniform = [
        *args[: args.index("--eval.pick_can_placements")],
        "--eval.heldout_episodes",
        "2",
        "--experiment",
        "uniform",
    ]
    assert cli(uniform) == 2  # held-out placements beside uniform ones mean nothing
    assert "eval.heldout_episodes" in capsys.readouterr().err


def test_pipeline_on_another_task_from_config_alone(tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """`task: place_can` (and pick_can among the probes) takes the whole job to the new task: the collection
    demonstrates it, SFT and RL train on it, the evaluation and the summary report it under its id."""
    import yaml

    from data_collection.dataset import DemoDataset

    demos = tmp_path / "demos"
    config = tmp_path / "place_can.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "place_can",
                "probes": ["pick_can", "open_drawer"],
                "base": str(tiny_base),
                "runs_dir": str(tmp_path / "runs"),
                "experiment": "place",
                "collect": {
                    "grid": "2x1",
                    "successes_per_point": 1,
                    "camera_size": 32,
                    "workers": 0,
                    "out": str(demos),
                },
                "sft": {"optim": {"batch_size": 8, "max_steps": 2}, "allow_clipped_actions": True},
                "rl": {"grid": [2, 1], "episodes_per_point": 1, "iterations": 1, "max_steps": 3},
                **{k: v for k, v in QUICK.items() if "." not in k},
                "eval": {k.split(".", 1)[1]: v for k, v in QUICK.items() if k.startswith("eval.")},
            }
        )
    )
    assert cli(["robot", "pipeline", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "collecting SFT demonstrations of place_can" in out
    assert DemoDataset(demos).tasks == ["place_can"]
    summary = json.loads((tmp_path / "runs" / "place" / "summary.json").read_text())
    assert [r["method"] for r in summary["runs"]] == ["sft", "rl"]
    assert set(summary["base"]) == {"place_can", "pick_can", "open_drawer"}
    for run in summary["runs"]:
        assert {"place_can", "pick_can", "open_drawer", "forward_kl"} <= set(run)
    base_eval = json.loads((tmp_path / "runs" / "place" / "base_eval.json").read_text())
    assert set(base_eval["results"]) >= {"place_can", "pick_can", "open_drawer"}
    assert base_eval["settings"]["tasks"] == {"task": "place_can", "probes": ["pick_can", "open_drawer"]}
