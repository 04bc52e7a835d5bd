"""Issue #19 diagnosis (docs/results/robot/learning_curve/README.md, session 8): why does the normalized baseline blow up the tiny base? One iteration of rollouts, then updates under variants,
KL to the base measured after every update on fixed rows (teacher-forced on the rollout's sampled tokens)."""
import copy, json, sys, time
from pathlib import Path
import numpy as np
import torch

from envs.rollout import ParallelRollout
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.robot import rl
from vla_razor.robot.config import RLConfig

def main():
    global base_inputs, base_logits, kl_rows
    torch.set_num_threads(2)
    BASE = "assets/base_policy_embedded"
    cache = Path("/tmp/diag_rows.pt")
    policy = OpenVLAPolicy.from_pretrained(BASE, device="cpu")
    if not cache.exists():
        r = RLConfig()
        r.grid = [5, 4]
        r.placements = "uniform"
        points = rl.iteration_points(r, 0, 0)
        specs, groups = rl.iteration_specs(points, 5, 0, 0, 16)
        actor = rl.PolicyActor(policy, temperature=1.0, seed=7, record=True)
        t0 = time.time()
        with ParallelRollout(2, camera_size=112) as ro:
            results = ro.run(actor, specs, record=True)
        print("rollouts", time.time() - t0, "s", flush=True)
        succ = np.array([x.success for x in results], np.float32)
        torch.save({"results": [(x.steps, x.trajectory.images[: x.steps], x.trajectory.instruction, x.success) for x in results],
                    "tokens": actor.tokens, "groups": groups}, cache)
    d = torch.load(cache, weights_only=False)


    class R:  # what rows_from_rollouts reads
        def __init__(self, steps, images, instr, success):
            self.steps, self.success = steps, success
            self.trajectory = type("T", (), {"images": images, "instruction": instr})()


    results = [R(*x) for x in d["results"]]
    succ = np.array([x.success for x in results], np.float32)
    groups = d["groups"]
    print("success", succ.mean(), "episodes", len(results), "steps", sum(x.steps for x in results))

    # fixed KL rows: every 4th step of every episode
    all_rows = rl.rows_from_rollouts(results, d["tokens"], np.ones(len(results), np.float32))
    kl_idx = np.arange(0, len(all_rows), 4)[:256]
    kl_rows = rl.subset(all_rows, kl_idx)
    with torch.no_grad():
        base_inputs = policy.encode(kl_rows.images, kl_rows.instructions)
        base_logits = policy.action_logits(base_inputs, kl_rows.tokens)


    def kl_now(p):
        with torch.no_grad():
            lg = p.action_logits(base_inputs, kl_rows.tokens)
            lp0, lp = torch.log_softmax(base_logits, -1), torch.log_softmax(lg, -1)
            kl = (lp0.exp() * (lp0 - lp)).sum(-1).sum(-1)  # per row, summed over 7 dims
            ent = -(lp.exp() * lp).sum(-1).mean()
        return float(kl.mean()), float(ent)


    variants = sys.argv[1].split(",") if len(sys.argv) > 1 else ["one_zero", "norm", "norm_ln", "neg_only", "pos_only"]
    lr = float(sys.argv[2]) if len(sys.argv) > 2 else 3e-5
    out = {}
    for v in variants:
        if v.startswith("one_zero"):
            adv = rl.episode_advantages(succ, groups, "group", "one_zero"); ln = False
        else:
            adv = rl.episode_advantages(succ, groups, "group", "normalized"); ln = not v.startswith("norm_ln") and v != "norm" or v.startswith("norm_ln")
            if v.startswith("neg_only"): adv = np.minimum(adv, 0)
            if v == "pos_only": adv = np.maximum(adv, 0)
        rows = rl.rows_from_rollouts(results, d["tokens"], adv, ln)
        clip = 0.2 if v.endswith("_clip") else None
        if clip: rows.old_logprobs = rl.rollout_logprobs(policy, rows, 64)
        p = copy.deepcopy(policy)
        r = RLConfig()
        r.optim.lr = lr
        opt = rl.make_optimizer(p, r)
        p.model.train()
        curve = [kl_now(p)]
        for b in rl.split_batches(len(rows), 64, np.random.default_rng(0)):
            rl.policy_gradient_step(p, opt, rl.subset(rows, b), lr, 1.0, clip_ratio=clip)
            curve.append(kl_now(p))
        out[v] = curve
        print(v, "rows", len(rows), "sumA", round(float(rows.advantages.sum()), 1),
              "KL/ent by update", [(round(k, 2), round(e, 2)) for k, e in curve[:: max(1, len(curve) // 8)]], curve[-1], flush=True)
    json.dump(out, open(f"/tmp/diag_{lr}.json", "w"))


if __name__ == "__main__":
    main()
