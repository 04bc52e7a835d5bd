"""vla_razor/robot/rl.py + stages.run_rl: the REINFORCE update on real episodes, and RL end to end from the CLI
(rollouts on the simulator workers, updates, resume, evaluation, summary.json)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_collection.dataset import DemoDataset
from envs.rollout import EpisodeResult, EpisodeSpec, Trajectory
from vla_razor.cli.main import main as cli
from vla_razor.policies.openvla import OpenVLAPolicy
from vla_razor.robot import stages
from vla_razor.robot.rl import episode_advantages, policy_gradient_step, rows_from_rollouts
from vla_razor.runs import load_tensors, read_jsonl
from vla_razor.training_state import read_training_state_meta

from tests.robot.conftest import QUICK, REPO


def test_advantages_normalize_within_each_grid_point() -> None:
    a = episode_advantages(np.array([1, 0, 1, 1, 0, 0]), np.array([0, 0, 1, 1, 2, 2]), "group")
    np.testing.assert_allclose(a, [1, -1, 0, 0, 0, 0], atol=1e-5)  # all-success / all-failure groups: no signal
    b = episode_advantages(np.array([1, 0, 0, 0]), np.array([0, 0, 1, 1]), "batch")
    np.testing.assert_allclose(b, np.array([3, -1, -1, -1]) / np.sqrt(3), atol=1e-5)


def test_one_zero_advantage_keeps_only_successes() -> None:
    a = episode_advantages(np.array([1, 0, 1, 1, 0, 0]), np.array([0, 0, 1, 1, 2, 2]), "group", "one_zero")
    np.testing.assert_array_equal(a, [1, 0, 1, 1, 0, 0])  # every success, even where its whole group succeeded


def test_length_normalize_weighs_every_episode_the_same(demo_dirs: dict[str, Path]) -> None:
    """A 6-step success and a 2-step failure cut from one real episode: per step both weigh 1 by default, so the
    failure's total is a third of the success's; length-normalized, both totals are 4 (the mean length) and
    the rows' weights still average 1."""
    episode = DemoDataset(demo_dirs["pick_can_top_down"]).load(0)
    assert len(episode.actions) >= 6
    trajectory = Trajectory(episode.images, episode.proprio, episode.actions, episode.rewards, episode.instruction)
    spec = EpisodeSpec("pick_can", 0)
    results = [EpisodeResult(spec, True, 6, trajectory), EpisodeResult(spec, False, 2, trajectory)]
    tokens = {(e, t): torch.zeros(7, dtype=torch.long) for e in range(2) for t in range(6)}
    advantages = np.array([1.0, -1.0])
    plain = rows_from_rollouts(results, tokens, advantages)
    normalized = rows_from_rollouts(results, tokens, advantages, length_normalize=True)
    assert len(plain) == len(normalized) == 8
    totals = (
        [float(rows.advantages[:6].sum()) for rows in (plain, normalized)],
        [float(rows.advantages[6:].sum()) for rows in (plain, normalized)],
    )
    np.testing.assert_allclose(totals, [[6.0, 4.0], [-2.0, -4.0]], rtol=1e-6)
    np.testing.assert_allclose(normalized.advantages.abs().mean(), 1.0, rtol=1e-6)


def test_reinforce_step_raises_the_logprob_of_successful_episodes(demo_dirs: dict[str, Path], tiny_base: Path) -> None:
    """Two real pick-can episodes at one grid point, one a success (the expert's, tokenized) and one a failure
    (the policy's own samples on the same frames): after one update the success is likelier, the failure less."""
    torch.manual_seed(0)
    policy = OpenVLAPolicy.from_pretrained(tiny_base)
    episode = DemoDataset(demo_dirs["pick_can_top_down"]).load(0)
    inputs = policy.encode(list(episode.images), [episode.instruction] * len(episode.actions))
    with torch.no_grad():
        sampled = policy.sample(inputs, temperature=1.0, generator=torch.Generator().manual_seed(0)).tokens
    expert = policy.encode_actions(episode.actions)
    trajectory = Trajectory(episode.images, episode.proprio, episode.actions, episode.rewards, episode.instruction)
    spec = EpisodeSpec("pick_can", 0)
    results = [
        EpisodeResult(spec, True, len(episode.actions), trajectory),
        EpisodeResult(spec, False, len(episode.actions), trajectory),
    ]
    tokens = {(e, t): toks[t] for e, toks in enumerate((expert, sampled)) for t in range(len(episode.actions))}
    rows = rows_from_rollouts(results, tokens, episode_advantages(np.array([1.0, 0.0]), np.array([0, 0]), "group"))
    assert len(rows) == 2 * len(episode.actions)
    assert sorted(set(np.round(rows.advantages.numpy(), 4))) == [-1.0, 1.0]

    def logp(tokens: torch.Tensor) -> float:
        with torch.no_grad():
            return float(policy.token_logprobs(inputs, tokens).sum())

    before = logp(expert), logp(sampled)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-4, weight_decay=0.0)
    metrics = policy_gradient_step(policy, optimizer, rows, lr=1e-4, max_grad_norm=1.0)
    after = logp(expert), logp(sampled)
    assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
    assert after[0] > before[0] and after[1] < before[1]


