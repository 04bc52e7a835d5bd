#!/usr/bin/env bash
# Issue #21 item 8: OpenVLA-7B (random weights) through the CLI on one GPU, as a user launches it on a workstation:
# a base made by `robot pretrain` from the 7B config, then `robot sft` and `robot rl` with LoRA (rank 32) and full,
# each killed once after its first training state and resumed by the same command; time per iteration / update and
# peak GPU memory come from each run's metrics.jsonl (`peak_gpu_memory_gib`, `rollout_s`, `update_s`,
# `transitions_per_s`), collected into runs/cli_7b/timings.json.
# On the device (scripts/device/remote.sh): install1-5, then `start "bash scripts/device/cli_7b.sh python3"`.
# The same steps at the tiny size on a CPU (a dry run of the commands; session 13: rc 0 in ~8 min):
#   POLICY=configs/policy_tiny.yaml CAMERA=112 WORKERS=2 SFT_STEPS=6 EVERY=2 bash scripts/device/cli_7b.sh .venv/bin/python
# 7B runs' weights are removed once measured: a full run's training state (weights + AdamW moments) is ~45 GB, and
# the machine's disk holds 64 GiB with its image; the runs go to /dev/shm when it has more room.
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
avail_gb() { df --output=avail -BG "$1" | tail -1 | tr -dc 0-9; }
# Session 13 on the H200: the LoRA SFT's merged policy (15 GB) beside the base (15 GB) did not fit the disk
# ("No space left on device"): the machine's 64 GiB disk also holds its image. So the 7B runs go where there is
# more room, RAM's /dev/shm when it has more, and every measured run's weights go at once (prune).
echo "free: disk $(avail_gb runs 2>/dev/null || avail_gb .) GB, /dev/shm $(avail_gb /dev/shm) GB"
run_dir=runs
if [ "$POLICY" != configs/policy_tiny.yaml ] && [ "$(avail_gb /dev/shm)" -gt "$(avail_gb .)" ]; then run_dir=$SHM; fi
mkdir -p "$run_dir"
echo "the 7B runs in $run_dir"

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
[ "$POLICY" = configs/policy_tiny.yaml ] || rm -rf "$OUT/base/checkpoints"  # its training state: the policy is kept

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
prune() {  # a measured 7B run's weights and training state go (disk); its metrics and summary stay, copied beside
  [ "$POLICY" = configs/policy_tiny.yaml ] || rm -rf "$1"/policy "$1"/checkpoints   # the logs (it may be in /dev/shm)
  mkdir -p "$OUT/measured" && cp -r "$1" "$OUT/measured/" 2>/dev/null || true
}
kill_then_resume sft_lora "${sft[@]}" --runs_dir "$run_dir" --lora.enabled true --sft.run_name sft_lora || echo "sft_lora failed"
prune "$run_dir/$EXP/runs/sft_lora"
kill_then_resume rl_lora "${rl[@]}" --runs_dir "$run_dir" --lora.enabled true --rl.run_name rl_lora --checkpoint_every 1 \
  || echo "rl_lora failed"
prune "$run_dir/${EXP}_rl/runs/rl_lora"
# A full 7B run holds its training state (bf16 weights + AdamW moments, 45 GB) and, at its end, its policy (15 GB):
# 60 GB beside the base's 15 on the disk. Where that room is missing, the full runs are skipped and say so.
if [ "$POLICY" = configs/policy_tiny.yaml ] || [ "$(avail_gb "$run_dir")" -ge 62 ]; then
  kill_then_resume sft_full "${sft[@]}" --runs_dir "$run_dir" --sft.run_name sft_full || echo "sft_full failed"
  prune "$run_dir/$EXP/runs/sft_full"
  kill_then_resume rl_full "${rl[@]}" --runs_dir "$run_dir" --rl.run_name rl_full --checkpoint_every 1 || echo "rl_full failed"
  prune "$run_dir/${EXP}_rl/runs/rl_full"
else
  echo "full runs skipped: $run_dir has $(avail_gb "$run_dir") GB free, a full 7B run needs ~62"
fi

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
