"""`vla-razor llm` end to end on a tiny random Llama: runs, summaries in the shared contract, the report, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.llm.conftest import llm_flags as _flags
from vla_razor.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_trains_each_method_and_writes_summary_and_report(tiny_llm, tmp_path, capsys):
    flags = _flags(tiny_llm, tmp_path, "tiny")
    assert main(["llm", "pipeline", *flags, "--methods", "[sft, grpo, one_zero, simpo]"]) == 0
    out = capsys.readouterr().out
    experiment = tmp_path / "tiny"
    summary = json.loads((experiment / "summary.json").read_text())
    assert [r["method"] for r in summary["runs"]] == ["sft", "grpo", "one_zero", "simpo"]
    assert set(summary["base"]["probes"]) == {"winogrande", "humaneval"}
    for row in summary["runs"]:
        assert 0.0 <= row["new_task"] <= 1.0 and row["forward_kl"] >= 0.0
    sft = next(r for r in summary["runs"] if r["method"] == "sft")
    assert sft["forward_kl"] > 0.01  # SFT at lr 3e-3 moves the tiny model off the base
    run = experiment / "runs" / sft["run"]
    run_summary = json.loads((run / "summary.json").read_text())
    assert run_summary["domain"] == "llm" and run_summary["step"] == 4
    assert set(run_summary["predictors"]) == {
        "forward_kl",
        "forward_kl_per_token",
        "reverse_kl_on_base_responses",
        "tv_per_token",
        "weight_l1",
    }
    assert run_summary["predictors"]["weight_l1"] > 0
    assert (run / "model" / "config.json").is_file() and not (
        run / "checkpoints" / "training_state.safetensors"
    ).exists()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["name"] == "loss"] == [0, 1, 2, 3]
    grpo = [
        json.loads(line)
        for line in (experiment / "runs" / "grpo_lr0.003_mu2_g4" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {m["name"] for m in grpo} >= {"reward", "samples_per_s", "completion_tokens", "loss"}
    lrs = [m["value"] for m in grpo if m["name"] == "lr"]  # mu = 2: each update of a round has its own warmup lr
    assert lrs == pytest.approx([0.003 * k / 4 for k in (1, 2, 3, 4)])
    assert (experiment / "kl_responses.json").is_file() and (experiment / "base_eval.json").is_file()
    assert (experiment / "simpo_negatives.json").is_file()
    report = json.loads((experiment / "report" / "report.json").read_text())
    assert set(report["methods"]) == {"sft", "grpo", "one_zero", "simpo"}
    assert (experiment / "report" / "report.html").is_file() and (experiment / "report" / "tradeoff.png").is_file()
    assert "forward_kl" in out and "report:" in out
    # the generic analysis on the experiment folder itself: its summary.json is the experiment's table, not a run
    assert summary["kind"] == "experiment"
    assert main(["report", str(experiment), "--out", str(tmp_path / "generic")]) == 0
    assert "(4 runs," in capsys.readouterr().out
    from vla_razor.analysis.runs import load_points

    assert (summary["n_runs"], summary["n_points"]) == (4, len(load_points(experiment)[0])), "what the report pooled"
    assert sorted(p.method for p in load_points(experiment)[0]) == sorted(r["method"] for r in summary["runs"])
    # forecast reads the same runs; their 4 final points are too few to hold runs out (a clear refusal, not a crash)
    assert main(["forecast", str(experiment), "--out", str(tmp_path / "forecast.json"), "--folds", "2"]) == 2
    assert "points report forward_kl; a degree-2 fit needs at least 3" in capsys.readouterr().err
    # holding one run out at a time leaves 3 points per fit: the forecast of the experiment folder is made
    assert main(["forecast", str(experiment), "--out", str(tmp_path / "forecast.json"), "--folds", "4"]) == 0
    forecast = json.loads((tmp_path / "forecast.json").read_text())
    assert forecast["runs"] == 4 and forecast["folds"] == 4 and forecast["points"] == 4
    assert math.isfinite(forecast["holdout_mae"]) and forecast["holdout_mae"] >= 0.0

    assert main(["llm", "train", *flags, "--method", "sft"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["llm", "eval", *flags, "--model-dir", str(run / "model"), "--out", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())["model"]
    assert again["forward_kl"] == pytest.approx(sft["forward_kl"], rel=1e-4)
    assert "paired 95 % [" in capsys.readouterr().out


def test_runs_keep_per_example_probe_scores_and_intervals(tiny_llm, tmp_path, capsys):
    """A run's summary keeps each probe's per-example scores (its own and the base's), the experiment's summary and
    report give 95 % intervals from them, `llm probe-size` sizes the probes from the base's, and a run written
    before per-example scores were kept still loads (its intervals n/a)."""
    flags = _flags(tiny_llm, tmp_path, "tiny") + ["--eval.probe_sizes", "{winogrande: 3}"]
    assert main(["llm", "pipeline", *flags, "--methods", "[sft]"]) == 0
    experiment = tmp_path / "tiny"
    run = next((experiment / "runs").glob("sft_*"))
    summary = json.loads((run / "summary.json").read_text())
    assert {p: len(v) for p, v in summary["prior_examples"].items()} == {"winogrande": 3, "humaneval": 2}
    assert {p: len(v) for p, v in summary["base"]["prior_examples"].items()} == {"winogrande": 3, "humaneval": 2}
    assert summary["chat_template"] == {"winogrande": False, "humaneval": False}
    assert summary["intervals"]["prior"]["winogrande"]["method"] == "wilson"
    assert summary["intervals"]["forgetting"]["mean"]["n"] == 5
    # the new task's per-example rewards too (eval order), the base's beside them: its accuracy gets an interval
    rewards, base_rewards = summary["new_task_examples"], summary["base"]["new_task_examples"]
    assert len(rewards) == len(base_rewards) > 0 and set(rewards) <= {0.0, 1.0}
    assert sum(rewards) / len(rewards) == pytest.approx(summary["new_task"])
    assert sum(base_rewards) / len(base_rewards) == pytest.approx(summary["base"]["new_task"])
    assert summary["intervals"]["new_task"]["n"] == len(rewards) and "base_new_task" in summary["intervals"]
    base_eval = json.loads((experiment / "base_eval.json").read_text())["results"]
    assert base_eval["probe_examples"] == summary["base"]["prior_examples"]
    table = json.loads((experiment / "summary.json").read_text())
    row = table["runs"][0]
    assert set(row["probe_intervals"]) == {"winogrande", "humaneval"} and "mean" in row["forgetting_intervals"]
    assert set(table["base"]["probe_intervals"]) == {"winogrande", "humaneval"}
    assert row["new_task_interval"]["n"] == len(rewards) and table["base"]["new_task_interval"]["n"] == len(rewards)
    report = (experiment / "report" / "report.md").read_text()
    assert "Examples per probe: humaneval 2, winogrande 3." in report and "[n/a]" not in report
    capsys.readouterr()

    assert main(["llm", "probe-size", *flags, "--churn", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "redraws its score on 50% of the examples" in out and "winogrande" in out
    assert main(["llm", "probe-size", *flags, "--churn", "2"]) == 2
    assert "--churn" in capsys.readouterr().err

    for key in ("prior_examples", "chat_template", "intervals", "new_task_examples"):  # as written before they
        summary.pop(key)  # were kept
    summary["base"].pop("prior_examples")
    summary["base"].pop("new_task_examples")
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["llm", "report", *flags]) == 0
    row = json.loads((experiment / "summary.json").read_text())["runs"][0]
    assert row["probe_intervals"] == {} and row["forgetting_intervals"] == {} and row["new_task_interval"] is None
    assert "[n/a]" in (experiment / "report" / "report.md").read_text()


def test_bad_config_is_a_clear_error(tiny_llm, tmp_path, capsys):
    assert (
        main(
            [
                "llm",
                "train",
                *_flags(tiny_llm, tmp_path, "bad"),
                "--method",
                "sft",
                "--eval.probes",
                "[hellaswag, gsm9k]",
            ]
        )
        == 2
    )
    assert "eval.probes: unknown probe 'gsm9k'" in capsys.readouterr().err
    assert main(["llm", "pipeline", *_flags(tiny_llm, tmp_path, "bad"), "--model", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def _train_cmd(tiny_llm: Path, runs: Path, experiment: str) -> list[str]:
    flags = _flags(tiny_llm, runs, experiment, sft_epochs=6, sft_batch=2) + ["--eval.probes", "[winogrande]"]
    return [
        sys.executable,
        "-m",
        "vla_razor.cli.main",
        "llm",
        "train",
        *flags,
        "--method",
        "sft",
        "--checkpoint_every",
        "5",
    ]


def test_a_killed_run_resumes_to_the_same_model(tiny_llm, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert main(_train_cmd(tiny_llm, tmp_path, "whole")[3:]) == 0  # uninterrupted, in this process
    run = tmp_path / "cut" / "runs" / "sft_lr0.003_bs2_ep6"
    state = run / "checkpoints" / "training_state.safetensors"
    proc = subprocess.Popen(
        _train_cmd(tiny_llm, tmp_path, "cut"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not state.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.is_file() and not (run / "summary.json").exists(), "the run ended before it could be cut"
    resumed = subprocess.run(
        _train_cmd(tiny_llm, tmp_path, "cut"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from update" in resumed.stdout
    a = load_file(str(tmp_path / "whole" / "runs" / "sft_lr0.003_bs2_ep6" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["name"] == "loss"
    ]
    assert steps == list(range(48))  # each update logged once, the redone ones not twice
