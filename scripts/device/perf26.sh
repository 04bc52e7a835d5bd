#!/usr/bin/env bash
# Issue #26 items 1 and 3 on one H200: generation with the fused q/k/v and gate/up products against the unfused
# layers, and 7B training with float32 master weights (optim.master_weights: float32), one step per `run` call (each
# under the 10-minute limit), all through the benches, JSON into $OUT (the folder the device returns) or
# docs/results/perf:
#   bash scripts/device/perf26.sh python3 test   # the GPU tests: graph engine fused / unfused against static
#   bash scripts/device/perf26.sh python3 gen    # batch 1 / 64 / 128, graph engine, fused on and off (ceiling fraction)
#   bash scripts/device/perf26.sh python3 full   # full fine-tuning, float32 master weights: MFU, peak memory
#   bash scripts/device/perf26.sh python3 lora   # LoRA r 32, float32 master weights (and bf16 states for reference)
# The same commands at the tiny size on a CPU (a dry run of the flags):
#   CONFIG=tiny DEVICE=cpu DTYPE=bfloat16 GEN_BATCHES="1 8" FULL_BATCHES=4 LORA_BATCHES=4 bash scripts/device/perf26.sh .venv/bin/python gen
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
STEP=${2:-gen}
CONFIG=${CONFIG:-7b}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
RESULTS=${OUT:-docs/results/perf}
GEN_BATCHES=${GEN_BATCHES:-1 64 128}
FULL_BATCHES=${FULL_BATCHES:-8 16 24}
LORA_BATCHES=${LORA_BATCHES:-16 32}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$RESULTS"
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv

case "$STEP" in
test)
  "$PY" -m pytest -q -p no:cacheprovider tests/policies/test_generation.py 2>&1 | tee "$RESULTS/perf26_tests.log" | tail -5 ;;
gen)
  # graph = the CUDA-graph engine (static on a CPU); --profile-batch prints the top kernels, fused on then off
  engine=graph; [ "$DEVICE" = cpu ] && engine=static
  "$PY" bench/policy_actions_per_s.py --config "$CONFIG" --device "$DEVICE" --batches $GEN_BATCHES --engines $engine \
    --fused on off --repeats 5 --profile-batch "$(echo $GEN_BATCHES | awk '{print $2}')" \
    --out "$RESULTS/generation_fused.json" 2>&1 | tee "$RESULTS/generation_fused.log" | tail -12 ;;
full)
  # float32 master weights + moments: ~16 bytes a parameter of state (the 7B: ~120 GB); recomputation of the Llama
  # layers where the activations do not fit beside it
  for ckpt in off llm; do
    "$PY" bench/policy_train_step.py --config "$CONFIG" --device "$DEVICE" --dtype "$DTYPE" --mode full \
      --master-weights float32 --checkpointing $ckpt --batches $FULL_BATCHES --steps 3 \
      --out "$RESULTS/train_step_master.json" 2>&1 | tee -a "$RESULTS/train_step_master.log" | tail -5
  done ;;
lora)
  for master in float32 none; do
    "$PY" bench/policy_train_step.py --config "$CONFIG" --device "$DEVICE" --dtype "$DTYPE" --mode lora --lora-rank 32 \
      --master-weights $master --checkpointing off --batches $LORA_BATCHES --steps 3 \
      --out "$RESULTS/train_step_master.json" 2>&1 | tee -a "$RESULTS/train_step_master.log" | tail -5
  done ;;
*) echo "usage: perf26.sh PYTHON test|gen|full|lora"; exit 2 ;;
esac
