from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_razor.analysis.runs import by_method, load_points, load_progress


def test_load_points_reads_finished_runs_and_counts_unfinished(planted_runs: Path) -> None:
    points, stats = load_points(planted_runs)
    assert stats.finished_runs == 6
    assert stats.unfinished_runs == 1
    # 3 mid-training points per run (the step-400 line repeats the summary and is skipped) + 1 final.
    assert stats.points == len(points) == 6 * 4
    assert sum(p.final for p in points) == 6
    assert not any("crashed" in p.run for p in points)
    first = points[0]
    assert first.run == "exp/rl_lr0.0001"
    assert first.domain == "toy" and first.method == "rl" and first.hparams == {"lr": 1e-4}
    assert [p.step for p in points[:4]] == [100, 200, 300, 400]
    assert [p.final for p in points[:4]] == [False, False, False, True]
    assert first.base_new_task == pytest.approx(0.2)
    assert first.base_prior_mean == pytest.approx(0.75)


def test_forgetting_is_computed_from_base_when_missing(planted_runs: Path, synth) -> None:
    points, _ = load_points(planted_runs)
    step_200 = [p for p in points if p.step == 200]  # written without "forgetting"
    assert step_200
    for point in step_200:
        kl = point.predictors["forward_kl"]
        assert point.forgetting == pytest.approx(synth.planted_forgetting(kl), abs=1e-12)
        assert point.prior_mean == pytest.approx(0.75 - synth.planted_forgetting(kl), abs=1e-12)


def test_without_mid_training_only_final_points(planted_runs: Path) -> None:
    points, stats = load_points(planted_runs, include_mid_training=False)
    assert len(points) == stats.points == 6
    assert all(p.final for p in points)


def test_by_method_groups_sorted(planted_runs: Path) -> None:
    points, _ = load_points(planted_runs)
    groups = by_method(points)
    assert list(groups) == ["rl", "sft"]
    assert len(groups["rl"]) == len(groups["sft"]) == 12


def test_mid_training_lines_inherit_run_fields(tmp_path: Path, synth) -> None:
    summary = synth.make_record("grpo", 50, 0.6, 0.2, 0.2)
    bare_line = {
        "step": 10,
        "new_task": 0.3,
        "prior": {"probe_a": 0.8, "probe_b": 0.6},
        "predictors": {"forward_kl": 0.01, "tv": None},
    }
    synth.write_run(tmp_path / "r", summary, [bare_line])
    points, stats = load_points(tmp_path)
    assert stats.finished_runs == 1 and stats.unfinished_runs == 0
    mid = points[0]
    assert mid.method == "grpo" and mid.domain == "toy" and not mid.final
    assert mid.forgetting == pytest.approx(((0.8 - 0.8) + (0.7 - 0.6)) / 2)
    assert mid.predictors == {"forward_kl": 0.01}  # null means "not measured"
    assert mid.base_prior_mean == pytest.approx(sum(synth.base["prior"].values()) / 2)


