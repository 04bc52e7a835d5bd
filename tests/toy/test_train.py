import json

import pytest
import torch

from tests.toy.conftest import tiny_config, tiny_values
from vla_razor.cli.main import main
from vla_razor.runs import RunFolder, load_tensors
from vla_razor.toy.model import MLP, stack_state, stacked_forward
from vla_razor.sweep.config import SweepConfig
from vla_razor.sweep.sweep import SweepResult, run_sweep
from vla_razor.toy.sweep import sweep_groups
from vla_razor.toy.train import (
    BaseReference,
    RunSpec,
    evaluate_checkpoints,
    finetune_group,
    load_or_pretrain_base,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_data):
    cfg = tiny_config(tmp_path_factory.mktemp("base"))
    torch.set_num_threads(2)
    model = load_or_pretrain_base(cfg, tiny_data, progress=False)
    return BaseReference.build(model, tiny_data, cfg.finetune)


def test_stacked_forward_matches_single_mlp():
    torch.manual_seed(0)
    model = MLP(hidden=(16, 8))
    x = torch.randn(5, 785)
    logits, hidden = stacked_forward(stack_state(model.state_dict(), 3), x)
    ref_logits, ref_hidden = model.forward_with_hidden(x)
    for m in range(3):
        torch.testing.assert_close(logits[m], ref_logits)
        torch.testing.assert_close(hidden[1][m], ref_hidden[1])


