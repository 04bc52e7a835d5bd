#!/usr/bin/env bash
# Issue #20 on the device machine (one H200, 16 cores): configs/sweep_robot_embedded.yaml, its SFT grid and its RL
# grid as two sweeps side by side (7 simulator workers each), in this process each (no Ray), the RL one started once
# the shared step (the 2,000 demonstrations, the base's evaluation and KL frames) is done. Resumable: a finished run
# is skipped, a cut one continues from its training state. The experiment outlasts one 30-minute lease (an RL run is
# 40 iterations), so every session: install1-3; if runs were packed before,
# `bash scripts/device/stage_run.sh FILES` here and one `remote.sh stage` per .stage piece; then
#   remote.sh start "bash scripts/device/razor20.sh"
# and every poll `remote.sh pack "runs/razor_embedded/*.log"` and, last, `remote.sh packrun runs/razor_embedded`.
# SWEEP=<sweep yaml> runs another sweep the same way. CPU dry run (session 12, rc 0 in 2 min: both sweeps, the RL one
# started after the shared step, the report over both runs): the committed sweep with tiny overrides (a 2x2
# collection, 2-episode evaluations, 2 RL iterations on a [2, 1] grid), WORKERS=1, PATH=.venv/bin:$PATH.
# Each sweep writes the experiment's sweep_status.json in turn (the last one's tasks); the report reads every run.
set -x
SWEEP=${SWEEP:-configs/sweep_robot_embedded.yaml}
WORKERS=${WORKERS:-7}
VR="python3 -m vla_razor.cli.main"
export PYTHONUNBUFFERED=1
mkdir -p runs/razor_sweeps
EXP=$(python3 - "$SWEEP" "$WORKERS" <<'PY'
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
cfg["overrides"].update(workers=int(sys.argv[2]), progress=False)
cfg["in_process"] = True
for method in ("sft", "rl"):
    with open(f"runs/razor_sweeps/{method}.yaml", "w") as f:
        yaml.safe_dump({**cfg, "grid": {method: cfg["grid"][method]}}, f, sort_keys=False)
print(cfg["overrides"]["experiment"])
PY
) || exit
$VR sweep runs/razor_sweeps/sft.yaml --quiet > runs/razor_sweeps/sft.log 2>&1 &
sft=$!
# the RL sweep reads what the shared step made: wait for the base's evaluation (or for the SFT sweep to end)
while kill -0 $sft 2>/dev/null && [ ! -f "runs/$EXP/base_eval.json" ]; do sleep 10; done
$VR sweep runs/razor_sweeps/rl.yaml --quiet > runs/razor_sweeps/rl.log 2>&1 &
rl=$!
wait $sft; echo "SFT sweep rc=$?"
wait $rl; echo "RL sweep rc=$?"
$VR report "runs/$EXP" || true
echo JOB DONE
