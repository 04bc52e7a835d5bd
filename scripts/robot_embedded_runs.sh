#!/usr/bin/env bash
# The embedded experiment of docs/results/robot (issue #6): from one base, 5 SFT settings and 2 RL settings of configs/robot_embedded.yaml, then the summary and the report over all of them. Made for the device
# machine (16 cores): after the shared steps, three lanes of WORKERS simulator processes run side by side (one
# lane's simulators step while another's policy call runs). Every step resumes: rerun the script after an
# interruption and it continues where it stopped.
#   Usage: bash scripts/robot_embedded_runs.sh [PYTHON]     (env: BASE, EXPERIMENT, WORKERS, ALL_WORKERS)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
W=${WORKERS:-5}
ALL=${ALL_WORKERS:-14}
common=(--config configs/robot_embedded.yaml --base "${BASE:-assets/base_policy_embedded}"
        --experiment "${EXPERIMENT:-robot_embedded}" --wandb off --progress false --threads 2)
rl=(--rl.episodes_per_point 2 --rl.iterations 4 --rl.eval_every 2)
robot() { "$PY" -m vla_razor.cli.main robot "$@" "${common[@]}"; }

# shared: the SFT demonstrations (1,000 `angled` episodes), the base's evaluation and the KL frames (first SFT run)
robot collect --collect.workers "$ALL"
robot sft --workers "$ALL" --sft.optim.lr 1e-4
# three lanes
{ robot sft --workers "$W" --sft.optim.lr 3e-5
  robot sft --workers "$W" --sft.optim.lr 3e-4
  robot sft --workers "$W" --sft.optim.lr 3e-4 --sft.optim.epochs 3
  robot sft --workers "$W" --sft.optim.lr 3e-4 --sft.optim.batch_size 64 --sft.optim.epochs 10 \
    --eval.during_training_every 1430; } > "${LOG_DIR:-/tmp}/lane_sft.log" 2>&1 &
robot rl --workers "$W" "${rl[@]}" --rl.optim.lr 1e-5 > "${LOG_DIR:-/tmp}/lane_rl1.log" 2>&1 &
robot rl --workers "$W" "${rl[@]}" --rl.optim.lr 3e-5 > "${LOG_DIR:-/tmp}/lane_rl2.log" 2>&1 &
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
[ "$status" = 0 ] || { echo "a lane failed: see ${LOG_DIR:-/tmp}/lane_*.log"; tail -n 30 "${LOG_DIR:-/tmp}"/lane_*.log; exit 1; }
# the summary and the report over every finished run
robot report
