#!/usr/bin/env bash
# Makes the embedded world's base policy (configs/robot_base.yaml): scripted demonstrations of the three tasks,
# behaviour cloning with a policy snapshot every 250 updates, then the base's own evaluation.
# Usage: bash scripts/make_base_policy.sh [PYTHON] [more `robot pretrain` flags ...]  (PYTHON defaults to
# .venv/bin/python; WORKERS overrides the simulator processes, default 14; STAGE=demos or STAGE=pretrain runs one
# half), e.g. ... python3 --pretrain.optim.image_shift 6 --pretrain.out runs/robot_base/base_shift6
# More distinct placements (SFT generalized over the region only with many: docs/results/robot/learning_curve/):
# PICK_PER_POINT top-down successes per 16 x 16 grid point (default 4), OPEN_PER_POINT open-drawer successes per
# cabinet offset (default 8), JITTER metres each attempt's placement moves around its point (default 0.015): the
# committed base's recipe, 1,024 distinct pick-can placements (docs/results/robot/base_v5/).
# The committed base is the snapshot chosen by scripts/choose_base_snapshot.sh
# (assets/base_policy_embedded/README.md says which and why).
# A script, not a sweep config: the base's recipe (four collections of three tasks, then `robot pretrain`); a sweep
# fans SFT / RL runs out from a base.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
shift || true
W=${WORKERS:-14}
STAGE=${STAGE:-all}
if [ "$STAGE" != pretrain ]; then
common=(--camera_size 112 --workers "$W" --progress false --max_attempts_per_point 20 --placement_jitter "${JITTER:-0.015}")
# pick-can, top-down style, one success at each point of a 16 x 16 grid over the whole can region: the base sees
# the whole region (so what it learns can transfer to placements between points), PICK_PER_POINT times per point
"$PY" data_collection/rt1_grid.py --task pick_can --expert_style top_down --grid 16x16 \
  --successes_per_point "${PICK_PER_POINT:-4}" \
  --out data/base/pick_can_top_down "${common[@]}"
# pick-can, angled style, one episode per grid point: not trained on, only its actions join the action
# normalization, so that the base's 256 bins can express the SFT demonstrations (their wrist rotations)
"$PY" data_collection/rt1_grid.py --task pick_can --expert_style angled --grid 10x10 --successes_per_point 1 \
  --out data/base/pick_can_angled_stats "${common[@]}"
# the drawers over an 8 x 8 grid of cabinet offsets: open drawer (the harder probe) 4 successes per offset, close 2
"$PY" data_collection/rt1_grid.py --task open_drawer --grid 8x8 --successes_per_point "${OPEN_PER_POINT:-8}" --out data/base/open_drawer "${common[@]}"
"$PY" data_collection/rt1_grid.py --task close_drawer --grid 8x8 --successes_per_point 2 --out data/base/close_drawer "${common[@]}"
fi
if [ "$STAGE" != demos ]; then
  "$PY" -m vla_razor.cli.main robot pretrain --config configs/robot_base.yaml --workers "$W" "$@"
fi
