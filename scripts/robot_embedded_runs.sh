#!/usr/bin/env bash
# The embedded experiment of docs/results/robot (issue #6): from one base, SFT and RL settings of
# configs/robot_embedded.yaml, then the summary and the report over all of them. Made for the device machine
# (16 cores): after the base's evaluation (and the KL frames) on ALL_WORKERS processes, lanes of WORKERS
# simulator processes run side by side (one lane's simulators step while another's policy call runs).
# Every step resumes: rerun the script after an interruption and it continues where it stopped. Lanes can be
# split over machines (LANES="sft rl_ln" on one, LANES="rl_10 rl" on another, the experiment folder's
# base_eval.json and kl_observations.npz carried over) and the run folders merged before `robot report`.
#   Usage: bash scripts/robot_embedded_runs.sh [PYTHON]
#   env: BASE, EXPERIMENT, WORKERS (5), ALL_WORKERS (14), LANES, RL_ITERATIONS (4), LOG_DIR (/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
W=${WORKERS:-5}
ALL=${ALL_WORKERS:-14}
LOGS=${LOG_DIR:-/tmp}
common=(--config configs/robot_embedded.yaml --base "${BASE:-assets/base_policy_embedded}"
        --experiment "${EXPERIMENT:-robot_embedded}" --wandb off --progress false --threads 2)
rl=(--workers "$W" --rl.episodes_per_point 2 --rl.iterations "${RL_ITERATIONS:-4}" --rl.eval_every 2)
robot() { "$PY" -m vla_razor.cli.main robot "$@" "${common[@]}"; }

# SFT on the 1,000 `angled` demonstrations (collected first) at three learning rates, and 3 epochs at the largest
lane_sft() {
  robot collect --collect.workers "$W"
  for lr in 1e-4 3e-5 3e-4; do robot sft --workers "$W" --sft.optim.lr "$lr"; done
  robot sft --workers "$W" --sft.optim.lr 3e-4 --sft.optim.epochs 3
}
# REINFORCE, normalized reward, each episode weighted the same (length-normalized)
lane_rl_ln() { robot rl "${rl[@]}" --rl.length_normalize true --rl.optim.lr 1e-5; }
# 1-0 Reinforce: SFT on the policy's own successes (section 5.1)
lane_rl_10() { robot rl "${rl[@]}" --rl.advantage one_zero --rl.optim.lr 3e-5; }
# REINFORCE as the paper states it (every step counts once)
lane_rl() { robot rl "${rl[@]}" --rl.optim.lr 1e-5; }

# shared: the base's evaluation and the KL frames, made once for every run
robot eval --workers "$ALL"
status=0
pids=()
for lane in ${LANES:-sft rl_ln rl_10}; do
  "lane_$lane" > "$LOGS/lane_$lane.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" = 0 ] || { echo "a lane failed: see $LOGS/lane_*.log"; tail -n 30 "$LOGS"/lane_*.log; exit 1; }
# the summary and the report over every finished run
robot report
