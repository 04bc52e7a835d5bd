#!/usr/bin/env bash
# Issue #19 item 3, the next device job (after session 7's, docs/results/robot/learning_curve/README.md): the
# base_v5 snapshot remade (bit-identical on the H200: sha256 70aac7b5...) and its weights kept for packing in
# 9 MB parts, then two RL runs at once on fresh placements, evaluated at temperature 1 (100 episodes each):
#   A  1-0 Reinforce, lr 1e-4, one pass of batch 32 (~55 updates an iteration), 30 iterations
#   B  the paper's per-point normalized baseline with length_normalize (a group's rows sum to zero), lr 3e-5
# Usage on the device (scripts/device/remote.sh start "bash scripts/device/rl_fresh_placements.sh"), then
# `remote.sh pack "runs/rl_*/runs/*/metrics.jsonl" "runs/rl_*/*.json" "base_parts/*"` often.
set -x
snap=runs/robot_base/base/snapshots/step_001750
if [ ! -d "$snap" ]; then
  PICK_PER_POINT=4 OPEN_PER_POINT=8 JITTER=0.015 WORKERS=15 STAGE=demos bash scripts/make_base_policy.sh python3
  python3 -m vla_razor.cli.main robot pretrain --config configs/robot_base.yaml --workers 15 \
    --pretrain.optim.max_steps 3000 &
  pre=$!
  until [ -d "$snap" ]; do sleep 3; done
  sleep 3; kill $pre; wait $pre
fi
sha256sum "$snap"/*.safetensors
mkdir -p base_parts && cp "$snap"/*.json base_parts/ && split -b 9M "$snap"/model-00001-of-00001.safetensors base_parts/model.part.
common=(--base "$snap" --rl.placements uniform --rl.baseline group --rl.optim.epochs 1 --rl.max_steps 16
        --eval.temperature 1 --eval.probe_episodes 100 --rl.eval_every 5)
EXPERIMENT=rl_a WORKERS=7 ITERATIONS=30 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.advantage one_zero --rl.optim.lr 1e-4 --rl.optim.batch_size 32 --rl.run_name rl_onezero_lr1e-4_bs32 \
  > rl_a.log 2>&1 &
EXPERIMENT=rl_b WORKERS=7 ITERATIONS=30 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.advantage normalized --rl.length_normalize true --rl.optim.lr 3e-5 --rl.optim.batch_size 64 \
  --rl.run_name rl_norm_ln_lr3e-5_bs64 > rl_b.log 2>&1 &
wait
echo JOB DONE
