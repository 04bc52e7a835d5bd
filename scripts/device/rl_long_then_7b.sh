#!/usr/bin/env bash
# Session 12's device job (run in session 13): the rest of the long RL run (#19 item 3: iterations 50-60, resumed from the state
# packed in session 11) and, beside it, the 7B through the CLI (#21 item 8: scripts/device/cli_7b.sh). The RL run
# needs the CPU (10 simulator workers) and little GPU; the 7B runs need the GPU and 6 workers, so they share the
# machine. Calls (each one `run`, back to back):
#   install1 .. install5 (scripts/device/remote.sh);
#   here, before: bash scripts/device/stage_run.sh /work/.device/session11/poll_6  -> .stage/run.tgz.part00, part01;
#   one `remote.sh stage` per piece (carry [".stage/run.tgz.part00"], then [".stage/run.tgz.part01"]);
#   remote.sh start "bash scripts/device/rl_long_then_7b.sh";
#   then polls: remote.sh poll 270 30; remote.sh pack "runs/cli_7b*/*.log" "runs/cli_7b/wall_s.txt";
#   remote.sh packrun runs/rl_long  (the RL run, in case it is cut again).
set -x
# then, on the CPU the RL run leaves, the rollout bench of rollout_h200_tiny.json again (graph batches now padded to
# row buckets); the 7B runs may still share the machine, so the log says what else ran
{ RL_WORKERS=10 bash scripts/device/rl_long.sh > rl_long.log 2>&1
  pgrep -af "cli_7b|vla_razor.cli.main" > rollout_bench_beside.log
  python3 bench/rl_rollout_throughput.py --device cuda --workers 14 --pipeline-groups 1 2 --episodes 112 \
    --max-steps 16 --camera-size 112 --threads 4 --temperature 1 \
    --out docs/results/perf/rollout_h200_tiny_buckets.json > rollout_bench.log 2>&1; } &
# the GPU's queue after the CLI runs: #26's benches (scripts/device/perf26.sh; its JSON lands in docs/results/perf)
{ WORKERS=6 bash scripts/device/cli_7b.sh python3 > cli_7b.log 2>&1
  for step in test gen lora full; do bash scripts/device/perf26.sh python3 $step > "perf26_$step.log" 2>&1; done; } &
wait
echo JOB DONE
