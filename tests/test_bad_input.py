"""Bad input, as a careless or hostile user gives it (issue #22): every case is refused before any work starts,
with one line on stderr that names what is wrong, exit code 2, and nothing written anywhere.

Each case runs the real CLI in-process from an empty folder, with the committed configs (absolute paths), so a
check that moved past the point where a run folder or a simulator is made would show up as a written file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vla_razor.cli.main import main as cli
from vla_razor.config import ConfigError
from vla_razor.optim import NonFiniteError, check_finite

ROOT = Path(__file__).resolve().parents[1]
ROBOT = ["--config", str(ROOT / "configs/robot_quick.yaml")]
LLM = ["--config", str(ROOT / "configs/llm_quick.yaml")]
TOY = ["--config", str(ROOT / "configs/toy_quick.yaml")]

# (command words, flags, what the error line must name)
FLAG_CASES: list[tuple[str, list[str], str]] = [
    # robot: optimisation
    ("robot sft", ["--sft.optim.lr", "-1"], "--sft.optim.lr"),
    ("robot sft", ["--sft.optim.lr", "nan"], "--sft.optim.lr"),
    ("robot sft", ["--sft.optim.lr", "inf"], "--sft.optim.lr"),
    ("robot sft", ["--sft.optim.lr", "fast"], "--sft.optim.lr"),
    ("robot sft", ["--sft.optim.batch_size", "0"], "--sft.optim.batch_size"),
    ("robot sft", ["--sft.optim.batch_size", "2.5"], "--sft.optim.batch_size"),
    ("robot sft", ["--sft.optim.epochs", "0"], "--sft.optim.epochs"),
    ("robot sft", ["--sft.optim.max_steps", "0"], "--sft.optim.max_steps"),
    ("robot sft", ["--sft.optim.warmup_steps", "-5"], "--sft.optim.warmup_steps"),
    ("robot sft", ["--sft.optim.max_grad_norm", "-1"], "--sft.optim.max_grad_norm"),
    ("robot sft", ["--sft.optim.max_grad_norm", "0"], "--sft.optim.max_grad_norm"),
    ("robot sft", ["--sft.optim.weight_decay", "-0.1"], "--sft.optim.weight_decay"),
    ("robot sft", ["--sft.optim.image_shift", "-2"], "--sft.optim.image_shift"),
    ("robot sft", ["--sft.optim.schedule", "linear"], "--sft.optim.schedule"),
    ("robot sft", ["--sft.allow_clipped_actions", "maybe"], "--sft.allow_clipped_actions"),
    ("robot pretrain", ["--pretrain.optim.lr", "-1e-3"], "--pretrain.optim.lr"),  # argparse: --flag=VALUE
    ("robot pretrain", ["--pretrain.optim.lr=-1e-3"], "--pretrain.optim.lr"),
    ("robot pretrain", ["--pretrain.snapshot_every", "-1"], "--pretrain.snapshot_every"),
    # robot: REINFORCE
    ("robot rl", ["--rl.grid", "[0, 3]"], "--rl.grid[0]"),
    ("robot rl", ["--rl.grid", "3"], "--rl.grid"),
    ("robot rl", ["--rl.episodes_per_point", "0"], "--rl.episodes_per_point"),
    ("robot rl", ["--rl.iterations", "0"], "--rl.iterations"),
    ("robot rl", ["--rl.temperature", "0"], "--rl.temperature"),
    ("robot rl", ["--rl.kl_coef", "-1"], "--rl.kl_coef"),
    ("robot rl", ["--rl.max_steps", "0"], "--rl.max_steps"),
    ("robot rl", ["--rl.eval_every", "-1"], "--rl.eval_every"),
    ("robot rl", ["--rl.optim.lr", "-1e-4"], "--rl.optim.lr"),
    ("robot rl", ["--rl.optim.max_grad_norm", "nan"], "--rl.optim.max_grad_norm"),
    ("robot rl", ["--rl.advantage", "best"], "--rl.advantage"),
    ("robot rl", ["--rl.placements", "random"], "--rl.placements"),
    # robot: evaluation
    ("robot sft", ["--eval.pick_can_episodes", "0"], "--eval.pick_can_episodes"),
    ("robot sft", ["--eval.probe_episodes", "0"], "--eval.probe_episodes"),
    ("robot sft", ["--eval.kl_episodes", "0"], "--eval.kl_episodes"),
    ("robot sft", ["--eval.kl_frames_per_episode", "0"], "--eval.kl_frames_per_episode"),
    ("robot sft", ["--eval.kl_samples_per_frame", "0"], "--eval.kl_samples_per_frame"),
    ("robot sft", ["--eval.max_steps", "0"], "--eval.max_steps"),
    ("robot sft", ["--eval.temperature", "-1"], "--eval.temperature"),
    ("robot sft", ["--eval.during_training_every", "-1"], "--eval.during_training_every"),
    ("robot sft", ["--eval.kl_every", "-1"], "--eval.kl_every"),
    ("robot eval", ["--eval.seed", "-3"], "--eval.seed"),
    # robot: the machine
    ("robot sft", ["--camera_size", "0"], "--camera_size"),
    ("robot sft", ["--camera_size", "10000"], "--camera_size"),
    ("robot sft", ["--workers", "-1"], "--workers"),
    ("robot rl", ["--pipeline_groups", "0"], "--pipeline_groups"),
    ("robot sft", ["--threads", "0"], "--threads"),
    ("robot sft", ["--seed", "-1"], "--seed"),
    ("robot sft", ["--checkpoint_every", "0"], "--checkpoint_every"),
    ("robot sft", ["--kl_budget", "-0.5"], "--kl_budget"),
    ("robot sft", ["--kl_budget", "nan"], "--kl_budget"),
    ("robot sft", ["--device", "tpu"], "--device"),
    ("robot sft", ["--backend", "mujoco"], "--backend"),
    ("robot sft", ["--wandb", "cloud"], "--wandb"),
    ("robot sft", ["--progress", "2"], "--progress"),
    # robot: names that would be paths
    ("robot sft", ["--experiment", "../evil"], "--experiment"),
    ("robot sft", ["--experiment", "/tmp/evil"], "--experiment"),
    ("robot sft", ["--experiment", "a/b"], "--experiment"),
    ("robot sft", ["--experiment", ".."], "--experiment"),
    ("robot sft", ["--experiment", ".hidden"], "--experiment"),
    ("robot sft", ["--experiment", "''"], "--experiment"),
    ("robot sft", ["--sft.run_name", "../../x"], "--sft.run_name"),
    ("robot sft", ["--sft.run_name", "x/.."], "--sft.run_name"),
    ("robot rl", ["--rl.run_name", "a\\b"], "--rl.run_name"),
    ("robot rl", ["--rl.run_name", "x" * 200], "--rl.run_name"),
    # robot: the collection
    ("robot collect", ["--collect.successes_per_point", "0"], "--collect.successes_per_point"),
    ("robot collect", ["--collect.placement_jitter", "-0.1"], "--collect.placement_jitter"),
    ("robot collect", ["--collect.camera_size", "8"], "--collect.camera_size"),
    ("robot collect", ["--collect.max_attempts_per_point", "0"], "--collect.max_attempts_per_point"),
    ("robot collect", ["--collect.expert_noise", "-1"], "--collect.expert_noise"),
    ("robot collect", ["--collect.workers", "-2"], "--collect.workers"),
    ("robot collect", ["--collect.points", "[-1]"], "--collect.points[0]"),
    ("robot collect", ["--collect.max_steps", "0"], "--collect.max_steps"),
    ("robot collect", ["--collect.task", "juggle"], "--collect.task"),
    ("robot sft", ["--task", "juggle"], "--task"),
    ("robot sft", ["--probes", '["open_drawer", "juggle"]'], "--probes[1]"),
    ("robot sft", ["--probes", '["pick_can"]'], "probes"),
    ("robot collect", ["--collect.task", "open_drawer"], "collect.task"),
    ("robot rl", ["--region", "[[-0.3, -0.05], [-0.08, 0.08]]"], "region"),  # outside the can's region
    ("robot rl", ["--region", "[[-0.05, -0.15], [-0.08, 0.08]]"], "region"),  # x_min > x_max
    ("robot eval", ["--region", "[[-0.15, -0.05]]"], "region"),
    ("robot collect", ["--collect.region", "[[-0.2, -0.1], [-0.1, 0.1]]"], "collect.region"),  # not the region
    # LLM
    ("llm train --method sft", ["--sampling.temperature", "0"], "--sampling.temperature"),
    ("llm train --method sft", ["--sampling.max_new_tokens", "0"], "--sampling.max_new_tokens"),
    ("llm train --method sft", ["--sampling.batch_size", "0"], "--sampling.batch_size"),
    ("llm train --method sft", ["--sft.optim.lr", "-1"], "--sft.optim.lr"),
    ("llm train --method sft", ["--sft.optim.batch_size", "0"], "--sft.optim.batch_size"),
    ("llm train --method sft", ["--sft.optim.micro_batch_size", "0"], "--sft.optim.micro_batch_size"),
    ("llm train --method sft", ["--sft.optim.max_grad_norm", "-1"], "--sft.optim.max_grad_norm"),
    ("llm train --method sft", ["--sft.optim.epochs", "0"], "--sft.optim.epochs"),
    ("llm train --method grpo", ["--grpo.group_size", "1"], "--grpo.group_size"),
    ("llm train --method grpo", ["--grpo.mu", "0"], "--grpo.mu"),
    ("llm train --method grpo", ["--grpo.clip_eps", "0"], "--grpo.clip_eps"),
    ("llm train --method grpo", ["--grpo.kl_coef", "-1"], "--grpo.kl_coef"),
    ("llm train --method grpo", ["--grpo.generations", "0"], "--grpo.generations"),
    ("llm train --method grpo", ["--grpo.prompts_per_generation", "0"], "--grpo.prompts_per_generation"),
    ("llm train --method simpo", ["--simpo.beta", "0"], "--simpo.beta"),
    ("llm train --method simpo", ["--simpo.samples_per_prompt", "1"], "--simpo.samples_per_prompt"),
    ("llm train --method sft", ["--eval.humaneval_timeout", "-1"], "--eval.humaneval_timeout"),
    ("llm train --method sft", ["--eval.probe_limit", "0"], "--eval.probe_limit"),
    ("llm train --method sft", ["--eval.kl_prompts", "0"], "--eval.kl_prompts"),
    ("llm train --method sft", ["--eval.every", "-1"], "--eval.every"),
    ("llm train --method sft", ["--task.train_size", "0"], "--task.train_size"),
    ("llm train --method sft", ["--task.digits", "0"], "--task.digits"),
    ("llm train --method sft", ["--threads", "0"], "--threads"),
    ("llm train --method sft", ["--checkpoint_every", "0"], "--checkpoint_every"),
    ("llm train --method sft", ["--experiment", "../x"], "--experiment"),
    ("llm train --method sft", ["--sft.run_name", "/tmp/x"], "--sft.run_name"),
    ("llm train --method sft", ["--dtype", "float8"], "--dtype"),
    # toy
    ("toy sweep", ["--sweep.lr_count", "0"], "--sweep.lr_count"),
    ("toy sweep", ["--sweep.lr_min", "-1"], "--sweep.lr_min"),
    ("toy sweep", ["--sweep.lr_max", "inf"], "--sweep.lr_max"),
    ("toy sweep", ["--sweep.epochs", "[0]"], "--sweep.epochs[0]"),
    ("toy sweep", ["--sweep.models_per_stack", "-1"], "--sweep.models_per_stack"),
    ("toy sweep", ["--finetune.batch_size", "0"], "--finetune.batch_size"),
    ("toy sweep", ["--finetune.group_size", "1"], "--finetune.group_size"),
    ("toy sweep", ["--finetune.max_grad_norm", "-1"], "--finetune.max_grad_norm"),
    ("toy sweep", ["--finetune.weight_decay", "-1"], "--finetune.weight_decay"),
    ("toy sweep", ["--finetune.kl_budget", "-1"], "--finetune.kl_budget"),
    ("toy pretrain", ["--pretrain.hidden", "[0]"], "--pretrain.hidden[0]"),
    ("toy pretrain", ["--pretrain.lr", "0"], "--pretrain.lr"),
    ("toy pretrain", ["--data.pretrain_per_task", "0"], "--data.pretrain_per_task"),
    ("toy pretrain", ["--threads", "-1"], "--threads"),
    ("toy pretrain", ["--experiment", ".."], "--experiment"),
    # sweep
    ("sweep " + str(ROOT / "configs/sweep_toy_quick.yaml"), ["--resources.cpus", "-1"], "--resources.cpus"),
    ("sweep " + str(ROOT / "configs/sweep_toy_quick.yaml"), ["--num_gpus", "-1"], "--num_gpus"),
]

# (file name, content, command words, what the error line must name): bad config files
FILE_CASES: list[tuple[str, bytes, str, str]] = [
    ("binary.yaml", bytes(range(256)) * 4, "robot sft", "binary.yaml"),
    ("dup.yaml", b"experiment: a\nexperiment: b\n", "robot sft", "'experiment' is given twice"),
    ("nested_dup.yaml", b"sft:\n  optim: {lr: 1.0e-4, lr: 1.0}\n", "robot sft", "'lr' is given twice"),
    ("list.yaml", b"- 1\n- 2\n", "robot sft", "expected a mapping"),
    ("unknown.yaml", b"sft: {optim: {lrr: 1.0e-4}}\n", "robot sft", "unknown key sft.optim.lrr"),
    ("badtype.yaml", b"camera_size: big\n", "robot sft", "camera_size"),
    ("nan.yaml", b"sft: {optim: {lr: .nan}}\n", "robot sft", "sft.optim.lr"),
    ("syntax.yaml", b"sft: {optim: [\n", "robot sft", "not valid YAML"),
    ("grid_zero.yaml", b"rl: {grid: [5, 0]}\n", "robot rl", "rl.grid[1]"),
    ("llm_temp.yaml", b"sampling: {temperature: 0}\n", "llm train --method sft", "sampling.temperature"),
    ("toy_lr.yaml", b"sweep: {lr_count: -2}\n", "toy sweep", "sweep.lr_count"),
]


def _run(words: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    try:
        code = cli(words)
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def _written(folder: Path, inputs: set[str]) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name not in inputs)


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLA_RAZOR_DEBUG", raising=False)
    return tmp_path


def _config_for(words: str) -> list[str]:
    first = words.split()[0]
    return {"robot": ROBOT, "llm": LLM, "toy": TOY}.get(first, [])


@pytest.mark.parametrize("words, flags, named", FLAG_CASES, ids=[f"{w}:{' '.join(f)}"[:80] for w, f, _ in FLAG_CASES])
def test_bad_flag_is_one_line_before_any_work(
    words: str, flags: list[str], named: str, empty_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _run(words.split() + _config_for(words) + flags, capsys)
    assert code == 2, f"exit code {code}, stderr: {lines}"
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {lines}"
    assert lines[0].startswith("vla-razor") and " error: " in lines[0] and named in lines[0], lines[0]
    assert _written(empty_cwd, set()) == [], "a refused command wrote files"


@pytest.mark.parametrize("name, content, words, named", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_config_file_is_one_line(
    name: str, content: bytes, words: str, named: str, empty_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (empty_cwd / name).write_bytes(content)
    code, lines = _run(words.split() + ["--config", name], capsys)
    assert code == 2, f"exit code {code}, stderr: {lines}"
    assert len(lines) == 1 and lines[0].startswith("vla-razor: error: ") and named in lines[0], lines
    assert _written(empty_cwd, {name}) == []


def test_missing_config_file_names_it(empty_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(["robot", "sft", "--config", "nowhere.yaml"], capsys)
    assert code == 2 and len(lines) == 1 and "nowhere.yaml" in lines[0] and "does not exist" in lines[0]


def test_unknown_flag_is_refused_by_the_parser(empty_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(["robot", "sft", *ROBOT, "--sft.optim.lrr", "1"], capsys)
    assert code == 2 and len(lines) == 1 and "unrecognized arguments: --sft.optim.lrr" in lines[0], lines
    assert _written(empty_cwd, set()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_cuda_without_a_gpu_is_bad_input(empty_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(["robot", "sft", *ROBOT, "--device", "cuda"], capsys)
    assert code == 2 and len(lines) == 1 and "torch sees no GPU" in lines[0], lines


def test_corrupt_run_files_are_bad_input_naming_the_file(empty_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = empty_cwd / "runs" / "x"
    runs.mkdir(parents=True)
    (runs / "summary.json").write_text("{not json")
    code, lines = _run(["report", "runs"], capsys)
    assert code == 2 and len(lines) == 1 and "runs/x/summary.json:1: malformed JSON" in lines[0], lines


def test_malformed_run_results_and_empty_folders_are_bad_input(
    empty_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A summary.json of the wrong shape, or a folder with no finished run, is one line and exit code 2; --debug
    re-raises the same error for its traceback."""
    from vla_razor.runs import CorruptFileError

    runs = empty_cwd / "runs" / "x"
    runs.mkdir(parents=True)
    (runs / "summary.json").write_text('{"domain": "robot", "method": "sft", "new_task": "high"}')
    code, lines = _run(["report", "runs"], capsys)
    assert code == 2 and lines == ["vla-razor: error: runs/x/summary.json: 'new_task' must be a number, got 'high'"]
    with pytest.raises(CorruptFileError, match="'new_task' must be a number"):
        cli(["--debug", "report", "runs"])
    (runs / "summary.json").unlink()
    code, lines = _run(["report", "runs"], capsys)
    assert code == 2 and len(lines) == 1 and "no finished runs (summary.json) under runs" in lines[0], lines