def test_experiment_folder_with_config_is_not_a_run(tmp_path: Path, synth) -> None:
    """A sweep config above the runs and a config inside a run's checkpoints are not runs."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text("sweep: true\n")
    done = synth.write_run(tmp_path / "exp" / "done", synth.make_record("sft", 5, 0.5, 0.1, 0.1))
    (done / "checkpoints").mkdir()
    (done / "checkpoints" / "config.yaml").write_text("x: 1\n")
    started = tmp_path / "exp" / "just_started"
    started.mkdir()
    (started / "config.yaml").write_text("lr: 1\n")
    _, stats = load_points(tmp_path)
    assert (stats.finished_runs, stats.unfinished_runs) == (1, 1)


def test_malformed_summary_names_file_and_line(tmp_path: Path, synth) -> None:
    run = synth.write_run(tmp_path / "bad", None)
    (run / "summary.json").write_text('{\n  "method": "sft",\n  "new_task": 0.5,,\n}')
    with pytest.raises(ValueError, match=r"bad/summary\.json:3: malformed JSON"):
        load_points(tmp_path)


def test_malformed_points_line_names_file_and_line(tmp_path: Path, synth) -> None:
    run = synth.write_run(tmp_path / "r", synth.make_record("sft", 9, 0.5, 0.1, 0.1))
    good = json.dumps(synth.make_record("sft", 1, 0.3, 0.05, 0.05))
    (run / "points.jsonl").write_text(good + "\n\n" + '{"step": 2, "new_task": 0.4' + "\n")
    with pytest.raises(ValueError, match=r"r/points\.jsonl:3: malformed JSON"):
        load_points(tmp_path)
    # Unfinished runs are never read, so a broken points.jsonl there is harmless.
    (run / "summary.json").unlink()
    assert load_points(tmp_path)[1].unfinished_runs == 1


def test_missing_new_task_is_a_clear_error(tmp_path: Path, synth) -> None:
    record = synth.make_record("sft", 9, 0.5, 0.1, 0.1)
    del record["new_task"]
    synth.write_run(tmp_path / "r", record)
    with pytest.raises(ValueError, match=r"summary\.json: missing 'new_task'"):
        load_points(tmp_path)


def test_report_folders_inside_runs_dir_are_not_runs(tmp_path):
    import json

    from vla_razor.analysis.runs import load_points

    run = tmp_path / "exp" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps(
            {
                "domain": "toy",
                "method": "sft",
                "hparams": {},
                "seed": 0,
                "step": 1,
                "new_task": 0.5,
                "prior": {"p": 0.5},
                "forgetting": 0.1,
                "predictors": {"forward_kl": 0.2},
            }
        )
    )
    report = tmp_path / "exp" / "report"
    report.mkdir()
    (report / "report.json").write_text("{}")
    (report / "summary.json").write_text(json.dumps({"r2": {}, "runs": 1}))
    points, stats = load_points(tmp_path / "exp")
    assert stats.finished_runs == 1 and len(points) == 1


def test_per_episode_results_load_and_older_summaries_without_them_too(tmp_path: Path, synth) -> None:
    """A robot summary's per-episode lists (new task, probes, the base's) and its episode_set are read; a summary
    written before they were kept loads with empty lists; a list that is not one is refused, naming the field."""
    record = synth.make_record("rl", 10, 0.5, 0.1, 0.1)
    synth.write_run(tmp_path / "old", record)
    newer = {
        **record,
        "new_task_examples": [1, 0],
        "prior_examples": {"probe_a": [1.0, 1.0]},
        "episode_set": "abc",
        "base": {**record["base"], "new_task_examples": [0, 0], "prior_examples": {"probe_a": [1, 0]}},
    }
    synth.write_run(tmp_path / "new", newer)
    new, old = load_points(tmp_path)[0]  # sorted by run
    assert (new.run, old.run) == ("new", "old")
    assert old.new_task_examples == old.base_new_task_examples == [] and old.prior_examples == {}
    assert old.episode_set is None
    assert new.new_task_examples == [1.0, 0.0] and new.base_new_task_examples == [0.0, 0.0]
    assert new.base_prior_examples == {"probe_a": [1.0, 0.0]} and new.episode_set == "abc"
    synth.write_run(tmp_path / "new", {**newer, "new_task_examples": {"pick_can": [1]}})
    with pytest.raises(ValueError, match="'new_task_examples' must be a list"):
        load_points(tmp_path)


def test_gzipped_logs_of_a_committed_experiment_read_as_the_plain_ones(planted_runs: Path, tmp_path: Path) -> None:
    """A committed experiment keeps its large logs gzipped (scripts/device/keep_state.sh): the report and the learning
    curve read points.jsonl.gz and metrics.jsonl.gz where the plain file is not there, so no mid-training point is
    lost from the fits."""
    import gzip
    import shutil

    from vla_razor.analysis.learning_curve import read_curve

    zipped = tmp_path / "zipped"
    shutil.copytree(planted_runs, zipped)
    for log in [*zipped.rglob("points.jsonl"), *zipped.rglob("metrics.jsonl")]:
        log.with_name(log.name + ".gz").write_bytes(gzip.compress(log.read_bytes()))
        log.unlink()
    plain, zipped_points = load_points(planted_runs), load_points(zipped)
    assert zipped_points[1].points == plain[1].points == 24
    assert [(p.run, p.step, p.forgetting) for p in zipped_points[0]] == [
        (p.run, p.step, p.forgetting) for p in plain[0]
    ]
    run = next(p for p in zipped.rglob("summary.json")).parent
    assert read_curve(run)["train"] == read_curve(planted_runs / run.relative_to(zipped))["train"] != []


def test_load_progress_gives_each_unfinished_runs_latest_point_and_load_points_none(planted_runs: Path, synth) -> None:
    """A run cut by a lost machine keeps its mid-training evaluations: the report shows the latest, apart."""
    exp = planted_runs / "exp"
    steps = (12, 30, 6)  # written out of order: the latest is the highest step, not the last line
    synth.write_run(exp / "rl_cut", None, [synth.make_record("rl", s, 0.3 + s / 100, s / 100, 0.0) for s in steps])
    synth.write_run(exp / "rl_started", None)  # no evaluation yet: no point
    live = synth.write_run(exp / "rl_live", None, [synth.make_record("rl", 6, 0.4, 0.1, 0.0)])
    with (live / "points.jsonl").open("a") as f:  # the trainer mid-append: a torn line, not yet a point
        f.write(json.dumps(synth.make_record("rl", 12, 0.5, 0.2, 0.0))[:40])
    progress = load_progress(planted_runs)
    assert [(p.run, p.step, p.final) for p in progress] == [
        ("exp/rl_cut", 30, False),
        ("exp/rl_live", 6, False),
        ("exp/sft_crashed", 100, False),
    ]
    assert progress[0].new_task == pytest.approx(0.6) and progress[0].predictors["forward_kl"] == pytest.approx(0.3)
    points, stats = load_points(planted_runs)
    assert stats.unfinished_runs == 4 and not any(p.run in ("exp/rl_cut", "exp/sft_crashed") for p in points)
