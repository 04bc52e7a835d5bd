#!/usr/bin/env bash
# Issue #19 item 3 (the device machine): on-policy REINFORCE from the committed base on the paper's protocol
# (10 x 10 grid, 5 episodes per point per iteration, binary success, per-point normalized baseline, no KL), the
# evaluation every 3 iterations (100 uniform placements greedy, 50 episodes of each drawer), the live forward KL
# after every iteration, then the run's learning curve into docs/results/robot/learning_curve/<run>/.
# Usage: [EXPERIMENT=robot_curve] [WORKERS=14] [ITERATIONS=15] bash scripts/robot_learning_curve.sh [PYTHON] [more vla-razor flags ...]
#   e.g. ... python3 --rl.optim.lr 3e-6                      (the normalized baseline at a small learning rate)
#        ... python3 --rl.advantage one_zero --rl.optim.lr 1e-4   (1-0 Reinforce, as the quickstart)
# A script, not a sweep config: the device recipes (scripts/device/rl_*.sh; rl_long.sh still resumes its run across
# sessions) call it once per run, each run with its own EXPERIMENT, WORKERS and flags. The sweep form of the same job
# is configs/sweep_robot_sft_curve.yaml's (`curves:` writes each finished run's learning curve).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
shift || true
W=${WORKERS:-14}
EXP=${EXPERIMENT:-robot_curve}   # one experiment per concurrent run: each has its own base evaluation
args=(--config configs/robot_embedded.yaml --experiment "$EXP" --workers "$W" --threads 4 --wandb off
      --progress false --rl.grid "[10, 10]" --rl.episodes_per_point 5 --rl.iterations "${ITERATIONS:-15}"
      --rl.max_steps 30 --rl.eval_every 3 --eval.pick_can_episodes 100 --eval.probe_episodes 50
      --eval.max_steps 40 --eval.kl_every 1 "$@")
"$PY" -m vla_razor.cli.main robot rl "${args[@]}"
run=$(ls -td "runs/$EXP/runs/"rl_* | head -1)
"$PY" -m vla_razor.cli.main curve "$run" --out "docs/results/robot/learning_curve/$(basename "$run")" \
  --command-note "EXPERIMENT=$EXP WORKERS=$W ITERATIONS=${ITERATIONS:-15} bash scripts/robot_learning_curve.sh $PY $*"