def test_config_ranges_reach_python_callers() -> None:
    """The range checks live in the config layer: from_dict (sweeps, run folders) refuses what the CLI refuses."""
    from vla_razor.config import from_dict
    from vla_razor.robot.config import RobotConfig

    with pytest.raises(ConfigError, match=r"sft\.optim\.max_grad_norm: expected a number > 0, got -1"):
        from_dict(RobotConfig, {"sft": {"optim": {"max_grad_norm": -1.0}}}, "sweep")
    with pytest.raises(ConfigError, match="plain name"):
        from_dict(RobotConfig, {"experiment": "../up"}, "sweep")
    assert from_dict(RobotConfig, {"experiment": "razor_embedded-v2.1"}, "sweep").experiment == "razor_embedded-v2.1"


def test_non_finite_update_is_stopped_with_its_step() -> None:
    check_finite("sft", 3, torch.tensor(0.5), torch.tensor(2.0))
    with pytest.raises(NonFiniteError, match="sft: loss nan at update 4"):
        check_finite("sft", 3, torch.tensor(math.nan), torch.tensor(2.0))
    with pytest.raises(NonFiniteError, match="gradient norm inf at update 1"):
        check_finite("rl", 0, 0.1, math.inf)


def test_nan_weights_in_a_checkpoint_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from vla_razor.policies.openvla.loading import CheckpointError, from_pretrained

    src = ROOT / "assets/base_policy_embedded"
    dst = tmp_path / "nan_base"
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    (shard,) = [f for f in src.iterdir() if f.suffix == ".safetensors"]
    state = load_file(str(shard))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(dst / shard.name))
    with pytest.raises(CheckpointError, match=f"tensor {key} holds NaN"):
        from_pretrained(dst)
    assert from_pretrained(src) is not None  # the untouched base still loads