def test_sampled_rollouts_do_not_depend_on_worker_timing(tiny_base: Path) -> None:
    """The RL actor samples each row from its own (seed, episode, step) noise: 2 worker processes (batches set by
    timing: a reset does not hold up the others) and the in-process worker give the same tokens and outcomes."""
    from envs.rollout import ParallelRollout
    from vla_razor.robot.evaluate import new_task_specs
    from vla_razor.robot.rl import PolicyActor

    policy = OpenVLAPolicy.from_pretrained(tiny_base)
    specs = [dataclasses.replace(s, max_steps=m) for s, m in zip(new_task_specs("pick_can", 4, seed=5), [5, 2, 6, 3])]
    outcomes, tokens = [], []
    for workers in (0, 2):
        actor = PolicyActor(policy, temperature=1.0, seed=11, record=True)
        with ParallelRollout(workers, camera_size=32) as rollout:
            outcomes.append([(r.success, r.steps) for r in rollout.run(actor, specs)])
        tokens.append(actor.tokens)
    assert outcomes[0] == outcomes[1] and [s for _, s in outcomes[0]] == [5, 2, 6, 3]
    assert tokens[0].keys() == tokens[1].keys() and len(tokens[0]) == 16
    assert all(torch.equal(tokens[0][k], tokens[1][k]) for k in tokens[0])
    other = PolicyActor(policy, temperature=1.0, seed=12, record=True)
    with ParallelRollout(0, camera_size=32) as rollout:
        rollout.run(other, specs)
    assert any(not torch.equal(other.tokens[k], tokens[0][k]) for k in tokens[0]), "the seed must matter"


