"""Actions per second of the OpenVLA policy (greedy, batched, KV-cached) and its fraction of the FLOP ceiling.

    python bench/policy_actions_per_s.py                                   # tiny config on CPU
    python bench/policy_actions_per_s.py --config 7b --device cuda --batches 1 16 64 --engines eager graph

An action is 7 tokens: one prefill over [BOS, patches, prompt] (plus the ViTs and projector), then 6 cached
decode steps. Timed: ``policy.sample`` on prepared inputs (image preprocessing excluded), per generation engine
(eager transformers, the static-K/V decoder, its CUDA-graph replay), and the ViTs + projector alone. The FLOP
fraction is prefill FLOPs per action x actions/s / the bf16 (or fp32 on CPU) matmul rate measured in the
same process; decode FLOPs are reported beside it. Results merge into --out under the device's name.
``--fused on off`` times the static / graph engines with and without q/k/v and gate/up as single products
(rows carry ``fused_projections``); ``fused_sync_us`` is the per-call staleness check of the fused copies.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vla_razor.config import load_config
from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.runs import update_json


def vit_flops(embed: int, depth_used: int, mlp: int, tokens: int, patch_pixels: int, patches: int) -> float:
    per_block = 2 * tokens * (4 * embed * embed + 2 * embed * mlp) + 4 * tokens * tokens * embed
    return depth_used * per_block + 2 * patches * patch_pixels * embed


def prefill_flops(model, seq_len: int) -> dict[str, float]:
    """Matmul FLOPs of one row's prefill (ViTs to the penultimate block, projector, Llama, last-position head)."""
    out: dict[str, float] = {}
    vits = [model.vision_backbone.featurizer]
    if model.vision_backbone.use_fused:
        vits.append(model.vision_backbone.fused_featurizer)
    vision = 0.0
    for vit in vits:
        patches = vit.patch_embed.num_patches
        tokens = patches + getattr(vit, "num_prefix_tokens", 0)
        mlp = vit.blocks[0].mlp.fc1.out_features
        kernel = vit.patch_embed.proj.weight[0].numel()
        vision += vit_flops(vit.embed_dim, len(vit.blocks) - 1, mlp, tokens, kernel, patches)
    out["vision"] = vision
    patches = model.num_patches
    out["projector"] = (
        2.0 * patches * sum(m.weight.numel() for m in model.projector.modules() if isinstance(m, torch.nn.Linear))
    )
    cfg = model.language_model.config
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = h * cfg.num_key_value_heads // cfg.num_attention_heads
    s = seq_len + patches
    per_layer = 2 * s * (2 * h * h + 2 * h * kv + 3 * h * inter) + 2 * s * s * h  # causal attention: half of 4 s^2 h
    out["language_model"] = layers * per_layer + 2 * h * cfg.vocab_size
    out["total"] = out["vision"] + out["projector"] + out["language_model"]
    decode = 0.0
    for step in range(1, 7):
        ctx = s + step
        decode += layers * (2 * (2 * h * h + 2 * h * kv + 3 * h * inter) + 4 * ctx * h) + 2 * h * cfg.vocab_size
    out["decode_total"] = decode
    return out


def matmul_rate(device: str, dtype: torch.dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10 if device == "cuda" else 3
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def bench_config(name: str, device: str) -> OpenVLAConfig:
    """The OpenVLA config a bench runs: tiny, 7b, or a YAML file; float32 on the CPU."""
    if name == "tiny":
        cfg = OpenVLAConfig.tiny()
    elif name == "7b":
        cfg = OpenVLAConfig.openvla_7b()
    else:
        cfg = load_config(OpenVLAConfig, name)
    if device == "cpu":
        cfg.dtype = "float32"
    return cfg


def device_label(device: str, threads: int) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {threads} threads)"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_batch(policy, batch: int, prompt_tokens: int, device: str) -> dict[str, torch.Tensor]:
    cfg = policy.config
    g = torch.Generator().manual_seed(0)
    if cfg.tokenizer == "bytes":
        images = [
            torch.randint(0, 256, (cfg.image_sizes[0], cfg.image_sizes[0], 3), dtype=torch.uint8) for _ in range(batch)
        ]
        return policy.encode(images, ["pick coke can"] * batch)
    ids = torch.randint(3, cfg.vocab_end - cfg.n_action_bins, (batch, prompt_tokens), generator=g)
    ids[:, 0] = 1
    ids[:, -1] = cfg.action_prefix_token_ids[-1] if cfg.action_prefix_token_ids else ids[:, -1]
    size = cfg.image_sizes[0]
    pixels = torch.randn(batch, 3 * cfg.num_backbones, size, size, generator=g)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": pixels.to(device),
    }


