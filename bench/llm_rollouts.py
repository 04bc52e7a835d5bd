"""LLM rollouts: completions/s and tokens/s of our engine (vla_razor/llm/engine.py) vs transformers' generate.

    python bench/llm_rollouts.py                                     # SmolLM2-135M-shaped random model, CPU
    python bench/llm_rollouts.py --model smollm2-135m-shape --device cuda --dtype bfloat16 \\
        --prompts 64 --group-size 8 --batch-size 512 --max-new-tokens 256    # an H200

Both engines get the same prompts (random token ids of `--prompt-len` lengths, left-padded in batches of
`--batch-size`, as vla_razor.llm.sampling batches them) and make the same number of tokens: no stop token is
set, so every completion is `--max-new-tokens` long and tokens/s compares like with like. Sampling at
`--temperature` over the full vocabulary, as GRPO rollouts. Rows: transformers at float32 (the baseline issue #25
holds our engine to: >= 10x), transformers at `--dtype`, ours at `--dtype`; `speedup_vs_float32_generate` and
`speedup_vs_generate` beside ours. One untimed call per engine first (CUDA-graph capture, torch.compile), then
`--repeats` rounds of one timed call per engine, interleaved (the fastest of each is reported; `load_average` is
the machine's when the bench ended: on a shared CPU the figures move with it). `tokens_equal`: whether our tokens equal transformers' from the same seed (expected at
float32; in bfloat16 different kernels round differently and samples drift apart).
`--model`: tiny (make_tiny_llm's size), smollm2-135m-shape or qwen2.5-3b-shape (random weights of those shapes:
the compute of the real ones), or anything `LLMConfig.model` takes (the embedded smollm2-135m-instruct, a folder).
Prints a table; results merge into --out under "<model>@<device>", with the command that made them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vla_razor.hf_imports import import_transformers
from vla_razor.llm.engine import static_generate
from vla_razor.llm.models import DTYPES, load_causal_lm, resolve_model
from vla_razor.runs import atomic_write_json

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        family="llama",
        vocab_size=259,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "smollm2-135m-shape": dict(
        family="llama",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    "qwen2.5-3b-shape": dict(
        family="qwen2",
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}
"""Config.json sizes of the public checkpoints (SmolLM2-135M-Instruct, Qwen2.5-3B-Instruct)."""


def make_model(name: str, device: str) -> Any:
    """The model in float32 on `device`, with no stop token of its own (the bench sets the lengths)."""
    transformers = import_transformers()
    if name in SHAPES:
        sizes = dict(SHAPES[name])
        family = sizes.pop("family")
        torch.manual_seed(0)
        config_cls = transformers.LlamaConfig if family == "llama" else transformers.Qwen2Config
        model_cls = transformers.LlamaForCausalLM if family == "llama" else transformers.Qwen2ForCausalLM
        config = config_cls(**sizes, max_position_embeddings=8192, pad_token_id=0, bos_token_id=None, eos_token_id=None)
        with torch.device(device):
            model = model_cls(config)
    else:
        model = load_causal_lm(resolve_model(name, Path(".cache/llm")), torch.device(device))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def left_padded(prompts: list[list[int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def run_engine(
    engine: str,
    model: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    new_tokens: int,
    temperature: float,
    seed: int,
) -> list[torch.Tensor]:
    """The completion tokens [B, new_tokens] of every batch, sampled from `seed`."""
    torch.manual_seed(seed)
    out = []
    for ids, mask in batches:
        if engine == "static":
            made = static_generate(model, ids, mask, new_tokens, stop_ids=(), pad_id=0, temperature=temperature)
            out.append(made.tokens)
        else:
            full = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                pad_token_id=0,
                eos_token_id=None,
            )
            out.append(full[:, ids.shape[1] :])
    return out


def timed_once(
    engine: str, dtype: str, models: dict[str, Any], batches, args: argparse.Namespace
) -> tuple[float, list[torch.Tensor]]:
    model = models[dtype]
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    tokens = run_engine(engine, model, batches, args.max_new_tokens, args.temperature, args.seed)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def row(engine: str, dtype: str, seconds: list[float], tokens: list[torch.Tensor], new_tokens: int) -> dict[str, Any]:
    if any(t.shape[1] != new_tokens for t in tokens):
        raise SystemExit(f"{engine}: completions shorter than --max-new-tokens; the comparison needs equal lengths")
    completions, made, best = sum(t.shape[0] for t in tokens), sum(t.numel() for t in tokens), min(seconds)
    return {
        "engine": engine,
        "dtype": dtype,
        "completions": completions,
        "tokens": made,
        "seconds": round(best, 4),
        "seconds_all": [round(s, 4) for s in seconds],
        "completions_per_s": round(completions / best, 2),
        "tokens_per_s": round(made / best, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="smollm2-135m-shape",
        help=f"{', '.join(SHAPES)} (random weights), or an LLMConfig.model (folder, embedded name)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="dtype of our engine and of the second transformers row (the baseline is float32)",
    )
    parser.add_argument("--prompts", type=int, default=4, help="distinct prompts (GRPO: prompts per generation)")
    parser.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    parser.add_argument(
        "--prompt-len",
        type=int,
        nargs=2,
        default=[24, 64],
        metavar=("MIN", "MAX"),
        help="prompt lengths drawn uniformly in [MIN, MAX]",
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per engine (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/results/perf/llm_rollouts.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = make_model(args.model, args.device)
    rng = torch.Generator().manual_seed(args.seed)
    vocab = model.config.vocab_size
    lo, hi = args.prompt_len
    distinct = [
        torch.randint(1, vocab, (int(torch.randint(lo, hi + 1, (1,), generator=rng)),), generator=rng).tolist()
        for _ in range(args.prompts)
    ]
    prompts = [p for p in distinct for _ in range(args.group_size)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # as sampling.generate batches them
    batches = [
        left_padded([prompts[i] for i in order[s : s + args.batch_size]], args.device)
        for s in range(0, len(order), args.batch_size)
    ]

    settings = [("transformers", "float32"), ("transformers", args.dtype), ("static", args.dtype)]
    settings = list(dict.fromkeys(settings))
    tokens: dict[tuple[str, str], list[torch.Tensor]] = {}
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in settings}
    # one copy per dtype, made once: converting in place would give new weight tensors, which our engine answers
    # with new buffers and graphs (as it must when a model's parameters are replaced), in every timed call
    models = {
        dtype: model if dtype == "float32" else copy.deepcopy(model).to(DTYPES[dtype])
        for dtype in dict.fromkeys(d for _, d in settings)
    }
    for key in settings:  # warm-up, untimed: CUDA-graph capture, torch.compile, allocator
        timed_once(*key, models, batches, args)
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load falls on every engine alike
        for key in settings:
            spent, tokens[key] = timed_once(*key, models, batches, args)
            seconds[key].append(spent)
            print(f"  {key[0]:>12} {key[1]:>8}: {spent:.2f} s", flush=True)
    rows = [row(*key, seconds[key], tokens[key], args.max_new_tokens) for key in settings]
    base = rows[0]
    same = next(r for r in rows if r["engine"] == "transformers" and r["dtype"] == args.dtype)
    ours = rows[-1]
    ours["speedup_vs_float32_generate"] = round(ours["tokens_per_s"] / base["tokens_per_s"], 2)
    ours["speedup_vs_generate"] = round(ours["tokens_per_s"] / same["tokens_per_s"], 2)
    ours["tokens_equal"] = all(
        torch.equal(a, b) for a, b in zip(tokens[("static", args.dtype)], tokens[("transformers", args.dtype)])
    )

    print(
        f"\n{args.model} on {args.device}: {len(prompts)} completions of {args.max_new_tokens} tokens, "
        f"batches of {args.batch_size}"
    )
    print(f"{'engine':>12} {'dtype':>9} {'completions/s':>14} {'tokens/s':>10} {'x fp32 generate':>16}")
    for r in rows:
        print(
            f"{r['engine']:>12} {r['dtype']:>9} {r['completions_per_s']:>14.2f} {r['tokens_per_s']:>10.1f} "
            f"{r['tokens_per_s'] / base['tokens_per_s']:>16.2f}"
        )
    print(f"our tokens equal transformers' from the same seed: {ours['tokens_equal']}")

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    results[f"{args.model}@{args.device}"] = {
        "command": "python " + " ".join(sys.argv),
        "device": device_name,
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": import_transformers().__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "model": args.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompts": args.prompts,
        "group_size": args.group_size,
        "prompt_len": args.prompt_len,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "temperature": args.temperature,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
