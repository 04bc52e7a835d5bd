"""Issue #9's figures in one file: docs/results/perf/summary.json, read from the benches' own JSON results.

    python bench/perf_summary.py

Each figure is the best row of the latest stage of its bench on the GPU, with the target it is held to, whether
it meets it, and where it came from (file, key, row). Run after the benches; nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TARGETS = {
    "gen_ceiling_frac": (">=", 0.75),
    "batch1_latency_ms": ("<=", 70.0),
    "train_mfu_lora": (">=", 0.40),
    "train_mfu_full": (">=", 0.40),
    "kl_overhead": ("<=", 1.1),
    "rollout_vs_sim": (">=", 0.8),
}


def load(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run its bench first (see docs/PERFORMANCE.md)")
    return json.loads(path.read_text())


def best(rows: list[dict[str, Any]], key: str, largest: bool = True, **match: Any) -> dict[str, Any]:
    chosen = [r for r in rows if key in r and all(r.get(k) == v for k, v in match.items())]
    if not chosen:
        raise SystemExit(f"no row with {key} and {match}")
    return (max if largest else min)(chosen, key=lambda r: r[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results/perf"))
    parser.add_argument("--generation-stage", default="7b@cuda/graph-prefill-fused")
    args = parser.parse_args()
    folder = args.results

    generation = load(folder, "generation.json")[args.generation_stage]
    fastest = best(generation["rows"], "actions_per_s", engine="graph")
    batch1 = best(generation["rows"], "ms_per_batch", largest=False, engine="graph", batch=1)
    train = load(folder, "train_step.json")
    lora_key = max((k for k in train if k.startswith("7b/lora/")), key=lambda k: best(train[k]["rows"], "mfu")["mfu"])
    full_key = max((k for k in train if k.startswith("7b/full/")), key=lambda k: best(train[k]["rows"], "mfu")["mfu"])
    lora, full = best(train[lora_key]["rows"], "mfu"), best(train[full_key]["rows"], "mfu")
    kl = load(folder, "kl_cost.json")["7b@cuda"]
    kl_worst = best(kl["rows"], "kl_overhead")
    rollout = load(folder, "rollout.json")["7b@cuda"]
    roll = best(rollout["rows"], "rollout_vs_sim")

    values = {
        "gen_actions_per_s": fastest["actions_per_s"],
        "gen_ceiling_frac": fastest["fraction_incl_decode"],  # prefill + decode FLOPs, as the issue defines it
        "batch1_latency_ms": batch1["ms_per_batch"],
        "train_mfu_lora": lora["mfu"],
        "train_mfu_full": full["mfu"],
        "kl_overhead": kl_worst["kl_overhead"],
        "rollout_vs_sim": roll["rollout_vs_sim"],
    }
    met = {}
    for name, (op, target) in TARGETS.items():
        met[name] = values[name] >= target if op == ">=" else values[name] <= target
    summary = {
        "device": generation["device"],
        **values,
        "train_mfu": {"lora_r32": lora["mfu"], "full": full["mfu"]},
        "targets": {k: f"{op} {t}" for k, (op, t) in TARGETS.items()},
        "met": met,
        "sources": {
            "gen_actions_per_s": f"generation.json {args.generation_stage}, engine graph, batch {fastest['batch']}",
            "batch1_latency_ms": f"generation.json {args.generation_stage}, engine graph, batch 1",
            "train_mfu_lora": f"train_step.json {lora_key}, batch {lora['batch']}, peak {lora['peak_memory_gib']:.1f} GiB",
            "train_mfu_full": f"train_step.json {full_key}, batch {full['batch']}, peak {full['peak_memory_gib']:.1f} GiB",
            "kl_overhead": f"kl_cost.json 7b@cuda, worst of batches {[r['batch'] for r in kl['rows']]}",
            "rollout_vs_sim": f"rollout.json 7b@cuda, best of workers {[r['workers'] for r in rollout['rows']]} "
            f"({roll['workers']} workers, pipeline_groups {roll.get('pipeline_groups', 1)})",
        },
        "command": "python bench/perf_summary.py",
    }
    out = folder / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    for name in TARGETS:
        print(
            f"{name:>20} {values[name]:>9.3f}  target {summary['targets'][name]:<8} {'met' if met[name] else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