def test_rl_end_to_end_then_resume(tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    args = [
        "robot",
        "rl",
        "--base",
        str(tiny_base),
        "--runs_dir",
        str(runs),
        "--experiment",
        "e",
        "--rl.grid",
        "[2, 2]",
        "--rl.episodes_per_point",
        "2",
        "--rl.max_steps",
        "4",
        "--rl.optim.batch_size",
        "4",
        "--rl.optim.lr",
        "1e-4",
        "--rl.advantage",
        "normalized",
    ]
    for key, value in QUICK.items():
        if not key.startswith("pretrain."):
            args += [f"--{key}", json.dumps(value) if not isinstance(value, (str, Path)) else str(value)]
    assert cli([*args, "--rl.iterations", "1"]) == 0
    out = capsys.readouterr().out
    assert "rl: 1 iterations" in out and "forward KL" in out and "already finished" not in out
    assert cli([*args, "--rl.iterations", "1"]) == 0 and "rl: already finished" in capsys.readouterr().out
    run = runs / "e" / "runs" / "rl_lr0.0001_bs4_k2_s0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == "rl" and summary["step"] == 1 and summary["hparams"]["episodes_per_point"] == 2
    train = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train"]
    metrics = {r["name"]: r["value"] for r in train}
    assert metrics["env_steps"] == 2 * 2 * 2 * 4  # 4 grid points x 2 episodes x 4 steps (none succeeds this soon)
    assert 0.0 <= metrics["rollout_success"] <= 1.0 and metrics["env_steps_per_s"] > 0
    assert metrics["rollout_s"] > 0 and metrics["update_s"] >= 0  # where an iteration's time goes
    assert "peak_gpu_memory_gib" not in metrics  # a CPU run has no GPU memory to report
    assert (run / "policy" / "config.json").is_file()

    # kill -9 after the first of two iterations, rerun: it continues at iteration 2 and logs each iteration once,
    # with the same rollouts (seeds and sampling are functions of the iteration) as an uninterrupted run
    reference = [*args, "--rl.iterations", "2", "--rl.run_name", "reference", "--rl.eval_every", "1"]
    assert cli(reference) == 0
    points = read_jsonl(runs / "e" / "runs" / "reference" / "points.jsonl")  # rl.eval_every: a mid-training point
    assert [(p["method"], p["step"]) for p in points] == [("rl", 1)] and "forward_kl" in points[0]["predictors"]
    killed = [*args, "--rl.iterations", "2", "--rl.run_name", "killed"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_razor.cli.main", *killed],
        cwd=Path(__file__).parents[2],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = runs / "e" / "runs" / "killed" / "checkpoints" / "training_state.safetensors"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not state.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, f"RL ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_training_state_meta(state)["iteration"] == 1

    # a damaged training state: a clear error naming the file, and the evaluator the stage made is closed
    saved = state.read_bytes()
    state.write_bytes(b"not a safetensors file")
    closed: list[bool] = []
    real_close = stages.SharedEvaluator.close

    def spy_close(self: stages.SharedEvaluator) -> None:
        closed.append(self._evaluator is not None)
        real_close(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages.SharedEvaluator, "close", spy_close)
        assert cli(killed) != 0
    assert "training_state.safetensors: not a readable training state" in capsys.readouterr().err
    assert closed == [True], "run_rl closes the evaluator it made when the run fails"
    state.write_bytes(saved)

    capsys.readouterr()
    assert cli(killed) == 0
    assert "rl: 2 iterations" in (out := capsys.readouterr().out) and "resumed from iteration 1" in out
    assert not state.exists(), "a finished run's training state is deleted (keep_training_state: false)"

    def rows(name: str) -> list[tuple]:
        return [
            (r["step"], r["name"], r["value"])
            for r in read_jsonl(runs / "e" / "runs" / name / "metrics.jsonl")
            if r["name"] in ("rollout_success", "env_steps", "rows_with_signal", "updates")
        ]

    assert rows("killed") == rows("reference") and len(rows("reference")) == 8


QUICK_PATCH = "[[-0.15, -0.05], [-0.08, 0.08]]"
"""configs/robot_quick.yaml's region."""


@pytest.mark.parametrize(
    "base_name, region", [("base_policy_embedded", "null"), ("base_policy_fast", QUICK_PATCH)], ids=["embedded", "fast"]
)
def test_rl_on_the_committed_base_updates_the_policy(tmp_path: Path, base_name: str, region: str) -> None:
    """RL from the CLI on a committed base (112 px, the real simulator) at the 2 x 2 grid (the region's corners),
    2 episodes each, cut at 24 steps: some of the base's sampled episodes succeed there (about 15 steps each; the
    base's pick-can is partial over the whole region). With 1-0 advantages every success's steps are rows, so the
    iteration makes updates (`rl.optim.epochs` 2: two passes over its rows), and the saved policy is no longer the
    base. Both bases: the committed experiments' (autoregressive; the whole can region, whose corners it picks at)
    and the fast one (parallel decoding; the quickstart's patch, whose corners it picks at)."""
    base = REPO / "assets" / base_name
    runs = tmp_path / "runs"
    args = [
        "robot",
        "rl",
        "--region",
        region,  # where the base's sampled episodes succeed at the 2 x 2 grid's corners
        "--base",
        str(base),
        "--runs_dir",
        str(runs),
        "--experiment",
        "e",
        "--rl.grid",
        "[2, 2]",
        "--rl.episodes_per_point",
        "2",
        "--rl.max_steps",
        "24",
        "--rl.iterations",
        "1",
        "--rl.advantage",
        "one_zero",
        "--rl.optim.batch_size",
        "16",
        "--rl.optim.lr",
        "1e-4",
        "--rl.optim.epochs",
        "2",
    ]
    for key, value in {**QUICK, "camera_size": 112}.items():
        if not key.startswith("pretrain."):
            args += [f"--{key}", json.dumps(value) if not isinstance(value, (str, Path)) else str(value)]
    assert cli(args) == 0
    run = runs / "e" / "runs" / "rl_lr0.0001_bs16_ep2_k2_10_s0"
    metrics = {r["name"]: r["value"] for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train"}
    assert metrics["rollout_success"] > 0 and metrics["rows_with_signal"] > 0 and metrics["updates"] > 0
    assert metrics["updates"] == 2 * -(-metrics["rows_with_signal"] // 16)  # 2 epochs x ceil(rows / batch size)
    trained = load_tensors(run / "policy" / "model-00001-of-00001.safetensors")
    original = load_tensors(base / "model-00001-of-00001.safetensors")
    assert trained.keys() == original.keys()
    changed = [k for k in original if not torch.equal(trained[k], original[k])]
    assert changed, "the REINFORCE updates left every weight of the base as it was"

    # its learning curve, from the run folder: the iteration's rollout success, and the base and final evaluations
    assert cli(["curve", str(run), "--out", str(tmp_path / "curve"), "--command-note", "pytest"]) == 0
    curve = json.loads((tmp_path / "curve" / "learning_curve.json").read_text())
    assert curve["command"] == "pytest" and curve["method"] == "rl"
    assert [row["step"] for row in curve["train"]] == [1]
    assert curve["train"][0]["rollout_success"] == metrics["rollout_success"]
    summary = json.loads((run / "summary.json").read_text())
    assert [e["model"] for e in curve["evaluations"]] == ["base", "final"]
    assert curve["evaluations"][1]["new_task"] == summary["new_task"]
    assert curve["evaluations"][0]["new_task"] == summary["base"]["new_task"]
    assert (tmp_path / "curve" / "learning_curve.png").stat().st_size > 10_000


def test_iteration_points_fixed_grid_or_fresh_uniform_placements() -> None:
    """`placements: grid` rolls out at the same grid every iteration (the paper); `uniform` draws as many placements
    over the region afresh each iteration, the same for the same (seed, iteration), so a resumed run repeats them."""
    from envs.grids import default_region, grid_points
    from vla_razor.robot.config import RLConfig
    from vla_razor.robot.rl import iteration_points

    def xy(*args: object) -> np.ndarray:
        points = iteration_points(*args)
        assert all(task == "pick_can" for task, _ in points)
        return np.stack([p for _, p in points])

    grid = RLConfig(grid=[3, 4])
    np.testing.assert_array_equal(xy(grid, 0, 0), grid_points("pick_can", "embedded", (3, 4)))
    np.testing.assert_array_equal(xy(grid, 0, 5), xy(grid, 1, 0))
    uniform = dataclasses.replace(grid, placements="uniform")
    first = xy(uniform, 0, 0)
    (x0, x1), (y0, y1) = default_region("pick_can", "embedded")
    assert first.shape == (12, 2)
    assert np.all((first[:, 0] >= x0) & (first[:, 0] <= x1) & (first[:, 1] >= y0) & (first[:, 1] <= y1))
    np.testing.assert_array_equal(first, xy(uniform, 0, 0))
    assert not np.allclose(first, xy(uniform, 0, 1))
    assert not np.allclose(first, xy(uniform, 1, 0))


def test_iteration_points_keep_to_the_configured_region() -> None:
    """With `region` (a part of the can's region), the grid spans that part, corners included, and uniform
    placements are drawn inside it: the same stream as over the whole region, scaled into it."""
    from envs.grids import default_region
    from vla_razor.robot.config import RLConfig
    from vla_razor.robot.rl import iteration_points

    region = ((-0.15, -0.05), (-0.08, 0.08))
    grid = np.stack([p for _, p in iteration_points(RLConfig(grid=[2, 3]), 0, 0, "embedded", ("pick_can",), region)])
    np.testing.assert_allclose(
        grid, [[-0.15, -0.08], [-0.15, 0.0], [-0.15, 0.08], [-0.05, -0.08], [-0.05, 0.0], [-0.05, 0.08]]
    )
    uniform = RLConfig(grid=[10, 10], placements="uniform")
    inside = np.stack([p for _, p in iteration_points(uniform, 0, 3, "embedded", ("pick_can",), region)])
    whole = np.stack([p for _, p in iteration_points(uniform, 0, 3)])
    (x0, x1), (y0, y1) = region
    assert np.all((inside[:, 0] >= x0) & (inside[:, 0] <= x1) & (inside[:, 1] >= y0) & (inside[:, 1] <= y1))
    (wx0, wx1), (wy0, wy1) = default_region("pick_can", "embedded")
    np.testing.assert_allclose((inside[:, 0] - x0) / (x1 - x0), (whole[:, 0] - wx0) / (wx1 - wx0))
    np.testing.assert_allclose((inside[:, 1] - y0) / (y1 - y0), (whole[:, 1] - wy0) / (wy1 - wy0))


def test_a_suite_iteration_groups_episodes_by_task_and_init_state() -> None:
    """RL on two LIBERO tasks at two stored init states, k = 2: four (task, init state) points, each point's
    episodes one baseline group, each episode its own task (and so its own instruction)."""
    from envs.libero import init_state_index
    from envs.tasks import get_task
    from vla_razor.robot.config import RLConfig
    from vla_razor.robot.rl import iteration_points, iteration_specs

    tasks = ("libero_spatial_0", "libero_spatial_1")
    points = iteration_points(RLConfig(grid=[2, 1]), 0, 0, "libero", tasks)
    specs, groups = iteration_specs(points, 2, seed=0, iteration=0, max_steps=5, backend="libero")
    assert [s.task for s in specs] == [tasks[0]] * 4 + [tasks[1]] * 4
    assert [init_state_index(s.options, s.seed) for s in specs] == [0, 0, 49, 49, 0, 0, 49, 49]
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2, 3, 3])
    assert len({s.seed for s in specs}) == 8  # k episodes of a point differ (their env seeds)
    assert get_task(specs[0].task).instruction != get_task(specs[4].task).instruction
    successes = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    np.testing.assert_allclose(
        episode_advantages(successes, groups, "group"), [1, -1, 0, 0, -1, 1, 0, 0], atol=1e-5
    )  # the same init state of the other task is another group
    np.testing.assert_array_equal(episode_advantages(successes, groups, "group", "one_zero"), successes)
    # rows carry each episode's own instruction (the trajectory's, from its task's env)
    results = [
        EpisodeResult(
            s,
            bool(ok),
            1,
            Trajectory(
                np.zeros((1, 8, 8, 3), np.uint8),
                np.zeros((1, 8), np.float32),
                np.zeros((1, 7), np.float32),
                np.zeros(1, np.float32),
                get_task(s.task).instruction,
            ),
        )
        for s, ok in zip(specs, successes)
    ]
    tokens = {(e, 0): torch.zeros(7, dtype=torch.long) for e in range(8)}
    rows = rows_from_rollouts(results, tokens, episode_advantages(successes, groups, "group"))
    assert rows.instructions == [get_task(t).instruction for t in (tasks[0], tasks[0], tasks[1], tasks[1])]


def test_settings_rl_cannot_honour_are_refused() -> None:
    """Optimizer fields RL would otherwise ignore are refused before a run folder exists."""
    from vla_razor.config import ConfigError
    from vla_razor.optim import OptimConfig
    from vla_razor.robot.config import RLConfig
    from vla_razor.robot.rl import check_settings

    check_settings(RLConfig(optim=OptimConfig(epochs=3)))
    for optim, field in ((OptimConfig(epochs=0), "rl.optim.epochs"), (OptimConfig(max_steps=5), "rl.optim.max_steps")):
        with pytest.raises(ConfigError, match=field):
            check_settings(RLConfig(optim=optim))
    with pytest.raises(ConfigError, match="rl.temperature.*untempered"):
        check_settings(RLConfig(temperature=0.7))


def test_kl_penalty_is_the_reverse_kl_per_action_dimension(demo_dirs: dict[str, Path], tiny_base: Path) -> None:
    """kl_coef weighs the reverse KL per dimension along the rows' own actions: the whole-action chain-rule terms
    divided by the 7 dimensions (evaluations report the whole-action scale)."""
    import copy

    from vla_razor.policies.openvla.kl import chain_rule_kl_terms
    from vla_razor.robot.rl import Rows

    torch.manual_seed(0)
    base = OpenVLAPolicy.from_pretrained(tiny_base)
    policy = copy.deepcopy(base)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    episode = DemoDataset(demo_dirs["pick_can_top_down"]).load(0)
    images, instructions = list(episode.images), [episode.instruction] * len(episode.actions)
    inputs = policy.encode(images, instructions)
    with torch.no_grad():
        tokens = policy.sample(inputs, temperature=1.0, generator=torch.Generator().manual_seed(0)).tokens.cpu()
        whole = chain_rule_kl_terms(policy.action_logits(inputs, tokens), base.action_logits(inputs, tokens))
    rows = Rows(images, instructions, tokens, torch.ones(len(images)))
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=0.0)
    metrics = policy_gradient_step(policy, optimizer, rows, lr=0.0, max_grad_norm=1.0, base=base, kl_coef=0.5)
    assert metrics["reverse_kl_per_dim"] == pytest.approx(float(whole.mean()) / 7, rel=1e-4)
    assert metrics["reverse_kl_per_dim"] > 0


def test_clip_ratio_is_reinforce_at_the_rollout_policy_and_bounds_how_far_rows_push(
    demo_dirs: dict[str, Path], tiny_base: Path
) -> None:
    """rl.clip_ratio: at the rollout policy (ratio 1) the clipped surrogate's gradient is REINFORCE's; rows with
    negative advantages pushed again and again stop pushing once their tokens' ratios leave [1 - c, 1 + c], where
    plain REINFORCE keeps pushing their log-probs down."""
    import copy

    from vla_razor.robot.rl import Rows, rollout_logprobs

    torch.manual_seed(0)
    base = OpenVLAPolicy.from_pretrained(tiny_base)
    episode = DemoDataset(demo_dirs["pick_can_top_down"]).load(0)
    images, instructions = list(episode.images), [episode.instruction] * len(episode.actions)
    inputs = base.encode(images, instructions)
    with torch.no_grad():
        tokens = base.sample(inputs, temperature=1.0, generator=torch.Generator().manual_seed(0)).tokens.cpu()
    advantages = torch.tensor([1.0 if i % 2 else -1.0 for i in range(len(images))])

    def grads(clip: float | None) -> list[torch.Tensor]:
        policy = copy.deepcopy(base)
        rows = Rows(images, instructions, tokens, advantages)
        if clip is not None:
            rows.old_logprobs = rollout_logprobs(policy, rows, batch_size=3)
        optimizer = torch.optim.AdamW(policy.model.parameters(), lr=0.0)
        policy_gradient_step(policy, optimizer, rows, lr=0.0, max_grad_norm=1e9, clip_ratio=clip)
        return [p.grad.clone() for p in policy.model.parameters() if p.grad is not None]

    for plain, clipped in zip(grads(None), grads(0.2)):
        torch.testing.assert_close(clipped, plain, rtol=1e-4, atol=1e-7)

    def pushed_down(clip: float | None) -> tuple[float, dict[str, float]]:
        policy = copy.deepcopy(base)
        rows = Rows(images, instructions, tokens, -torch.ones(len(images)))
        rows.old_logprobs = rollout_logprobs(policy, rows, batch_size=8)
        optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3, weight_decay=0.0)
        for _ in range(25):
            metrics = policy_gradient_step(policy, optimizer, rows, lr=1e-3, max_grad_norm=1.0, clip_ratio=clip)
        with torch.no_grad():
            now = policy.token_logprobs(policy.encode(images, instructions), tokens.to(policy.device))
        return float((rows.old_logprobs - now.cpu()).mean()), metrics

    plain_drop, _ = pushed_down(None)
    clipped_drop, metrics = pushed_down(0.2)
    assert metrics["clipped_fraction"] > 0.5
    assert 0 < clipped_drop < plain_drop / 3, (clipped_drop, plain_drop)