def test_base_is_better_than_chance_on_both_tasks(base):
    assert base.new_task > 0.7  # parity: chance is 0.5
    assert base.prior["fashion_mnist"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize("method", ["grpo", "grpo_kl", "sft_oracle"])
def test_batched_group_gives_the_same_metrics_as_each_run_alone(method, tmp_path, tiny_data, base):
    cfg = tiny_config(tmp_path, **{"finetune.batch_size": 128}).finetune
    runs = [
        RunSpec(method, lr, sched, 1, 0) for lr, sched in [(1e-3, "constant"), (3e-4, "cosine"), (1e-4, "constant")]
    ]
    data = _subset(tiny_data, 512)
    params, history = finetune_group(runs, base, data, cfg, progress=False)
    for m, run in enumerate(runs):
        alone_params, alone_history = finetune_group([run], base, data, cfg, progress=False)
        for checkpoint, alone in zip(history, alone_history):
            got, want = checkpoint[m], alone[0]
            assert got["new_task"] == pytest.approx(want["new_task"], abs=1e-9)
            assert got["prior"] == pytest.approx(want["prior"], abs=1e-9)
            for name in ("forward_kl", "reverse_kl", "tv", "weight_l1", "fisher_l2"):
                assert got["predictors"][name] == pytest.approx(want["predictors"][name], rel=1e-4, abs=1e-7)
        torch.testing.assert_close(params["fc1.weight"][m], alone_params["fc1.weight"][0], rtol=1e-4, atol=1e-6)


def test_kl_budget_stops_each_run_at_its_first_checkpoint_over_budget(tmp_path, tiny_data, base):
    """A run under a KL budget is the unconstrained run up to the first checkpoint whose forward KL reaches the
    budget, and stays that model (lr 0) to the end; a run that never reaches it is untouched."""
    cfg = tiny_config(tmp_path, **{"finetune.batch_size": 64, "finetune.evals_per_epoch": 4}).finetune
    runs = [RunSpec("sft1", 1e-3, "constant", 1, 0), RunSpec("sft1", 3e-5, "constant", 1, 0)]
    data = _subset(tiny_data, 1024)
    free_params, free = finetune_group(runs, base, data, cfg, progress=False)
    fast_kl = [c[0]["predictors"]["forward_kl"] for c in free]
    slow_kl = [c[1]["predictors"]["forward_kl"] for c in free]
    assert fast_kl[1] < fast_kl[-1] and slow_kl[-1] < fast_kl[1], "the setting this test needs"
    cfg.kl_budget = (fast_kl[0] + fast_kl[1]) / 2  # reached at the second checkpoint by the fast run only
    params, history = finetune_group(runs, base, data, cfg, progress=False)
    stop = history[1][0]
    assert stop["stopped_at_kl_budget"] and stop["predictors"]["forward_kl"] == pytest.approx(fast_kl[1])
    assert all(c[0] is stop for c in history[1:]), "every later checkpoint of the stopped run is the stop itself"
    frozen = evaluate_checkpoints(params, base, data, cfg, final=False)[0]  # the final weights of the stopped run
    assert frozen["predictors"]["forward_kl"] == pytest.approx(stop["predictors"]["forward_kl"], rel=1e-6)
    assert frozen["new_task"] == stop["new_task"] and frozen["prior"] == stop["prior"]
    for checkpoint, unconstrained in zip(history, free):
        assert checkpoint[1]["predictors"]["forward_kl"] == pytest.approx(unconstrained[1]["predictors"]["forward_kl"])
    torch.testing.assert_close(params["fc1.weight"][1], free_params["fc1.weight"][1])


def test_run_stopped_at_its_kl_budget_writes_that_model_once(tmp_path, tiny_data, base):
    from vla_razor.toy.train import run_group

    cfg = tiny_config(tmp_path, **{"finetune.batch_size": 64, "finetune.kl_budget": 1e-6, "save_weights": False})
    run = RunSpec("sft2", 1e-3, "constant", 1, 0)
    run_group(cfg, [run], base, _subset(tiny_data, 512), progress=False)
    folder = RunFolder(cfg.experiment_dir / "runs" / run.name)
    summary = json.loads(folder.summary_path.read_text())
    assert summary["hparams"]["kl_budget"] == 1e-6 and summary["stopped_at_kl_budget"] is True
    assert summary["step"] == 4, "512 digits / 64 = 8 updates, evaluated every 4: stopped at the first checkpoint"
    assert {r["step"] for r in folder.metrics()} == {4}, "later checkpoints of the same model are not logged again"
    assert not (folder.path / "points.jsonl").exists(), "the stop is the final model, not also a mid-training point"


def _subset(data, n):
    from dataclasses import replace

    from vla_razor.toy.data import TaskSplit

    fine = data.parity_finetune
    return replace(data, parity_finetune=TaskSplit(fine.inputs[:n], fine.digits[:n]))


def test_each_method_learns_parity_and_moves_away_from_base(tmp_path, tiny_data, base):
    cfg = tiny_config(tmp_path, **{"finetune.batch_size": 64}).finetune
    data = _subset(tiny_data, 1024)
    for method in ("grpo", "sft1", "sft2", "sft_oracle"):
        _, history = finetune_group([RunSpec(method, 1e-3, "constant", 1, 0)], base, data, cfg, progress=False)
        final = history[-1][0]
        start = history[0][0]["new_task_expected"]  # after the first few updates
        assert final["new_task_expected"] > start, method  # the sampled policy's success rate rises
        assert final["predictors"]["forward_kl"] > 0.0
    # SFT1 (all mass on labels 0/1) moves much farther in KL than RL at the same learning rate.
    _, rl = finetune_group([RunSpec("grpo", 1e-3, "constant", 1, 0)], base, data, cfg, progress=False)
    _, sft = finetune_group([RunSpec("sft1", 1e-3, "constant", 1, 0)], base, data, cfg, progress=False)
    assert sft[-1][0]["predictors"]["forward_kl"] > 3 * rl[-1][0]["predictors"]["forward_kl"]


def toy_sweep(tmp_path, **overrides) -> SweepResult:
    """The tiny experiment's sweep through the one sweep path, in this process (as `vla-razor toy sweep`)."""
    values = tiny_values(tmp_path, **overrides)
    return run_sweep(
        SweepConfig(domain="toy", experiment_config=None, overrides=values, in_process=True, report=values["report"]),
        progress=False,
    )


def test_sweep_writes_run_folders_and_resumes(tmp_path):
    cfg = tiny_config(tmp_path, **{"data.pretrain_per_task": 200})
    result = toy_sweep(tmp_path, **{"data.pretrain_per_task": 200})
    assert result.runs_trained == 4 and result.runs_skipped == 0
    names = [r.name for g in sweep_groups(cfg) for r in g]
    folders = [RunFolder(cfg.experiment_dir / "runs" / n) for n in names]
    assert all(f.is_finished() for f in folders)
    summary = json.loads(folders[0].summary_path.read_text())
    assert summary["domain"] == "toy" and summary["method"] == "grpo"
    assert set(summary["predictors"]) >= {
        "forward_kl",
        "reverse_kl",
        "tv",
        "dist_l2",
        "weight_l1",
        "fisher_l2",
        "spectral",
        "activation_l1",
        "activation_l2",
        "cknna",
        "sparsity",
        "rank",
    }
    assert summary["forgetting"] == pytest.approx(
        summary["base"]["prior"]["fashion_mnist"] - summary["prior"]["fashion_mnist"]
    )
    assert (folders[0].path / "points.jsonl").read_text().count("\n") >= 1
    weights = load_tensors(folders[0].path / "checkpoints" / "final.safetensors")
    assert weights["fc1.weight"].shape == (64, 785)

    # An interrupted sweep: one run lost its summary (killed before the end) -> only its group reruns.
    lost = folders[-1]
    lost.summary_path.unlink()
    before = folders[0].summary_path.stat().st_mtime_ns
    again = toy_sweep(tmp_path, **{"data.pretrain_per_task": 200})
    assert again.runs_trained == 2 and again.runs_skipped == 2
    assert lost.is_finished()
    assert folders[0].summary_path.stat().st_mtime_ns == before

    # A rerun with other fine-tuning settings is refused by name (not called finished, not resumed into a mix);
    # another sweep grid or thread count is the same runs.
    from vla_razor.config import ConfigError

    with pytest.raises(ConfigError, match=r"made with other settings \(finetune.batch_size: 64 -> 16\)"):
        toy_sweep(tmp_path, **{"data.pretrain_per_task": 200, "finetune.batch_size": 16})
    same = toy_sweep(tmp_path, **{"data.pretrain_per_task": 200, "threads": 1, "report": False})
    assert same.runs_trained == 0 and same.runs_skipped == 4


def test_a_diverging_run_stops_the_stack_naming_it(tiny_data, base, tmp_path):
    from vla_razor.optim import NonFiniteError

    cfg = tiny_config(tmp_path).finetune
    runs = [RunSpec("sft_oracle", 1e-4, "constant", 1, 0), RunSpec("sft_oracle", 1e30, "constant", 1, 0)]
    with pytest.raises(NonFiniteError, match=r"at update \d+ of sft_oracle-lr1.00e\+30-constant-ep1-s0;"):
        finetune_group(runs, base, _subset(tiny_data, 512), cfg, progress=False)


def test_cli_sweep_and_report_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        f"experiment: cli\nruns_dir: {tmp_path / 'runs'}\nwandb: 'off'\nsave_weights: false\n"
        "data: {pretrain_per_task: 200, parity_test: 300, fashion_test: 300}\n"
        "pretrain: {epochs: 10, hidden: [64, 32]}\n"
        "finetune: {batch_size: 128, evals_per_epoch: 2, fisher_samples: 64, cknna_samples: 100}\n"
        "sweep: {methods: [grpo, sft1], lr_min: 3.0e-4, lr_max: 1.0e-3, lr_count: 2, schedules: [constant], epochs: [1]}\n"
    )
    assert main(["toy", "sweep", "--config", str(cfg), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 runs trained" in out and "report:" in out
    report_dir = tmp_path / "runs" / "cli" / "report"
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["runs"] == 4 and set(summary["r2"]) >= {"forward_kl", "weight_l1", "activation_l2"}
    assert summary["r2_n_runs"]["forward_kl"] == 4 and summary["r2_n"]["forward_kl"] > 4  # mid-training points too
    assert set(summary["r2_loro"]) == set(summary["r2"])
    assert (report_dir / "report.html").is_file() and (report_dir / "tradeoff.png").stat().st_size > 1000

    # The forecast from this sweep, then a new run given it logs, at every checkpoint, the retention it predicts
    # from its forward KL (and its summary keeps the final one).
    from vla_razor.analysis.forecast import RetentionForecast

    forecast_file = tmp_path / "forecast.json"
    assert main(["forecast", str(tmp_path / "runs" / "cli" / "runs"), "--out", str(forecast_file), "--folds", "2"]) == 0
    assert "held-out runs (2 folds)" in capsys.readouterr().out
    forecast = RetentionForecast.load(forecast_file)
    assert forecast.runs == 4
    assert (
        main(
            [
                "toy",
                "sweep",
                "--config",
                str(cfg),
                "--threads",
                "2",
                "--experiment",
                "live",
                "--report",
                "false",
                "--forecast",
                str(forecast_file),
                "--sweep.methods",
                "[sft2]",
                "--sweep.lr_count",
                "1",
            ]
        )
        == 0
    )
    run = next((tmp_path / "runs" / "live" / "runs").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kl = {r["step"]: r["value"] for r in rows if r["name"] == "predictors/forward_kl"}
    predicted = {r["step"]: r["value"] for r in rows if r["name"] == "forecast/prior_mean"}
    assert len(predicted) >= 2 and set(predicted) == set(kl)
    for step, value in predicted.items():
        assert value == pytest.approx(forecast.predict(kl[step]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["forecast"]["prior_mean"] == pytest.approx(forecast.predict(summary["predictors"]["forward_kl"]))


def test_cli_reports_bad_config_without_traceback(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sweep:\n  lr_cnt: 3\n")
    assert main(["toy", "sweep", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: unknown key sweep.lr_cnt" in err and "Traceback" not in err


def test_sweep_groups_split_into_stacks_of_the_configured_size(tmp_path):
    cfg = tiny_config(
        tmp_path, **{"sweep.lr_count": 5, "sweep.schedules": ["constant", "cosine"], "sweep.models_per_stack": 4}
    )
    groups = sweep_groups(cfg)
    assert [len(g) for g in groups] == [4, 4, 2, 4, 4, 2]  # 10 runs per method, 2 methods
    assert all(len({(r.method, r.epochs, r.seed) for r in g}) == 1 for g in groups)
    whole = sweep_groups(
        tiny_config(
            tmp_path, **{"sweep.lr_count": 5, "sweep.schedules": ["constant", "cosine"], "sweep.models_per_stack": 0}
        )
    )
    assert [len(g) for g in whole] == [10, 10]
