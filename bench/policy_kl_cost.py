"""What the exact action-token KL to the base costs, relative to one forward of the policy.

    python bench/policy_kl_cost.py                                        # tiny config on CPU
    python bench/policy_kl_cost.py --config 7b --device cuda --batches 32 64

Timed on the same batch (random images and prompts, actions sampled from the base as teacher-forced prefixes,
as the forward KL's chain rule takes them):
  forward      one teacher-forced `action_logits` of the fine-tuned policy (no gradients);
  kl_stored    the forward KL of `vla_razor.robot.evaluate.kl_to_base` with the base's logits stored in the frame
               set (how every live KL check runs: the base never changes, so its logits are computed once; a full
               evaluation adds the reverse KL, which samples the evaluated policy);
  kl_both      the same KL recomputing the base's logits each time (two forwards).
`kl_overhead` = kl_stored / forward (issue #9's target: <= 1.1). Results merge into --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_actions_per_s import bench_config, device_label, make_batch, time_calls  # noqa: E402

from vla_razor.policies.openvla.kl import chain_rule_kl_terms  # noqa: E402
from vla_razor.runs import update_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny, 7b, or a YAML path (configs/policy_*.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/results/perf/kl_cost.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = bench_config(args.config, args.device)
    from vla_razor.policies.openvla.modeling_openvla import build_model
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import ByteTokenizer, OpenVLAProcessor

    torch.manual_seed(0)
    base = OpenVLAPolicy(build_model(cfg, device=args.device).eval(), OpenVLAProcessor(cfg, ByteTokenizer()))
    policy = OpenVLAPolicy(copy.deepcopy(base.model), base.processor)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    device_name = device_label(args.device, args.threads)
    rows = []
    for batch_size in args.batches:
        batch = make_batch(base, batch_size, args.prompt_tokens, args.device)
        with torch.no_grad():
            tokens = base.sample(batch, temperature=1.0, generator=torch.Generator(args.device).manual_seed(0)).tokens
            stored = base.action_logits(batch, tokens).float()

        @torch.no_grad()
        def forward() -> None:
            policy.action_logits(batch, tokens)

        @torch.no_grad()
        def kl_stored() -> None:
            chain_rule_kl_terms(stored, policy.action_logits(batch, tokens)).mean()

        @torch.no_grad()
        def kl_both() -> None:
            chain_rule_kl_terms(base.action_logits(batch, tokens), policy.action_logits(batch, tokens)).mean()

        t_forward, t_stored, t_both = (time_calls(f, args.repeats, args.device) for f in (forward, kl_stored, kl_both))
        row = {
            "batch": batch_size,
            "forward_ms": 1000 * t_forward,
            "kl_stored_ms": 1000 * t_stored,
            "kl_both_ms": 1000 * t_both,
            "kl_overhead": t_stored / t_forward,
            "kl_overhead_recomputing_base": t_both / t_forward,
            "stored_base_logits_kib_per_frame": float(np.prod(stored.shape[1:])) * 4 / 1024,
        }
        rows.append(row)
        print(json.dumps(row))
    result = {
        "device": device_name,
        "config": args.config,
        "dtype": cfg.dtype,
        "torch": torch.__version__,
        "rows": rows,
    }
    update_json(Path(args.out), f"{args.config}@{args.device}", result)


if __name__ == "__main__":
    main()
