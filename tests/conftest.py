"""Session fixtures shared by several test folders: real demonstration datasets (the scripted experts on the
embedded world, 32 px camera) and a tiny base policy behaviour-cloned on them (robot and sweep tests), and a tiny
random causal LM (LLM and sweep tests); `kill_after_checkpoint`, the crash of the resume tests (robot and LLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--camera_size", "32", "--workers", "0", "--progress", "false", "--max_attempts_per_point", "3"]


@pytest.fixture(scope="session")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pick_can in both expert styles (2x2 grid; top-down 1 success a point, angled 2) and open_drawer (1x2, 1 a
    point). The angled set, what SFT tests fine-tune on, has enough rows (~60) that its q01 / q99, which the tiny
    base's action range covers, leave out no more rows than the SFT range check allows (one row of ~30 is 3 %)."""
    pytest.importorskip("mani_skill")
    from data_collection.rt1_grid import main as collect

    root = tmp_path_factory.mktemp("demos")
    dirs = {
        "pick_can_top_down": [
            "--task",
            "pick_can",
            "--expert_style",
            "top_down",
            "--grid",
            "2x2",
            "--successes_per_point",
            "1",
        ],
        "pick_can_angled": [
            "--task",
            "pick_can",
            "--expert_style",
            "angled",
            "--grid",
            "2x2",
            "--successes_per_point",
            "2",
        ],
        "open_drawer": ["--task", "open_drawer", "--grid", "1x2", "--successes_per_point", "1"],
    }
    out = {}
    for name, args in dirs.items():
        out[name] = root / name
        assert collect([*args, *COMMON, "--out", str(out[name])]) == 0
    return out


def pretrain_small_base(demo_dirs: dict[str, Path], out: Path, policy_config: Path) -> Path:
    """A base policy folder of `policy_config`'s shape, behaviour-cloned for 12 updates on top-down pick-can +
    drawer, its action range covering the angled pick-can demonstrations too (what the SFT tests fine-tune on)."""
    from tests.robot.conftest import QUICK
    from vla_razor.robot.stages import load_robot_config, run_pretrain

    cfg = load_robot_config(
        None,
        {
            **QUICK,
            "pretrain.policy_config": policy_config,
            "pretrain.out": out,
            "pretrain.optim.max_steps": 12,
            "pretrain.optim.batch_size": 8,
            "pretrain.datasets": [demo_dirs["pick_can_top_down"], demo_dirs["open_drawer"]],
            "pretrain.norm_stats_datasets": [
                demo_dirs["pick_can_top_down"],
                demo_dirs["open_drawer"],
                demo_dirs["pick_can_angled"],
            ],
        },
    )
    return run_pretrain(cfg).policy_dir


@pytest.fixture(scope="session")
def tiny_base(demo_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base policy folder: the tiny OpenVLA (configs/policy_tiny.yaml) of pretrain_small_base."""
    return pretrain_small_base(demo_dirs, tmp_path_factory.mktemp("base"), REPO / "configs/policy_tiny.yaml")


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a byte-level tokenizer: a real Hugging Face checkpoint (the LLM and sweep tests)."""
    from vla_razor.llm.models import make_tiny_llm

    return make_tiny_llm(tmp_path_factory.mktemp("tiny_llm") / "model")


def kill_after_checkpoint(args: list[str], state: Path, step: int) -> None:
    """Runs `vla-razor ARGS` in its own process group and kills it (SIGKILL) once its training state at `state`
    has reached update `step`, as a crash would: the test then resumes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vla_razor.training_state import read_training_state_meta

    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_razor.cli.main", *args],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and read_training_state_meta(state)["step"] >= step:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
