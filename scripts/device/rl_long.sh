#!/usr/bin/env bash
# Issue #19 item 3, the long run (sessions 9-10: the clipped normalized baseline learns fresh uniform placements at
# lr 3e-5, +0.07 in 8 iterations; lr 1e-4 stays flat while its KL runs to 3.8, lr 3e-4 collapses): one run with all
# 14 workers, 60 iterations, evaluated every 5 on 100 uniform placements and 100 episodes of each drawer, resumable
# across sessions (a machine is held at most 30 minutes):
#   each session, on the device: install1-5; if a run was packed before, `bash scripts/device/stage_run.sh FILES`
#   here and one `remote.sh stage` per .stage piece; then `remote.sh start "bash scripts/device/rl_long.sh"`;
#   every poll also `remote.sh pack ...` and, last, `remote.sh packrun runs/rl_long` (the run with its
#   training state, to resume from next session).
set -x
EXPERIMENT=rl_long WORKERS=${RL_WORKERS:-14} ITERATIONS=60 bash scripts/robot_learning_curve.sh python3 \
  --rl.baseline group --rl.advantage normalized --rl.length_normalize true --rl.clip_ratio 0.2 \
  --rl.optim.lr 3e-5 --rl.optim.batch_size 64 --rl.optim.epochs 1 --rl.max_steps 16 --rl.placements uniform \
  --eval.temperature 1 --eval.probe_episodes 100 --rl.eval_every 5 --rl.run_name rl_norm_ln_clip0.2_uniform_long
echo JOB DONE
