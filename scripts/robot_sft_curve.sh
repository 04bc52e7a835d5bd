#!/usr/bin/env bash
# Issue #19 item 3, SFT half (the device machine): SFT of the committed base on the `angled` scripted
# demonstrations (10 successes at each of the 10 x 10 grid points, 112 px; configs/robot_embedded.yaml's collect
# section), for several epochs, evaluated every EVERY updates (100 uniform placements greedy, 50 episodes of each
# drawer, forward KL on the fixed frames), then the run's learning curve into docs/results/robot/learning_curve/.
# Usage: [EXPERIMENT=robot_curve] [WORKERS=14] [EPOCHS=5] [EVERY=200] bash scripts/robot_sft_curve.sh [PYTHON] [more vla-razor flags ...]
#   e.g. ... python3 --sft.optim.lr 3e-4
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
shift || true
W=${WORKERS:-14}
EXP=${EXPERIMENT:-robot_curve}   # one experiment per concurrent run: each has its own base evaluation
common=(--config configs/robot_embedded.yaml --experiment "$EXP" --workers "$W" --threads 4 --wandb off
        --progress false)
"$PY" -m vla_razor.cli.main robot collect "${common[@]}" --collect.workers "$W" --collect.progress false "$@"
"$PY" -m vla_razor.cli.main robot sft "${common[@]}" --sft.optim.epochs "${EPOCHS:-5}" \
  --eval.during_training_every "${EVERY:-200}" --eval.pick_can_episodes 100 --eval.probe_episodes 50 \
  --eval.max_steps 40 "$@"
run=$(ls -td "runs/$EXP/runs/"sft_* | head -1)
"$PY" -m vla_razor.cli.main curve "$run" --out "docs/results/robot/learning_curve/$(basename "$run")" \
  --command-note "EXPERIMENT=$EXP WORKERS=$W EPOCHS=${EPOCHS:-5} EVERY=${EVERY:-200} bash scripts/robot_sft_curve.sh $PY $*"
