#!/usr/bin/env bash
# Issue #19 device job (session 7): the base_v5 recipe to its 1,750-update snapshot, then two RL runs at once on
# fresh placements, lr 3e-5, one pass of batch 64: the paper's per-point normalized baseline vs 1-0 Reinforce, evaluated at temperature 1 (100 episodes each).
set -x
PICK_PER_POINT=4 OPEN_PER_POINT=8 JITTER=0.015 WORKERS=15 STAGE=demos bash scripts/make_base_policy.sh python3
python3 -m vla_razor.cli.main robot pretrain --config configs/robot_base.yaml --workers 15 \
  --pretrain.optim.max_steps 3000 &
PRE=$!
until [ -d runs/robot_base/base/snapshots/step_001750 ]; do sleep 3; done
sleep 3; kill $PRE; wait $PRE
sha256sum runs/robot_base/base/snapshots/step_001750/*.safetensors
common=(--base runs/robot_base/base/snapshots/step_001750 --rl.placements uniform --rl.baseline group
        --rl.optim.lr 3e-5 --rl.optim.epochs 1 --rl.optim.batch_size 64 --rl.max_steps 16
        --eval.temperature 1 --eval.probe_episodes 100 --rl.eval_every 3)
EXPERIMENT=rl_a WORKERS=7 ITERATIONS=12 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.advantage normalized --rl.run_name rl_norm_lr3e-5_bs64 > rl_a.log 2>&1 &
EXPERIMENT=rl_b WORKERS=7 ITERATIONS=12 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.advantage one_zero --rl.run_name rl_onezero_lr3e-5_bs64 > rl_b.log 2>&1 &
wait
echo JOB DONE
