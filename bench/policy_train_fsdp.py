"""OpenVLA SFT steps sharded over N processes with FSDP2: per-GPU samples/s, MFU per GPU and peak memory per GPU.

    torchrun --nproc-per-node 8 bench/policy_train_fsdp.py --config 7b --batches 8 16 32 --steps 3
    torchrun --nproc-per-node 8 bench/policy_train_fsdp.py --config 7b --master-dtype float32 --checkpointing off
    torchrun --nproc-per-node 2 bench/policy_train_fsdp.py --config tiny --device cpu --out /tmp/multigpu.json

The step is bench/policy_train_step.py's full fine-tuning step (random weights, the 7 action tokens' cross-entropy
over the 256 bins, backward, grad-norm clipping, AdamW fused on CUDA), on the model sharded by the trainer's own
`vla_razor.distributed.shard_model` (one unit per ViT block and Llama layer), the global norm clipped over the
gradient shards as the trainer does. `--batches` are per-GPU batches (the global batch is N times larger); every
rank times the same steps, and the reported time is the slowest rank's. MFU per GPU = 3 x forward FLOPs per
sample x per-GPU samples/s / the matmul rate measured on that GPU in the compute dtype (as policy_train_step.py;
recomputation not counted). `--master-dtype float32` keeps float32 weights and AdamW moments and computes in
bfloat16 (FSDP mixed precision, gradients reduced in float32); the default keeps everything in the compute dtype,
as the one-GPU bench. Results merge into --out under "<config>/world-<N>/master-<dtype>/checkpointing-<c>/reshard-<r>@<device>".
On CUDA NCCL's NVLink multicast is off (NCCL_NVLS_ENABLE=0, set before the process group starts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_actions_per_s import bench_config, device_label, make_batch, matmul_rate, prefill_flops, sync  # noqa: E402
from policy_train_step import enable_checkpointing  # noqa: E402

from vla_razor import core  # noqa: E402
from vla_razor.distributed import Distributed, shard_model  # noqa: E402
from vla_razor.distributed import clip_sharded_grad_norm  # noqa: E402
from vla_razor.runs import update_json  # noqa: E402


def all_reduce(value: float, ctx: Distributed, op: str) -> float:
    """max / sum of a number over the ranks (the slowest rank's time, the largest peak memory)."""
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny, 7b, or a YAML path (configs/policy_*.yaml)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[4], help="per-GPU batch sizes, smallest first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per batch size (after 2 untimed)")
    parser.add_argument(
        "--master-dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="dtype of the weights and AdamW moments (default: the compute dtype, bfloat16 on CUDA, "
        "float32 on the CPU); float32 with bfloat16 compute is FSDP mixed precision",
    )
    parser.add_argument(
        "--checkpointing",
        choices=("on", "llm", "off"),
        default="on",
        help="activation recomputation: everywhere, the Llama layers only, or none",
    )
    parser.add_argument("--reshard-after-forward", choices=("on", "off"), default="on")
    parser.add_argument("--prompt-tokens", type=int, default=20, help="prompt length (the 7B has no tokenizer here)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--out", default="docs/results/perf/multigpu.json")
    args = parser.parse_args()
    if sorted(args.batches) != args.batches or min(args.batches) < 1:
        parser.error("--batches: positive, smallest first (an out-of-memory batch ends the sweep)")

    torch.set_num_threads(args.threads)
    ctx = Distributed.from_env(args.device)
    ctx.init()  # on CUDA: NCCL_NVLS_ENABLE=0 unless set, then NCCL
    kind = ctx.device_type  # "cuda" / "cpu": the helpers' device (the current GPU after set_device)
    cfg = bench_config(args.config, kind)
    from vla_razor.policies.openvla.modeling_openvla import DTYPES, build_model
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import ByteTokenizer, OpenVLAProcessor

    compute = cfg.dtype
    master = args.master_dtype or compute
    cfg.dtype = master
    mixed = master != compute
    if mixed and (master, compute) != ("float32", "bfloat16"):
        parser.error(
            f"--master-dtype {master}: mixed precision keeps float32 masters for bfloat16 compute; the "
            f"compute dtype here is {compute} (float32 on the CPU)"
        )
    if mixed and not ctx.enabled:
        parser.error(
            f"--master-dtype {master} with {compute} compute is FSDP mixed precision: run under torchrun "
            "with --nproc-per-node 2 or more (one process trains in one dtype: policy_train_step.py)"
        )
    started = time.perf_counter()
    torch.manual_seed(0)  # the same full weights on every rank before each keeps its shard
    model = build_model(cfg, device=ctx.device)
    enable_checkpointing(model, args.checkpointing)
    model.train()
    policy = OpenVLAPolicy(model, OpenVLAProcessor(cfg, ByteTokenizer()))
    probe = make_batch(policy, 1, args.prompt_tokens, kind)  # FLOPs are read off the unsharded model
    forward = prefill_flops(model, probe["input_ids"].shape[1] + policy.action_dim)["total"]
    parameters = sum(p.numel() for p in model.parameters())
    if ctx.enabled:
        shard_model(
            model,
            ctx.mesh,
            param_dtype=DTYPES[compute] if mixed else None,
            reduce_dtype=torch.float32 if mixed else None,
            reshard_after_forward=args.reshard_after_forward == "on",
        )
    if kind == "cuda":
        torch.cuda.empty_cache()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=kind == "cuda")
    build_s = time.perf_counter() - started
    rate = matmul_rate(kind, DTYPES[compute], 8192 if kind == "cuda" else 1024)
    vocab_ids = policy.vocab_ids
    rows = []
    for batch_size in args.batches:
        batch = make_batch(policy, batch_size, args.prompt_tokens, kind)
        g = torch.Generator().manual_seed(batch_size)
        bins = torch.randint(0, vocab_ids.numel(), (batch_size, policy.action_dim), generator=g).to(ctx.device)
        targets = vocab_ids[bins]
        seq = batch["input_ids"].shape[1] + policy.action_dim
        if kind == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step() -> float:
            logits = policy.action_logits(batch, targets)
            loss = core.sft_loss(logits, bins, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if ctx.enabled:
                clip_sharded_grad_norm(params, 1.0)
            else:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            return float(loss.detach())

        out_of_memory = 0.0
        try:
            for _ in range(2):
                step()
            sync(kind)
            ctx.barrier()
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = step()
            sync(kind)
            elapsed = time.perf_counter() - start
        except torch.OutOfMemoryError:  # every rank holds the same shapes: they run out at the same step
            out_of_memory, elapsed, loss = 1.0, float("nan"), float("nan")
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        if all_reduce(out_of_memory, ctx, "max"):
            rows.append({"batch": batch_size, "out_of_memory": True})
            if ctx.is_main:
                print(json.dumps(rows[-1]), flush=True)
            break
        elapsed = all_reduce(elapsed, ctx, "max")
        samples_per_s = batch_size * args.steps / elapsed
        gpu_rate = all_reduce(rate, ctx, "sum") / ctx.world_size
        row = {
            "batch_per_gpu": batch_size,
            "global_batch": batch_size * ctx.world_size,
            "sequence_tokens": seq + model.num_patches,
            "samples_per_s_per_gpu": samples_per_s,
            "samples_per_s": samples_per_s * ctx.world_size,
            "ms_per_step": 1000 * elapsed / args.steps,
            "forward_gflops_per_sample": forward / 1e9,
            "mfu_per_gpu": 3.0 * forward * samples_per_s / gpu_rate,
            "loss": loss,
        }
        if kind == "cuda":
            row["peak_memory_gib_per_gpu"] = all_reduce(torch.cuda.max_memory_allocated() / 2**30, ctx, "max")
        rows.append(row)
        if ctx.is_main:
            print(json.dumps(row), flush=True)
    result = {
        "device": device_label(kind, args.threads),
        "world_size": ctx.world_size,
        "config": args.config,
        "compute_dtype": compute,
        "master_dtype": master,
        "checkpointing": args.checkpointing,
        "reshard_after_forward": args.reshard_after_forward,
        "parameters": parameters,
        "sharding": "FSDP2 (vla_razor.distributed.shard_model)" if ctx.enabled else "none (one process)",
        "optimizer": "AdamW (fused on CUDA), moments in the master dtype",
        "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE") if kind == "cuda" else None,
        "matmul_tflops_measured_per_gpu": all_reduce(rate, ctx, "sum") / ctx.world_size / 1e12,
        "build_seconds": build_s,
        "torch": torch.__version__,
        "rows": rows,
    }
    if ctx.is_main:
        key = (
            f"{args.config}/world-{ctx.world_size}/master-{master}/checkpointing-{args.checkpointing}"
            f"/reshard-{args.reshard_after_forward}@{kind}"
        )
        update_json(Path(args.out), key, result)
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
    ctx.barrier()
    ctx.teardown()


if __name__ == "__main__":
    main()
