#!/usr/bin/env bash
# Evaluates the base run's snapshots (greedy; 100 uniform pick-can placements, 100 grid points, 50 episodes of
# each drawer; bench/robot_sampling_success.py) into runs/robot_base/base/snapshot_eval/<step>.json, newest last.
# Usage: bash scripts/choose_base_snapshot.sh [PYTHON] [STEP ...]  (default: every snapshot; RUN the pretrain run,
# default runs/robot_base/base; WORKERS simulator processes, default 14; THREADS policy threads, default 4)
# A script, not a sweep config: it evaluates the snapshots of one finished pretrain run through a bench, and
# launches no training run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
shift || true
W=${WORKERS:-14}
T=${THREADS:-4}
run=${RUN:-runs/robot_base/base}
mkdir -p $run/snapshot_eval
steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then steps=($(ls $run/snapshots | sed 's/step_//')); fi
for s in "${steps[@]}"; do
  "$PY" bench/robot_sampling_success.py --policy $run/snapshots/step_$s --temperatures 0 --episodes 1 \
    --uniform 100 --probe-episodes 50 --workers "$W" --threads "$T" --out $run/snapshot_eval/$s.json
done
