#!/usr/bin/env bash
# Issue #21 item 8: OpenVLA-7B (random weights) through the CLI on one GPU, as a user launches it on a workstation:
# a base made by `robot pretrain` from the 7B config, then `robot sft` and `robot rl` with LoRA (rank 32) and full,
# each killed once after its first training state and resumed by the same command; time per iteration / update and
# peak GPU memory come from each run's metrics.jsonl (`peak_gpu_memory_gib`, `rollout_s`, `update_s`,
# `transitions_per_s`), collected into runs/cli_7b/timings.json.
# On the device (scripts/device/remote.sh): install1-3, then `start "bash scripts/device/cli_7b.sh python3"`.
# The same steps at the tiny size on a CPU (a dry run of the commands):
#   POLICY=configs/policy_tiny.yaml CAMERA=112 WORKERS=2 SFT_STEPS=6 EVERY=2 bash scripts/device/cli_7b.sh .venv/bin/python
# Full 7B runs are removed once measured: a full run's training state (weights + AdamW moments) is ~45 GB, and the
# machine's disk holds 64 GiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
POLICY=${POLICY:-configs/policy_openvla_7b.yaml}
CAMERA=${CAMERA:-224}
W=${WORKERS:-14}
SFT_STEPS=${SFT_STEPS:-200}
EVERY=${EVERY:-50}        # checkpoint_every: the first training state, where each run is killed
EXP=${EXP:-cli_7b}
SHM=/dev/shm/vla_razor_runs
OUT=runs/$EXP
mkdir -p "$OUT"

# the 7B policy config with the byte tokenizer (a random-weight model has no tokenizer folder)
grep -v "^tokenizer:" "$POLICY" > "$OUT/policy.yaml" && echo "tokenizer: bytes" >> "$OUT/policy.yaml"

# 1. demonstrations at the policy's image size (the scripted angled expert, 4 x 4 grid, 4 each)
[ -f "$OUT/demos/summary.json" ] || "$PY" data_collection/rt1_grid.py --task pick_can --expert_style angled --grid 4x4 --successes_per_point 4 \
  --camera_size "$CAMERA" --workers "$W" --progress false --out "$OUT/demos"

common=(--config configs/robot_embedded.yaml --experiment "$EXP" --camera_size "$CAMERA" --workers "$W" --threads 4
        --wandb off --progress false --checkpoint_every "$EVERY" --eval.pick_can_episodes 16 --eval.probe_episodes 8
        --eval.kl_episodes 2 --eval.kl_frames_per_episode 4 --eval.max_steps 30)

# 2. the base: behaviour cloning of a fresh 7B for a few updates (the CLI's own way to make a base)
start=$SECONDS
"$PY" -m vla_razor.cli.main robot pretrain "${common[@]}" --pretrain.policy_config "$OUT/policy.yaml" \
  --pretrain.datasets "[\"$OUT/demos\"]" --pretrain.optim.max_steps 4 --pretrain.optim.batch_size 16 \
  --pretrain.optim.warmup_steps 0 --pretrain.snapshot_every 0 --pretrain.out "$OUT/base"
echo "pretrain $((SECONDS - start))" >> "$OUT/wall_s.txt"
base=$OUT/base/policy

# Runs `vla-razor ARGS` in the background, kills it (SIGKILL, as a lost machine would) once its run folder holds
# a training state, then runs the same command to the end: it must resume, not restart.
kill_then_resume() {
  local tag=$1; shift
  echo "=== $tag: start"
  setsid "$PY" -m vla_razor.cli.main "$@" > "$OUT/$tag.first.log" 2>&1 &
  local pid=$!
  # (find fails on the folders that do not exist; under pipefail that would hide what it found)
  until { find {runs,"$SHM"}/{"$EXP","${EXP}_rl"}/runs -path "*checkpoints/training_state.safetensors" \
            -newer "$OUT/policy.yaml" 2>/dev/null || true; } | grep -q .; do
    if ! kill -0 "$pid" 2>/dev/null; then  # ended on its own: finished before (a rerun of this script) or failed
      if wait "$pid"; then echo "$tag: ended without a kill"; tail -3 "$OUT/$tag.first.log"; return 0; fi
      echo "$tag failed before its first training state"; tail -20 "$OUT/$tag.first.log"; return 1
    fi
    sleep 2
  done
  sleep 1
  kill -9 -- -"$pid"; wait "$pid" 2>/dev/null || true
  echo "=== $tag: killed after its first training state; resuming"
  local start=$SECONDS
  "$PY" -m vla_razor.cli.main "$@" > "$OUT/$tag.resume.log" 2>&1 || { tail -30 "$OUT/$tag.resume.log"; return 1; }
  echo "$tag.resume $((SECONDS - start))" >> "$OUT/wall_s.txt"
  grep -i "resum" "$OUT/$tag.resume.log" | head -3 || true
  touch "$OUT/policy.yaml"   # the next run's training state is newer than this
}

