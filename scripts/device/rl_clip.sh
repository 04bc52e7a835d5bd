#!/usr/bin/env bash
# Issue #19 item 3, the next device job (after session 8: docs/results/robot/learning_curve/README.md): the paper's
# per-point normalized baseline with length_normalize and rl.clip_ratio 0.2 (its negative advantages otherwise move
# the tiny base along one direction at every update), from the committed base, two runs at once, 7 workers each:
#   A  fresh uniform placements every iteration (what must transfer), evaluated on 100 uniform placements
#   B  the paper's fixed 10 x 10 grid, evaluated at the grid's points with 100 uniform held-out placements beside
# Both sampled at temperature 1, 100 episodes of each drawer. Usage on the device:
#   scripts/device/remote.sh start "bash scripts/device/rl_clip.sh", then, often,
#   scripts/device/remote.sh pack "runs/rl_*/runs/*/metrics.jsonl" "runs/rl_*/runs/*/points.jsonl" "runs/rl_*/*.json"
set -x
common=(--rl.baseline group --rl.advantage normalized --rl.length_normalize true --rl.clip_ratio 0.2
        --rl.optim.lr 3e-5 --rl.optim.batch_size 64 --rl.optim.epochs 1 --rl.max_steps 16
        --eval.temperature 1 --eval.probe_episodes 100 --rl.eval_every 4)
EXPERIMENT=rl_a WORKERS=7 ITERATIONS=30 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.placements uniform --rl.run_name rl_norm_ln_clip0.2_uniform > rl_a.log 2>&1 &
EXPERIMENT=rl_b WORKERS=7 ITERATIONS=30 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
  --rl.placements grid --eval.pick_can_placements grid --eval.heldout_episodes 100 \
  --rl.run_name rl_norm_ln_clip0.2_grid > rl_b.log 2>&1 &
wait
echo JOB DONE
