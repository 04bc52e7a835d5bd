#!/usr/bin/env bash
# The embedded experiment of docs/results/robot on a 2-core CPU machine (lavapipe rendering), no GPU: the base's
# evaluation and KL frames, 500 `angled` SFT demonstrations (5 per grid point; later 500 `top_down` ones), then
# SFT and RL settings one after another (on 2 cores, runs side by side only share the cores), then the summary
# and the report.
# Every step resumes and finished runs are skipped: rerun the script after an interruption. Hours on 2 cores.
#   Usage: bash scripts/robot_embedded_cpu.sh [PYTHON]
#   env: BASE, EXPERIMENT (robot_embedded_cpu), WORKERS (6: more simulator processes than cores, so the policy's
#        batches are larger; the tiny policy, not the simulator, bounds CPU rollouts: ~20 env steps/s, an
#        evaluation ~8 minutes), RL_ITERATIONS (3),
#        STEPS (the steps to run, in order; default all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
W=${WORKERS:-6}
export MS_ASSET_DIR=${MS_ASSET_DIR:-$PWD/.cache/maniskill} MS_SKIP_ASSET_DOWNLOAD_PROMPT=1
demos=data/demos/pick_can_angled_112_5
common=(--config configs/robot_embedded.yaml --base "${BASE:-assets/base_policy_embedded}"
        --experiment "${EXPERIMENT:-robot_embedded_cpu}" --wandb off --threads 2 --workers "$W"
        --collect.successes_per_point 5 --collect.out "$demos" --sft.datasets "[$demos]")
# RL: a 5 x 5 grid of training placements x 4 episodes (more grid points with both a success and a failure, so a
# normalized reward carries signal, than 10 x 10 x 2 at the same 100 episodes an iteration)
rl=(--rl.grid "[5, 5]" --rl.episodes_per_point 4 --rl.iterations "${RL_ITERATIONS:-3}" --rl.eval_every 0)
robot() { "$PY" -m vla_razor.cli.main robot "$1" "${common[@]}" "${@:2}"; }  # a step's own flags win

step_base() { robot eval; }                                   # the base's evaluation and the KL frames
step_collect() { robot collect --collect.workers 2; }          # scripted, no policy: one process per core
step_sft_1e-4() { robot sft --sft.optim.lr 1e-4; }
step_sft_3e-5() { robot sft --sft.optim.lr 3e-5; }
step_sft_3e-4() { robot sft --sft.optim.lr 3e-4; }
# SFT on demonstrations in the base's own (top-down) style over the whole grid: the base knows the motion, not
# the far placements
td=(--collect.expert_style top_down --collect.out data/demos/pick_can_top_down_112_5
    --sft.datasets "[data/demos/pick_can_top_down_112_5]")
step_collect_td() { robot collect --collect.workers 2 "${td[@]}"; }
step_sft_td_1e-4() { robot sft "${td[@]}" --sft.optim.lr 1e-4 --sft.run_name sft_topdown_lr0.0001_bs32_ep1_s0; }
# 1-0 Reinforce: SFT on the policy's own successes (section 5.1), no negative gradients
step_rl_10() { robot rl "${rl[@]}" --rl.advantage one_zero --rl.optim.lr 1e-4; }
# the same with batches of 8 rows: ~4x the updates on an iteration's few successful episodes
step_rl_10_bs8() { robot rl "${rl[@]}" --rl.advantage one_zero --rl.optim.lr 1e-4 --rl.optim.batch_size 8; }
# REINFORCE with the normalized reward, each episode weighted the same (length-normalized)
step_rl_ln() { robot rl "${rl[@]}" --rl.length_normalize true --rl.optim.lr 1e-5; }
step_report() { robot report; }

for step in ${STEPS:-base collect sft_1e-4 rl_10 collect_td sft_td_1e-4 rl_10_bs8 sft_3e-5 report}; do
  echo "== $step ($(date -u +%H:%M:%S))"
  "step_$step"
done
