#!/usr/bin/env bash
# Makes the embedded world's base policy (configs/robot_base.yaml): scripted demonstrations of the three tasks,
# behaviour cloning, then the base's own evaluation. Usage: bash scripts/make_base_policy.sh [PYTHON]
# (PYTHON defaults to .venv/bin/python; WORKERS overrides the simulator processes, default 14).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
W=${WORKERS:-14}
common=(--camera_size 112 --workers "$W" --progress false --max_attempts_per_point 20)
# pick-can, top-down style, on a dense 8 x 12 grid over the near 35 % of the can region (x in [-0.215, -0.135] m
# of [-0.215, 0.015], i.e. rows 0..3 of the 10 x 10 grid and the placements between them): the base learns that
# part of the region, not the rest, and not just a few exact placements
"$PY" data_collection/rt1_grid.py --task pick_can --expert_style top_down --grid 8x12 \
  --region "[[-0.215, -0.135], [-0.22, 0.22]]" --successes_per_point 4 --out data/base/pick_can_top_down_near \
  "${common[@]}"
# pick-can, angled style, one episode per grid point: not trained on, only its actions join the action
# normalization, so that the base's 256 bins can express the SFT demonstrations (their wrist rotations)
"$PY" data_collection/rt1_grid.py --task pick_can --expert_style angled --grid 10x10 --successes_per_point 1 \
  --out data/base/pick_can_angled_stats "${common[@]}"
for task in open_drawer close_drawer; do
  "$PY" data_collection/rt1_grid.py --task $task --grid 5x5 --successes_per_point 4 --out data/base/$task "${common[@]}"
done
"$PY" -m vla_razor.cli.main robot pretrain --config configs/robot_base.yaml --workers "$W"
"$PY" -m vla_razor.cli.main robot eval --config configs/robot_base.yaml --workers "$W" \
  --out runs/robot_base/base/base_eval.json
