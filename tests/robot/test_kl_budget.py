"""Live KL checks in robot SFT and RL: logged (with a retention forecast), and a KL budget that ends training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_razor.analysis.forecast import RetentionForecast
from vla_razor.cli.main import main as cli
from vla_razor.runs import read_jsonl

from tests.robot.conftest import QUICK, REPO


def quick_args() -> list[str]:
    return [
        a
        for k, v in QUICK.items()
        if not k.startswith("pretrain.")
        for a in (f"--{k}", json.dumps(v) if not isinstance(v, (str, Path)) else str(v))
    ]


def forecast_file(tmp_path: Path) -> Path:
    path = tmp_path / "forecast.json"
    RetentionForecast([-0.01, -0.05, 0.8], [0.0, 5.0], 0.9, 10, 40).save(path)
    return path


def test_sft_stops_at_its_kl_budget_and_logs_live_kl_with_the_forecast(
    tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    args = [
        "robot",
        "sft",
        "--base",
        str(tiny_base),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "e",
        "--sft.datasets",
        json.dumps([str(demo_dirs["pick_can_angled"])]),
        "--sft.optim.batch_size",
        "4",
        "--sft.optim.lr",
        "1e-3",
        "--forecast",
        str(forecast_file(tmp_path)),
        "--kl_budget",
        "1e-9",
        *quick_args(),
    ]
    assert cli(args) == 2, "a budget without live checks is refused"
    assert "set eval.kl_every" in capsys.readouterr().err
    assert cli([*args, "--eval.kl_every", "2"]) == 0
    run = tmp_path / "runs" / "e" / "runs" / "sft_lr0.001_bs4_ep1_s0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 2 and summary["stopped_at_kl_budget"] is True, "stopped at the first check (update 2)"
    assert summary["hparams"]["kl_budget"] == 1e-9
    forecast = RetentionForecast.load(tmp_path / "forecast.json")
    assert summary["forecast"]["prior_mean"] == pytest.approx(forecast.predict(summary["predictors"]["forward_kl"]))
    live = {r["name"]: r["value"] for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "live"}
    assert live["forward_kl"] > 1e-9 and live["forecast/prior_mean"] == pytest.approx(
        forecast.predict(live["forward_kl"])
    )
    assert max(r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train") == 2
    capsys.readouterr()
    assert cli([*args, "--eval.kl_every", "2"]) == 0 and "already finished" in capsys.readouterr().out


def test_sft_kl_budget_stops_at_the_first_check_that_reaches_it(
    tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A budget between the live KLs of an unbudgeted run stops the same run at the first check whose KL reaches
    it, mid-way, not at the first check (which any budget of 0 would give)."""
    common = [
        "robot",
        "sft",
        "--base",
        str(tiny_base),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--sft.datasets",
        json.dumps([str(demo_dirs["pick_can_angled"])]),
        "--sft.optim.batch_size",
        "2",
        "--sft.optim.lr",
        "1e-3",
        "--eval.kl_every",
        "1",
        *quick_args(),
    ]
    assert cli([*common, "--experiment", "free"]) == 0
    run = tmp_path / "runs" / "free" / "runs" / "sft_lr0.001_bs2_ep1_s0"
    live = [
        (r["step"], r["value"])
        for r in read_jsonl(run / "metrics.jsonl")
        if r["split"] == "live" and r["name"] == "forward_kl"
    ]
    assert len(live) >= 4, "needs several checks"
    budget = max(kl for _, kl in live[:2]) + 1e-6  # above the first two checks' KLs
    later = [step for step, kl in live[2:] if kl >= budget]
    assert later, f"the KL never grew past its first checks: {live}"
    assert cli([*common, "--experiment", "budgeted", "--kl_budget", str(budget)]) == 0
    budgeted = tmp_path / "runs" / "budgeted" / "runs" / "sft_lr0.001_bs2_ep1_s0"
    summary = json.loads((budgeted / "summary.json").read_text())
    assert summary["stopped_at_kl_budget"] is True and summary["step"] == later[0] < live[-1][0]
    checks = [
        r["step"] for r in read_jsonl(budgeted / "metrics.jsonl") if r["split"] == "live" and r["name"] == "forward_kl"
    ]
    assert checks == [step for step, _ in live if step <= later[0]]


def test_rl_kl_budget_stops_at_the_first_iteration_whose_check_reaches_it(tmp_path: Path) -> None:
    """RL on the committed base (whose sampled episodes succeed at the region's corners, so 1-0 updates happen and
    the KL grows): a budget between the live KLs of an unbudgeted run stops the same run after the first
    iteration whose check reaches it, mid-way, and no iteration runs after it."""
    common = [
        "robot",
        "rl",
        "--region",
        "null",  # the whole can region (the default config narrows it), whose corners the base picks at
        "--base",
        str(REPO / "assets" / "base_policy_embedded"),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--rl.grid",
        "[2, 2]",
        "--rl.episodes_per_point",
        "2",
        "--rl.max_steps",
        "24",
        "--rl.iterations",
        "3",
        "--rl.optim.batch_size",
        "16",
        "--rl.optim.lr",
        "1e-4",
        "--rl.advantage",
        "one_zero",
        "--eval.kl_every",
        "1",
        *quick_args(),
        "--camera_size",
        "112",
    ]
    name = "rl_lr0.0001_bs16_k2_10_s0"
    assert cli([*common, "--experiment", "free"]) == 0
    rows = read_jsonl(tmp_path / "runs" / "free" / "runs" / name / "metrics.jsonl")
    live = [(r["step"], r["value"]) for r in rows if r["split"] == "live" and r["name"] == "forward_kl"]
    assert [step for step, _ in live] == [1, 2], "checked after every iteration but the last (the final evaluation)"
    assert 0 < live[0][1] < live[1][1], f"the KL must grow between the checks: {live}"
    budget = (live[0][1] + live[1][1]) / 2  # reached at the second check, not the first
    assert cli([*common, "--experiment", "budgeted", "--kl_budget", str(budget)]) == 0
    run = tmp_path / "runs" / "budgeted" / "runs" / name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_at_kl_budget"] is True and summary["step"] == 2
    assert summary["hparams"]["kl_budget"] == budget
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows if r["name"] == "rollout_success"] == [1, 2], "no iteration after the stop"
    assert [r["step"] for r in rows if r["split"] == "live" and r["name"] == "forward_kl"] == [1, 2]