def test_fresh_scene_false_makes_training_resets_plain_and_gives_the_evaluator_its_rebuilds_back(
    tiny_base: Path,
) -> None:
    """`rl.fresh_scene: false` (plain resets in training rollouts, where resets weigh on short episodes): the
    simulator keeps its scene across the iteration's episodes, while the default rebuilds it at every reset; either
    way the rollout the evaluator shares is left rebuilding (evaluations stay bitwise independent of worker counts)."""
    from envs.rollout import ParallelRollout
    from vla_razor.robot.config import RLConfig
    from vla_razor.robot.rl import iteration_points, make_optimizer, reinforce_iteration

    policy = OpenVLAPolicy.from_pretrained(tiny_base)
    with ParallelRollout(0, camera_size=32) as rollout:
        rollout.start(["pick_can"])
        env = rollout._workers[0].runner.envs["pick_can"].unwrapped
        for fresh in (False, True):
            r = RLConfig(grid=[1, 2], episodes_per_point=1, iterations=1, max_steps=2, fresh_scene=fresh)
            scene = env.scene
            metrics, _ = reinforce_iteration(
                policy, make_optimizer(policy, r), rollout, iteration_points(r, 0, 0), r, seed=0, iteration=0, update=0
            )
            assert metrics["env_steps"] == 4 and rollout.fresh_scene is True
            assert (env.scene is scene) is not fresh, f"fresh_scene={fresh}: the scene was {'not ' * fresh}rebuilt"
