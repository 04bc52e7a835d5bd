"""LoRA in `robot sft` and `robot rl` (lora.enabled): only the adapters train and are checkpointed, a killed run
resumes to the same weights as an uninterrupted one, and the saved policy is the plain openvla layout with the
adapters merged into the weights they adapt."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from vla_razor.cli.main import main as cli
from vla_razor.policies.openvla import OpenVLAPolicy
from vla_razor.runs import read_jsonl

from tests.conftest import kill_after_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = [
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
    "1",
    "--eval.probe_episodes",
    "1",
    "--eval.kl_episodes",
    "1",
    "--eval.kl_frames_per_episode",
    "2",
    "--eval.max_steps",
    "4",
]


def sft_args(demo_dirs: dict[str, Path], base: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "robot",
        "sft",
        *TINY,
        "--runs_dir",
        str(runs),
        "--experiment",
        "lora",
        "--base",
        str(base),
        "--sft.datasets",
        json.dumps([str(demo_dirs["pick_can_angled"])]),
        "--sft.optim.batch_size",
        "8",
        "--sft.optim.lr",
        "1e-3",
        "--sft.optim.max_steps",
        "6",
        "--checkpoint_every",
        "2",
        "--lora.enabled",
        "true",
        "--lora.r",
        "4",
        "--lora.alpha",
        "8",
        *extra,
    ]


def weights(policy_dir: Path) -> dict[str, torch.Tensor]:
    return dict(OpenVLAPolicy.from_pretrained(policy_dir).model.state_dict())


def test_lora_sft_trains_adapters_only_resumes_and_saves_merged(
    demo_dirs: dict[str, Path], tiny_base: Path, tmp_path: Path
) -> None:
    assert cli(sft_args(demo_dirs, tiny_base, tmp_path / "reference", "--keep_training_state", "true")) == 0
    run = tmp_path / "reference" / "lora" / "runs" / "sft_lr0.001_bs8_ep1_lora4_s0"
    with safe_open(run / "checkpoints" / "training_state.safetensors", "pt") as f:
        trained = [k for k in f.keys() if k.startswith("model.")]
    assert trained and all("lora_" in k for k in trained)  # the checkpoint holds the adapters, not the 4.4M weights

    base, tuned = weights(tiny_base), weights(run / "policy")
    assert set(tuned) == set(base)  # plain layout: no adapter tensors left
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert any(k.endswith("q_proj.weight") for k in changed)  # the adapters were merged into what they adapt
    assert not any("embed_tokens" in k or "lm_head" in k or "norm" in k for k in changed)  # nothing else trained

    # killed after its first checkpoint, then the same command again: the weights of the uninterrupted run
    args = sft_args(demo_dirs, tiny_base, tmp_path / "killed")
    state = tmp_path / "killed" / "lora" / "runs" / run.name / "checkpoints" / "training_state.safetensors"
    kill_after_checkpoint(args, state, step=2)
    assert cli(args) == 0
    resumed = weights(state.parents[1] / "policy")
    assert all(torch.equal(resumed[k], tuned[k]) for k in tuned)


def test_lora_rl_iteration_updates_adapters_only(tmp_path: Path) -> None:
    """One RL iteration with LoRA on the committed base (112 px; as test_rl's CLI test, whose 2 x 2 corners give
    the base's sampled episodes some successes): updates are made, and the saved policy differs from the base in
    adapted layers only, merged."""
    base = REPO / "assets" / "base_policy_embedded"
    args = [
        "robot",
        "rl",
        "--region",
        "null",  # the whole can region (the default config narrows it), whose corners the base picks at
        *TINY,
        "--camera_size",
        "112",
        "--runs_dir",
        str(tmp_path),
        "--experiment",
        "lora",
        "--base",
        str(base),
        "--rl.grid",
        "[2, 2]",
        "--rl.episodes_per_point",
        "2",
        "--rl.iterations",
        "1",
        "--rl.max_steps",
        "24",
        "--rl.advantage",
        "one_zero",
        "--rl.optim.batch_size",
        "16",
        "--rl.optim.lr",
        "1e-3",
        "--lora.enabled",
        "true",
        "--lora.r",
        "4",
    ]
    assert cli(args) == 0
    run = tmp_path / "lora" / "runs" / "rl_lr0.001_bs16_k2_10_lora4_s0"
    metrics = {r["name"]: r["value"] for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "train"}
    assert metrics["updates"] > 0
    original, tuned = weights(base), weights(run / "policy")
    assert set(tuned) == set(original)
    changed = {k for k in original if not torch.equal(original[k], tuned[k])}
    assert changed and all(k.endswith(".weight") and ("proj" in k or "fc" in k or "qkv" in k) for k in changed), sorted(
        changed
    )[:5]