def time_calls(fn, repeats: int, device: str) -> float:
    """Seconds per call, after two untimed calls (graph capture, allocator warm-up)."""
    for _ in range(2):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def profile_table(fn, device: str, rows: int = 15) -> str:
    """The kernels (or CPU ops) that took the most time in one call."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny, 7b, or a YAML path (configs/policy_*.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["auto"],
        choices=("auto", "eager", "static", "graph"),
        help="generation engines to time (vla_razor/policies/openvla/generation.py)",
    )
    parser.add_argument(
        "--eager-batches",
        type=int,
        nargs="*",
        default=None,
        help="batch sizes at which the eager engine runs (default: all of --batches)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=20, help="prompt length when no tokenizer is at hand (7B)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: oversubscription on a loaded 2-core box costs 20x)"
    )
    parser.add_argument(
        "--fused",
        nargs="+",
        default=["on"],
        choices=("on", "off"),
        help="static / graph engines: q/k/v and gate/up as single products over concatenated weights (on) or not",
    )
    parser.add_argument("--profile-batch", type=int, default=0, help="print the top kernels of one call at this batch")
    parser.add_argument("--out", default="docs/results/policy/bench.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cfg = bench_config(args.config, args.device)

    from vla_razor.policies.openvla.generation import generate_action_tokens, release_decoders, resolve_engine
    from vla_razor.policies.openvla.modeling_openvla import DTYPES, build_model
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import ByteTokenizer, OpenVLAProcessor
    from vla_razor.policies.static_decoder import fused_projections, parameter_signature

    started = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(cfg, device=args.device).eval()
    policy = OpenVLAPolicy(model, OpenVLAProcessor(cfg, ByteTokenizer()))
    build_s = time.perf_counter() - started
    rate = matmul_rate(args.device, DTYPES[cfg.dtype], 8192 if args.device == "cuda" else 1024)
    device_name = device_label(args.device, args.threads)
    engines = [resolve_engine(e, torch.device(args.device)) for e in args.engines]
    settings = [(e, f == "on") for e in engines for f in dict.fromkeys(args.fused) if e != "eager"]
    settings = [(e, False) for e in engines if e == "eager"] + settings  # eager runs transformers' own layers
    rows = []
    for batch_size in args.batches:
        batch = make_batch(policy, batch_size, args.prompt_tokens, args.device)
        seq = batch["input_ids"].shape[1]
        flops = prefill_flops(model, seq)
        reference = None
        with torch.no_grad():
            vision_s = time_calls(lambda: model.embed_images(batch["pixel_values"]), args.repeats, args.device)
        for engine, fused in settings:
            if engine == "eager" and args.eager_batches is not None and batch_size not in args.eager_batches:
                continue
            sync(args.device)
            first = time.perf_counter()
            try:
                sample = policy.sample(batch, temperature=0, engine=engine, fused_projections=fused)
            except Exception as err:  # noqa: BLE001 (a bench reports a failing engine and times the others)
                rows.append(
                    {"engine": engine, "fused_projections": fused, "batch": batch_size, "error": repr(err)[:500]}
                )
                print(json.dumps(rows[-1]), flush=True)
                continue
            sync(args.device)
            first_call_s = time.perf_counter() - first  # with graph capture and compilation
            if reference is None:
                reference = (f"{engine}, fused {'on' if fused else 'off'}", sample)
            with torch.no_grad():  # this engine's logits against a teacher-forced transformers forward on its tokens
                forced = policy.action_logits(batch, sample.tokens)
            elapsed = time_calls(
                lambda: policy.sample(batch, temperature=0, engine=engine, fused_projections=fused),
                args.repeats,
                args.device,
            )
            prefill_s = time_calls(
                lambda: generate_action_tokens(
                    model,
                    batch["input_ids"],
                    batch["attention_mask"],
                    batch["pixel_values"],
                    policy.vocab_ids,
                    action_dim=1,
                    engine=engine,
                    fused_projections=fused,
                ),
                args.repeats,
                args.device,
            )
            actions_per_s = batch_size / elapsed
            row = {
                "engine": engine,
                "fused_projections": fused,
                "batch": batch_size,
                "prompt_tokens": seq,
                "sequence_tokens": seq + model.num_patches,
                "actions_per_s": actions_per_s,
                "ms_per_batch": 1000 * elapsed,
                "vision_ms_per_batch": 1000 * vision_s,
                "prefill_ms_per_batch": 1000 * prefill_s,
                "first_call_s": first_call_s,
                "prefill_gflops_per_action": flops["total"] / 1e9,
                "decode_gflops_per_action": flops["decode_total"] / 1e9,
                "fraction_of_flop_ceiling": flops["total"] * actions_per_s / rate,
                "fraction_incl_decode": (flops["total"] + flops["decode_total"]) * actions_per_s / rate,
                # greedy tokens of this engine against the first engine timed at this batch (bf16 rounding may
                # flip near-ties; the CPU tests hold the engines to float32 agreement)
                "tokens_equal_to": f"{reference[0]}",
                "token_agreement": float((sample.tokens == reference[1].tokens).float().mean()),
                "max_logit_diff": float((sample.logits - reference[1].logits).abs().max()),
                "teacher_forced_max_diff": float((sample.logits - forced).abs().max()),
                "logit_scale": float(forced.std()),
            }
            if args.device == "cuda":
                row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
            print(json.dumps(row), flush=True)
            # each setting's K/V buffers and CUDA graphs go before the next: at a 7B's batch 128 a decoder holds
            # ~20 GB, and the cache keeps several per model (session 13: out of memory without this)
            release_decoders(model)
            if args.device == "cuda":
                torch.cuda.empty_cache()
        if batch_size == args.profile_batch:
            print(
                profile_table(
                    lambda: policy.sample(
                        batch, temperature=0, engine=settings[-1][0], fused_projections=settings[-1][1]
                    ),
                    args.device,
                ),
                flush=True,
            )
    signature = parameter_signature(model)  # the decoders' existing check of replaced parameters, every call
    fused = fused_projections(model.language_model)
    fused.sync(signature)
    sync_s = time_calls(lambda: fused.sync(signature), 200, "cpu") if any(f for _, f in settings) else None
    result = {
        "device": device_name,
        "fused_sync_us": None if sync_s is None else 1e6 * sync_s,  # the fused copies' check, weights unchanged
        "parameter_signature_us": 1e6 * time_calls(lambda: parameter_signature(model), 200, "cpu"),
        "config": args.config,
        "dtype": cfg.dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "matmul_tflops_measured": rate / 1e12,
        "build_seconds": build_s,
        "torch": torch.__version__,
        "rows": rows,
    }
    update_json(Path(args.out), f"{args.config}@{args.device}", result)
    print(
        f"{'engine':>7} {'fused':>5} {'batch':>5} {'actions/s':>10} {'ms/batch':>9} {'vision':>7} {'prefill':>8} {'ceiling':>8} "
        f"{'agree':>6} {'tf diff':>8} {'first s':>8}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:>7} {r['fused_projections']!s:>5} {r['batch']:>5} failed: {r['error'][:100]}")
            continue
        print(
            f"{r['engine']:>7} {r['fused_projections']!s:>5} {r['batch']:>5} {r['actions_per_s']:>10.1f} {r['ms_per_batch']:>9.1f} "
            f"{r['vision_ms_per_batch']:>7.1f} {r['prefill_ms_per_batch']:>8.1f} {r['fraction_of_flop_ceiling']:>8.3f} "
            f"{r['token_agreement']:>6.2f} {r['teacher_forced_max_diff']:>8.4f} {r['first_call_s']:>8.1f}"
        )


if __name__ == "__main__":
    main()
