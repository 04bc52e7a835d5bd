"""How far one iteration's REINFORCE rows move the policy, by kind of row (issue #19; docs/results/robot/
learning_curve/README.md, session 8): one iteration of rollouts from the base (cached), then one pass of updates
per variant, each from the base, with the forward KL to the base (summed over the 7 tokens, teacher-forced on the
rollouts' own actions, 256 fixed rows) and the mean per-token entropy after every update.

Variants: one_zero, norm (normalized, every step once), norm_ln (+ length_normalize), neg_only / pos_only (its
negative / positive rows), and any of them with a `_clip` suffix (rl.clip_ratio 0.2).
Usage: MS_ASSET_DIR=.cache/maniskill .venv/bin/python scripts/rl_update_drift.py [VARIANTS,...] [LR]
A script, not a sweep config: a one-off analysis of one iteration's update rows, with no run folders.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

BASE = "assets/base_policy_embedded"
CACHE = Path("/tmp/diag_rows.pt")


def rollouts(policy, rl):
    """One iteration at 20 fresh uniform placements x 5 episodes, 16-step episodes, T = 1 (cached in CACHE)."""
    from envs.rollout import ParallelRollout
    from vla_razor.robot.config import RLConfig

    if not CACHE.exists():
        r = RLConfig()
        r.grid, r.placements = [5, 4], "uniform"
        specs, groups = rl.iteration_specs(rl.iteration_points(r, 0, 0), 5, 0, 0, 16)
        actor = rl.PolicyActor(policy, temperature=1.0, seed=7, record=True)
        started = time.time()
        with ParallelRollout(2, camera_size=112) as rollout:
            results = rollout.run(actor, specs, record=True)
        print(f"rollouts: {time.time() - started:.0f} s", flush=True)
        episodes = [(x.steps, x.trajectory.images[: x.steps], x.trajectory.instruction, x.success) for x in results]
        torch.save({"results": episodes, "tokens": actor.tokens, "groups": groups}, CACHE)
    saved = torch.load(CACHE, weights_only=False)
    results = [
        SimpleNamespace(
            steps=steps, success=success, trajectory=SimpleNamespace(images=images, instruction=instruction)
        )
        for steps, images, instruction, success in saved["results"]
    ]
    return results, saved["tokens"], saved["groups"]


def advantages_of(variant: str, successes: np.ndarray, groups: np.ndarray, rl) -> tuple[np.ndarray, bool]:
    name = variant.removesuffix("_clip")
    if name == "one_zero":
        return rl.episode_advantages(successes, groups, "group", "one_zero"), False
    adv = rl.episode_advantages(successes, groups, "group", "normalized")
    if name == "neg_only":
        adv = np.minimum(adv, 0)
    elif name == "pos_only":
        adv = np.maximum(adv, 0)
    return adv, name != "norm"


def main() -> None:
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.robot import rl
    from vla_razor.robot.config import RLConfig

    torch.set_num_threads(2)
    variants = sys.argv[1].split(",") if len(sys.argv) > 1 else ["one_zero", "norm", "norm_ln", "neg_only", "pos_only"]
    lr = float(sys.argv[2]) if len(sys.argv) > 2 else 3e-5
    base = OpenVLAPolicy.from_pretrained(BASE, device="cpu")
    results, tokens, groups = rollouts(base, rl)
    successes = np.array([x.success for x in results], np.float32)
    print(f"success {successes.mean():.2f}, {len(results)} episodes, {sum(x.steps for x in results)} steps")

    everything = rl.rows_from_rollouts(results, tokens, np.ones(len(results), np.float32))
    kl_rows = rl.subset(everything, np.arange(0, len(everything), 4)[:256])
    with torch.no_grad():
        inputs = base.encode(kl_rows.images, kl_rows.instructions)
        base_logp = torch.log_softmax(base.action_logits(inputs, kl_rows.tokens), -1)

    def kl_and_entropy(policy) -> tuple[float, float]:
        with torch.no_grad():
            logp = torch.log_softmax(policy.action_logits(inputs, kl_rows.tokens), -1)
            kl = (base_logp.exp() * (base_logp - logp)).sum(-1).sum(-1).mean()
            entropy = -(logp.exp() * logp).sum(-1).mean()
        return float(kl), float(entropy)

    curves = {}
    for variant in variants:
        adv, length_normalize = advantages_of(variant, successes, groups, rl)
        rows = rl.rows_from_rollouts(results, tokens, adv, length_normalize)
        clip = 0.2 if variant.endswith("_clip") else None
        if clip is not None:
            rows.old_logprobs = rl.rollout_logprobs(base, rows, 64)
        policy = copy.deepcopy(base)
        config = RLConfig()
        config.optim.lr = lr
        optimizer = rl.make_optimizer(policy, config)
        policy.model.train()
        curve = [kl_and_entropy(policy)]
        for batch in rl.split_batches(len(rows), 64, np.random.default_rng(0)):
            rl.policy_gradient_step(policy, optimizer, rl.subset(rows, batch), lr, 1.0, clip_ratio=clip)
            curve.append(kl_and_entropy(policy))
        curves[variant] = curve
        print(
            f"{variant}: {len(rows)} rows, sum of advantages {float(rows.advantages.sum()):.1f}, KL / entropy by "
            f"update {[(round(k, 2), round(e, 2)) for k, e in curve]}",
            flush=True,
        )
    Path(f"/tmp/rl_update_drift_{lr:g}.json").write_text(json.dumps(curves))


if __name__ == "__main__":
    main()