def _write_dataset(root: Path, task: str = "pick_can", action: float = 0.01, side: int = 32) -> Path:
    """A real dataset folder (the collector's own writer): two 3-step episodes."""
    import numpy as np

    from data_collection.dataset import Episode, EpisodeMeta, episode_filename, write_episode, write_index

    metas = []
    for point in range(2):
        meta = EpisodeMeta(
            task=task,
            instruction="pick coke can",
            seed=point,
            grid_point=point,
            grid_xy=[0.0, 0.0],
            attempt=0,
            steps=3,
            success=True,
            file=episode_filename(point, 0),
        )
        actions = np.full((3, 7), 0.01, dtype=np.float32)
        actions[1, 2] = action
        write_episode(
            root,
            Episode(
                np.zeros((3, side, side, 3), np.uint8),
                np.zeros((3, 16), np.float32),
                actions,
                np.zeros(3, np.float32),
                meta,
            ),
        )
        metas.append(meta)
    write_index(root, metas, {}, "scripted", "made by tests/test_bad_input.py")
    return root


@pytest.mark.parametrize(
    "kind, named",
    [
        ("nan_action", "episode 0, step 1 has a NaN or infinite action"),
        ("inf_action", "has a NaN or infinite action"),
        ("tiny_images", "frames of shape [2, 2, 3]"),
        ("wrong_task", "episodes of open_drawer"),
        ("listed_twice", "is listed twice"),
    ],
)
def test_bad_demonstrations_are_refused_before_training(
    kind: str, named: str, empty_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    data = _write_dataset(
        empty_cwd / "demos",
        task="open_drawer" if kind == "wrong_task" else "pick_can",
        action={"nan_action": math.nan, "inf_action": math.inf}.get(kind, 0.01),
        side=2 if kind == "tiny_images" else 32,
    )
    datasets = [str(data), str(data)] if kind == "listed_twice" else [str(data)]
    inputs = {p.name for p in empty_cwd.rglob("*")}
    code, lines = _run(
        [
            "robot",
            "sft",
            *ROBOT,
            "--base",
            str(ROOT / "assets/base_policy_embedded"),
            "--sft.datasets",
            json.dumps(datasets),
            "--wandb",
            "off",
        ],
        capsys,
    )
    assert code == 2 and len(lines) == 1 and named in lines[0], lines
    assert _written(empty_cwd, inputs) == [], "refused demonstrations must not start a run"