sft=(robot sft "${common[@]}" --base "$base" --sft.datasets "[\"$OUT/demos\"]" --sft.optim.batch_size 16
     --sft.optim.max_steps "$SFT_STEPS" --sft.optim.lr 1e-5)
# RL's new task is close_drawer here: a random-weight 7B never picks the can, so pick-can RL would make no update
# (binary success, no rows with a learning signal), while random pushes close an open drawer now and then; its own
# experiment, since an experiment's KL frames and base evaluation belong to one new task
rl=(robot rl "${common[@]}" --experiment "${EXP}_rl" --base "$base" --task close_drawer --collect.task close_drawer
    --probes '["open_drawer"]' --rl.grid "[4, 4]"
    --rl.episodes_per_point 4 --rl.iterations 2 --rl.max_steps 16 --rl.optim.batch_size 16 --rl.optim.lr 1e-5 --rl.eval_every 0 --eval.kl_every 0)
prune() {  # a measured 7B run's weights and training state go (disk); its metrics and summary stay
  [ "$POLICY" = configs/policy_tiny.yaml ] || rm -rf "$1"/policy "$1"/checkpoints
}
kill_then_resume sft_lora "${sft[@]}" --lora.enabled true --sft.run_name sft_lora
prune "runs/$EXP/runs/sft_lora"
kill_then_resume rl_lora "${rl[@]}" --lora.enabled true --rl.run_name rl_lora --checkpoint_every 1
prune "runs/${EXP}_rl/runs/rl_lora"
# A full 7B run holds the base (15 GB), its training state (bf16 weights + AdamW moments, 45 GB) and its policy (15
# GB) at its end: 75 GB, more than this machine's 64 GiB disk. Where the disk is short and /dev/shm (RAM) has room,
# the full runs' folders go there.
full_dir=runs
if [ "$(df --output=avail -BG runs | tail -1 | tr -dc 0-9)" -lt 64 ] && [ "$POLICY" != configs/policy_tiny.yaml ]; then
  if [ "$(df --output=avail -BG /dev/shm | tail -1 | tr -dc 0-9)" -ge 64 ]; then full_dir=$SHM; fi
  echo "full runs in $full_dir (disk: $(df -h --output=avail runs | tail -1), /dev/shm: $(df -h --output=avail /dev/shm | tail -1))"
fi
kill_then_resume sft_full "${sft[@]}" --runs_dir "$full_dir" --sft.run_name sft_full || echo "sft_full failed"
prune "$full_dir/$EXP/runs/sft_full"
kill_then_resume rl_full "${rl[@]}" --runs_dir "$full_dir" --rl.run_name rl_full --checkpoint_every 1 || echo "rl_full failed"
prune "$full_dir/${EXP}_rl/runs/rl_full"

# 3. what each run measured: per-update / per-iteration time and peak GPU memory
"$PY" - "$EXP" <<'EOF'
import json, sys
from pathlib import Path
exp = Path("runs") / sys.argv[1]
out = {}
folders = [Path(root) / name / "runs" for root in ("runs", "/dev/shm/vla_razor_runs") for name in (exp.name, f"{exp.name}_rl")]
for run in sorted(r for f in folders if f.is_dir() for r in f.iterdir()):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [r for r in rows if r["split"] == "train"]
    last = {}
    for r in train:
        last.setdefault(r["name"], []).append(r["value"])
    out[run.name] = {k: (v[-1] if k != "peak_gpu_memory_gib" else max(v)) for k, v in last.items()
                     if k in ("peak_gpu_memory_gib", "rollout_s", "update_s", "transitions_per_s",
                              "iterations_per_min", "env_steps_per_s", "loss", "updates")}
    out[run.name]["train_rows_logged"] = len(train)
for line in (exp / "wall_s.txt").read_text().splitlines():  # each command's wall time, loading included
    name, seconds = line.split()
    out.setdefault("wall_s", {})[name] = int(seconds)
(exp / "timings.json").write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
EOF
echo JOB DONE
