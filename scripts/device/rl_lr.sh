#!/usr/bin/env bash
# Issue #19 item 3, session 10's device job (after rl_clip.sh, whose machine was lost at iteration 12: the clipped
# normalized baseline at lr 3e-5 lifted uniform pick-can 0.43 -> 0.50 in 8 iterations, too slowly for 0.7): the same
# recipe on fresh uniform placements at two larger learning rates, two runs at once, 7 workers each, 16 iterations
# (the machine is held at most 30 minutes), evaluated every 4 on 100 uniform placements and 100 episodes per drawer.
#   scripts/device/remote.sh start "bash scripts/device/rl_lr.sh", then poll + pack as rl_clip.sh says.
set -x
common=(--rl.baseline group --rl.advantage normalized --rl.length_normalize true --rl.clip_ratio 0.2
        --rl.optim.batch_size 64 --rl.optim.epochs 1 --rl.max_steps 16 --rl.placements uniform
        --eval.temperature 1 --eval.probe_episodes 100 --rl.eval_every 4)
for lr in 1e-4 3e-4; do
  EXPERIMENT=rl_lr$lr WORKERS=7 ITERATIONS=16 bash scripts/robot_learning_curve.sh python3 "${common[@]}" \
    --rl.optim.lr $lr --rl.run_name rl_norm_ln_clip0.2_uniform_lr$lr > rl_lr$lr.log 2>&1 &
done
wait
echo JOB DONE
