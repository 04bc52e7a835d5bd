#!/usr/bin/env bash
# Prepares a run packed on the device (remote.sh packrun / packsweep: run.tgz.partNN pieces, and packsweep's
# demos.tgz.partNN, in a call's files folder) for a later session's machine: joins each archive's pieces, checks
# it, and splits it into .stage/ pieces of at most 30 MB, each small enough to travel with the working tree
# (~27 MB) in one call's 64 MiB. Then, on the device, after install1-3: one `remote.sh stage` call per piece
# (carry ".stage/run.tgz.partNN" or ".stage/demos.tgz.partNN"), then `start`, which unpacks both.
# Usage: bash scripts/device/stage_run.sh FOLDER_WITH_PIECES
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
ex=$(git rev-parse --git-path info/exclude); grep -qx "/.stage/" "$ex" 2>/dev/null || echo "/.stage/" >> "$ex"
rm -rf .stage && mkdir -p .stage
cat "$1"/run.tgz.part* > .stage/run.tgz
tar tzf .stage/run.tgz > /dev/null   # a missing or truncated piece stops here
tar tzf .stage/run.tgz | grep -m3 training_state || echo "note: no training state in the archive (nothing to resume)"
split -b 30M -d .stage/run.tgz .stage/run.tgz.part && rm .stage/run.tgz
if ls "$1"/demos.tgz.part* > /dev/null 2>&1; then
  cat "$1"/demos.tgz.part* > .stage/demos.tgz && tar tzf .stage/demos.tgz > /dev/null
  split -b 30M -d .stage/demos.tgz .stage/demos.tgz.part && rm .stage/demos.tgz
fi
ls -la .stage
