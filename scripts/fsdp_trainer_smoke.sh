#!/usr/bin/env bash
# The robot trainer under torchrun against one process, on whatever this machine has (GPUs: NCCL; else gloo):
# behaviour cloning of the tiny policy on a demonstration folder, 1 process vs N processes (and N with bf16 mixed
# precision), then the per-update losses and the final weights compared. Issue #10's check of the trainer itself
# on GPUs (tests/robot/test_distributed.py checks the same on the CPU in CI).
#   bash scripts/fsdp_trainer_smoke.sh DEMOS_DIR OUT_DIR [N] [DEVICE]
set -euo pipefail
demos=$(realpath "$1"); out=$(realpath -m "$2"); n=${3:-2}; device=${4:-auto}
py=${PYTHON:-python3}
rm -rf "$out"; mkdir -p "$out"
args=(robot pretrain --pretrain.policy_config configs/policy_tiny.yaml --progress false --wandb off --threads 1
      --device "$device" --pretrain.datasets "[\"$demos\"]" --pretrain.optim.batch_size 8 --pretrain.optim.epochs 3
      --pretrain.optim.warmup_steps 2 --pretrain.optim.lr 1e-3 --checkpoint_every 4)
$py -m vla_razor.cli "${args[@]}" --pretrain.out "$out/one" > "$out/one.log" 2>&1
$py -m torch.distributed.run --standalone --nproc-per-node "$n" -m vla_razor.cli "${args[@]}" \
  --pretrain.out "$out/many" > "$out/many.log" 2>&1
$py -m torch.distributed.run --standalone --nproc-per-node "$n" -m vla_razor.cli "${args[@]}" \
  --fsdp.mixed_precision bf16 --pretrain.out "$out/many_bf16" > "$out/many_bf16.log" 2>&1
$py - "$out" "$n" <<'PY'
import json, sys
from pathlib import Path
from safetensors.torch import load_file
out, n = Path(sys.argv[1]), int(sys.argv[2])
def losses(run):
    rows = [json.loads(l) for l in (out / run / "metrics.jsonl").read_text().splitlines()]
    return [r["value"] for r in rows if r["name"] == "loss" and r["split"] == "train"]
def weights(run):
    w = {}
    for f in sorted((out / run / "policy").glob("*.safetensors")):
        w.update(load_file(f))
    return w
one, ref = losses("one"), weights("one")
result = {"processes": n, "updates": len(one), "loss_one": one}
for run in ("many", "many_bf16"):
    other, w = losses(run), weights(run)
    result[f"loss_{run}"] = other
    result[f"{run}_max_loss_rel_diff"] = max(abs(a - b) / max(abs(a), 1e-9) for a, b in zip(one, other))
    result[f"{run}_max_weight_diff"] = max(float((ref[k].float() - w[k].float()).abs().max()) for k in ref)
    result[f"{run}_same_updates"] = len(other) == len(one)
(out / "smoke.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: v for k, v in result.items() if not k.startswith("loss_")}))
PY
