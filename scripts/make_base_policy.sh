#!/usr/bin/env bash
# Makes the embedded world's base policy (configs/robot_base.yaml): scripted demonstrations of the three tasks,
# behaviour cloning, then the base's own evaluation. Usage: bash scripts/make_base_policy.sh [PYTHON]
# (PYTHON defaults to .venv/bin/python; WORKERS overrides the simulator processes, default 14).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
W=${WORKERS:-14}
common=(--camera_size 112 --workers "$W" --progress false --max_attempts_per_point 20)
# pick-can, top-down style, grid rows x = 0..3 of 10 (points 0..39): the base learns part of the grid only
"$PY" data_collection/rt1_grid.py --task pick_can --expert_style top_down --grid 10x10 \
  --points "[$(seq -s, 0 39)]" --successes_per_point 5 --out data/base/pick_can_top_down "${common[@]}"
for task in open_drawer close_drawer; do
  "$PY" data_collection/rt1_grid.py --task $task --grid 5x5 --successes_per_point 4 --out data/base/$task "${common[@]}"
done
"$PY" -m vla_razor.cli.main robot pretrain --config configs/robot_base.yaml --workers "$W"
"$PY" -m vla_razor.cli.main robot eval --config configs/robot_base.yaml --workers "$W" \
  --out runs/robot_base/base/base_eval.json
