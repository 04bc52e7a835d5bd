"""vla_razor/distributed.py + the trainer under torchrun: 2 gloo processes on the CPU train the tiny policy on real
demonstrations to the same loss curve and weights as one process, write the same training-state file, and a run
interrupted after a checkpoint resumes with the other process count to the same weights.

One torchrun launch runs every 2-process command (tests/robot/torchrun_cli.py): the start-up is paid once.
Batches of 26 of the 53 transitions make 3 updates an epoch: two even ones (13 rows a process) and a last one of
1 row, which leaves rank 1 without a row (it computes with weight 0 and still joins every collective).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_razor.cli.main import main as cli
from vla_razor.distributed import Distributed, check_distributed, rank_share
from vla_razor.optim import OptimConfig
from vla_razor.runs import load_tensors, read_jsonl
from vla_razor.training_state import read_training_state_meta

REPO = Path(__file__).resolve().parents[2]
COMPARED = ("loss", "token_accuracy", "grad_norm", "lr")


def pretrain(demo_dirs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    datasets = json.dumps([str(demo_dirs["pick_can_top_down"]), str(demo_dirs["open_drawer"])])
    return [
        "robot",
        "pretrain",
        "--pretrain.policy_config",
        str(REPO / "configs/policy_tiny.yaml"),
        "--progress",
        "false",
        "--wandb",
        "off",
        "--threads",
        "1",
        "--camera_size",
        "32",
        "--workers",
        "0",
        "--pretrain.datasets",
        datasets,
        "--pretrain.out",
        str(out),
        "--pretrain.optim.batch_size",
        "26",
        "--pretrain.optim.epochs",
        "1",
        "--pretrain.optim.warmup_steps",
        "2",
        "--pretrain.optim.lr",
        "1e-3",
        "--pretrain.optim.schedule",
        "constant",
        "--checkpoint_every",
        "2",
        *extra,
    ]


def interrupted(run: Path) -> None:
    """What a run killed after its checkpoint at update 2 leaves: the training state, no policy folder."""
    assert read_training_state_meta(run / "checkpoints" / "training_state.safetensors")["step"] == 2
    shutil.rmtree(run / "policy")


def launch(commands: list[list[str]], tmp: Path, processes: int = 2) -> tuple[list[list[int]], str, str]:
    """Runs `commands` in one torchrun launch of `processes` gloo processes: each rank's exit codes, stdout,
    stderr."""
    spec = tmp / "commands.json"
    spec.write_text(json.dumps(commands))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            str(REPO / "tests/robot/torchrun_cli.py"),
            str(spec),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = [json.loads((tmp / f"commands.json.rc{r}").read_text()) for r in range(processes)]
    return codes, proc.stdout, proc.stderr


def sft(demo_dirs: dict[str, Path], base: Path, runs_dir: Path) -> list[str]:
    """`robot sft` of the tiny base, 2 updates, and its evaluation kept to a few 6-step episodes."""
    return [
        "robot",
        "sft",
        "--progress",
        "false",
        "--wandb",
        "off",
        "--threads",
        "1",
        "--camera_size",
        "32",
        "--workers",
        "0",
        "--eval.pick_can_episodes",
        "2",
        "--eval.probe_episodes",
        "1",
        "--eval.kl_episodes",
        "1",
        "--eval.kl_frames_per_episode",
        "3",
        "--eval.max_steps",
        "6",
        "--runs_dir",
        str(runs_dir),
        "--experiment",
        "e",
        "--base",
        str(base),
        "--sft.datasets",
        json.dumps([str(demo_dirs["pick_can_angled"])]),
        "--sft.optim.batch_size",
        "4",
        "--sft.optim.max_steps",
        "2",
        "--sft.run_name",
        "sft",
    ]


@pytest.fixture(scope="module")
def runs(demo_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """reference: 1 process; two: 2 processes; one_then_two: 2 updates by 1 process, the third after a restart
    with 2; odd: a batch of 5 for 2 processes. (2 then 1 needs no run of its own: the 2-process training state is
    the 1-process file, names, shapes, dtypes, values and meta, which test_two_processes_train_as_one checks.)"""
    root = tmp_path_factory.mktemp("distributed")
    assert cli(pretrain(demo_dirs, root / "reference")) == 0
    assert cli(pretrain(demo_dirs, root / "one_then_two", "--pretrain.optim.max_steps", "2")) == 0
    interrupted(root / "one_then_two")
    odd = pretrain(demo_dirs, root / "odd")
    odd[odd.index("--pretrain.optim.batch_size") + 1] = "5"
    codes, stdout, stderr = launch(
        [pretrain(demo_dirs, root / "two"), pretrain(demo_dirs, root / "one_then_two"), odd], root
    )
    return {"root": root, "codes": codes, "stdout": stdout, "stderr": stderr}


def metrics(run: Path) -> list[tuple[int, str, float]]:
    return [(r["step"], r["name"], r["value"]) for r in read_jsonl(run / "metrics.jsonl") if r["name"] in COMPARED]


def assert_same_run(run: Path, reference: Path) -> None:
    """The same metric rows (each update logged once) to 1e-5, and the same final weights to 1e-5."""
    got, want = metrics(run), metrics(reference)
    assert [(s, n) for s, n, _ in got] == [(s, n) for s, n, _ in want]
    np.testing.assert_allclose([v for *_, v in got], [v for *_, v in want], rtol=1e-5, atol=1e-7)
    a = load_tensors(run / "policy" / "model-00001-of-00001.safetensors")
    b = load_tensors(reference / "policy" / "model-00001-of-00001.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)
    assert json.loads((run / "policy" / "config.json").read_text()) == json.loads(
        (reference / "policy" / "config.json").read_text()
    )


def test_two_processes_train_as_one(runs: dict[str, object]) -> None:
    root = runs["root"]
    assert runs["codes"][0][0] == runs["codes"][1][0] == 0
    assert runs["stdout"].count("pretrain: 3 updates") == 2  # two, one_then_two: rank 0 speaks for the run
    assert [s for s, n, _ in metrics(root / "two") if n == "loss"] == [1, 2, 3]
    assert_same_run(root / "two", root / "reference")
    # rank 0 wrote the training state in the one-process layout: same names, shapes, dtypes and meta
    two = load_tensors(root / "two" / "checkpoints" / "training_state.safetensors")
    one = load_tensors(root / "reference" / "checkpoints" / "training_state.safetensors")
    assert two.keys() == one.keys()
    assert any(k.startswith("optim.") for k in one) and "rng.torch" in one
    for key in one:
        assert (two[key].shape, two[key].dtype) == (one[key].shape, one[key].dtype), key
        if key != "rng.torch":
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-5, msg=key)
    meta = read_training_state_meta(root / "two" / "checkpoints" / "training_state.safetensors")
    assert meta == read_training_state_meta(root / "reference" / "checkpoints" / "training_state.safetensors")


def test_a_run_resumes_with_another_process_count(runs: dict[str, object]) -> None:
    root = runs["root"]
    assert runs["codes"][0][1] == runs["codes"][1][1] == 0
    assert_same_run(root / "one_then_two", root / "reference")  # updates 1-2 by 1 process, 3 by 2


def test_a_batch_the_processes_cannot_share_is_refused(runs: dict[str, object]) -> None:
    assert runs["codes"][0][2] == runs["codes"][1][2] == 2
    assert "optim.batch_size (5) must be a multiple of the number of processes (2)" in runs["stderr"]
    assert not (runs["root"] / "odd").exists(), "refused before anything was written"
    with pytest.raises(ValueError, match=r"optim\.batch_size \(6\).*\(4\)"):
        check_distributed(OptimConfig(batch_size=6), Distributed(rank=1, world_size=4))
    check_distributed(OptimConfig(batch_size=8), Distributed(rank=1, world_size=4))


def test_each_rank_takes_a_contiguous_share_weighted_to_the_batch_mean() -> None:
    rows = np.arange(10, 15)  # an epoch's last, short batch of 5 rows for 2 processes
    shares = [rank_share(rows, Distributed(rank=r, world_size=2)) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate([s for s, _ in shares]), rows)
    assert [w for _, w in shares] == [pytest.approx(3 * 2 / 5), pytest.approx(2 * 2 / 5)]
    # (1/world) sum_r weight_r * mean_r(loss) is the mean over the batch
    losses = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    mean = np.mean([w * losses[s - 10].mean() for s, w in shares])
    assert mean == pytest.approx(losses.mean())
    one_row = [rank_share(rows[:1], Distributed(rank=r, world_size=2)) for r in range(2)]
    assert [(list(s), w) for s, w in one_row] == [([10], 2.0), ([10], 0.0)]
    np.testing.assert_array_equal(rank_share(rows, Distributed())[0], rows)


@pytest.mark.skipif(
    not os.environ.get("VLA_RAZOR_SLOW_TESTS"),
    reason="about 35 s more (simulator start-up for the evaluation); VLA_RAZOR_SLOW_TESTS=1 runs it",
)
def test_sft_trains_on_every_rank_and_rank_0_evaluates(
    demo_dirs: dict[str, Path], tiny_base: Path, tmp_path: Path
) -> None:
    """`robot sft` under torchrun: both ranks train and return 0; rank 0 alone logs, saves and evaluates."""
    codes, stdout, _ = launch([sft(demo_dirs, tiny_base, tmp_path / "runs")], tmp_path)
    assert codes == [[0], [0]]
    run = tmp_path / "runs" / "e" / "runs" / "sft"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "sft" and summary["step"] == 2
    assert set(summary["prior"]) == {"open_drawer", "close_drawer"} and summary["predictors"]["forward_kl"] > 0
    assert [s for s, n, _ in metrics(run) if n == "loss"] == [1, 2]
    assert stdout.count("sft: 2 updates") == 1  # rank 0 speaks for the run
