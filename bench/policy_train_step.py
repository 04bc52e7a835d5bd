"""One OpenVLA training step (SFT on the 7 action tokens): samples/s, MFU and peak memory, full or LoRA.

    python bench/policy_train_step.py                                         # tiny config on CPU
    python bench/policy_train_step.py --config 7b --device cuda --mode full --batches 8 16   # H200: full FT
    python bench/policy_train_step.py --config 7b --device cuda --mode lora --batches 16 32  # H100: LoRA r 32

A step: the ViTs, projector and Llama forward over [BOS, patches, prompt, 7 action tokens], cross-entropy of
the action tokens over the 256 bins, backward, grad-norm clipping, AdamW (fused on CUDA). Weights random
(the released checkpoint's compute). MFU = model FLOPs per sample x samples/s / the bf16 matmul rate
measured in the same process, with model FLOPs = 3 x forward FLOPs for full fine-tuning ("6N": forward +
both backward matmuls) and 2 x forward for LoRA ("4N": no weight gradients of the frozen layers);
activation recomputation is not counted, as usual for MFU. Forward FLOPs include the vision backbones.
``--master-weights float32`` trains with float32 master weights and AdamW moments over bf16 parameters
(vla_razor.optim.MasterWeightAdamW, `optim.master_weights: float32`), as users train; ``none`` keeps AdamW's states in
the parameters' dtype (fused on CUDA). ``--dtype bfloat16`` runs the tiny config in bf16 on a CPU.
Results merge into --out under "<config>/<mode>/checkpointing-<c>[/master-<m>]@<device>".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_actions_per_s import bench_config, device_label, make_batch, matmul_rate, prefill_flops, sync  # noqa: E402

from vla_razor import core  # noqa: E402
from vla_razor.runs import update_json  # noqa: E402


def enable_checkpointing(model: torch.nn.Module, where: str = "on") -> None:
    """Recompute activations in the backward pass: "on" the Llama's layers and each ViT's blocks, "llm" the
    Llama's layers only (the ViTs' activations are ~1/5 of the total), "off" none."""
    if where == "off":
        return
    model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if where == "llm":
        return
    backbone = model.vision_backbone
    for vit in (backbone.featurizer, getattr(backbone, "fused_featurizer", None)):
        if vit is not None and hasattr(vit, "set_grad_checkpointing"):
            vit.set_grad_checkpointing(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny, 7b, or a YAML path (configs/policy_*.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=("full", "lora"), default="full")
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[4])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per batch size (after 2 untimed)")
    parser.add_argument(
        "--checkpointing",
        choices=("on", "llm", "off"),
        default="on",
        help="activation recomputation: everywhere, the Llama layers only, or none",
    )
    parser.add_argument(
        "--master-weights",
        choices=("none", "float32"),
        default="none",
        help="none: AdamW states in the parameters' dtype; float32: float32 master weights and moments",
    )
    parser.add_argument("--dtype", default=None, help="parameter dtype (default: the config's; float32 on a CPU)")
    parser.add_argument("--prompt-tokens", type=int, default=20, help="prompt length (the 7B has no tokenizer here)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="docs/results/perf/train_step.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = bench_config(args.config, args.device)
    if args.dtype is not None:
        cfg.dtype = args.dtype
    from vla_razor.optim import OptimConfig, make_adamw
    from vla_razor.policies.openvla.modeling_openvla import DTYPES, build_model
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import ByteTokenizer, OpenVLAProcessor

    started = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(cfg, device=args.device)
    if args.mode == "lora":
        from vla_razor.lora import LoraOptions
        from vla_razor.lora import apply_lora

        model = apply_lora(
            model, LoraOptions(enabled=True, r=args.lora_rank, alpha=16, dropout=0.0, target_modules="all-linear")
        )
        model.to(args.device)
    enable_checkpointing(model, args.checkpointing)
    model.train()
    policy = OpenVLAPolicy(model, OpenVLAProcessor(cfg, ByteTokenizer()))
    params = [p for p in model.parameters() if p.requires_grad]
    if args.master_weights == "float32":
        optimizer = make_adamw(params, OptimConfig(lr=1e-5, weight_decay=0.0, master_weights="float32"))
    else:
        optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=args.device == "cuda")
    build_s = time.perf_counter() - started
    rate = matmul_rate(args.device, DTYPES[cfg.dtype], 8192 if args.device == "cuda" else 1024)
    device_name = device_label(args.device, args.threads)
    vocab_ids = policy.vocab_ids
    rows = []
    for batch_size in args.batches:
        batch = make_batch(policy, batch_size, args.prompt_tokens, args.device)
        g = torch.Generator().manual_seed(batch_size)
        bins = torch.randint(0, vocab_ids.numel(), (batch_size, policy.action_dim), generator=g).to(args.device)
        targets = vocab_ids[bins]
        seq = batch["input_ids"].shape[1] + policy.action_dim
        forward = prefill_flops(model, seq)["total"]
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step() -> float:
            logits = policy.action_logits(batch, targets)
            loss = core.sft_loss(logits, bins, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            return float(loss.detach())

        try:
            for _ in range(2):
                step()
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = step()
            sync(args.device)
        except torch.OutOfMemoryError:
            rows.append({"batch": batch_size, "out_of_memory": True})
            print(json.dumps(rows[-1]))
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            continue
        elapsed = time.perf_counter() - start
        samples_per_s = batch_size * args.steps / elapsed
        factor = 3.0 if args.mode == "full" else 2.0
        row = {
            "batch": batch_size,
            "sequence_tokens": seq + model.num_patches,
            "samples_per_s": samples_per_s,
            "ms_per_step": 1000 * elapsed / args.steps,
            "forward_gflops_per_sample": forward / 1e9,
            "mfu": factor * forward * samples_per_s / rate,
            "loss": loss,
        }
        if args.device == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        rows.append(row)
        print(json.dumps(row))
    result = {
        "device": device_name,
        "config": args.config,
        "mode": args.mode,
        "dtype": cfg.dtype,
        "checkpointing": args.checkpointing,
        "lora_rank": args.lora_rank if args.mode == "lora" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
        "master_weights": args.master_weights,
        "optimizer": (
            "MasterWeightAdamW: float32 master weights and moments, bf16 parameters"
            if args.master_weights == "float32"
            else "AdamW (fused on CUDA), states in the parameters' dtype"
        ),
        "matmul_tflops_measured": rate / 1e12,
        "build_seconds": build_s,
        "torch": torch.__version__,
        "rows": rows,
    }
    master = "" if args.master_weights == "none" else f"/master-{args.master_weights}"
    key = f"{args.config}/{args.mode}/checkpointing-{args.checkpointing}{master}@{args.device}"
    update_json(Path(args.out), key, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
