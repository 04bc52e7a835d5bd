#!/usr/bin/env bash
# Prepares a run packed on the device (remote.sh packrun / packsweep: run.tgz.partNN pieces, and packsweep's
# demos.tgz.partNN, in a call's files folder) for a later session's machine: joins each archive's pieces, checks
# it, and splits it into .stage/ pieces of at most 19 MiB, each small enough to travel with the working tree (34 MB in
# session 19, 41 MiB in session 25 with the fast base) in one call's 64 MiB. Then, on the device, after install1-5: one
# `remote.sh stage` call per piece
# (carry ".stage/run.tgz.partNN" or ".stage/demos.tgz.partNN"), then `start`, which unpacks both.
# A second job's pieces (remote.sh's JOB=NAME: NAME_run.tgz.partNN ...) are staged with NAME as the second argument,
# beside the first job's, and go up with `JOB=NAME remote.sh stage`.
# Usage: bash scripts/device/stage_run.sh FOLDER_WITH_PIECES [JOB]
set -euo pipefail
P="${2:+${2}_}"
cd "$(git rev-parse --show-toplevel)"
ex=$(git rev-parse --git-path info/exclude); grep -qx "/.stage/" "$ex" 2>/dev/null || echo "/.stage/" >> "$ex"
mkdir -p .stage && rm -f .stage/${P}run.tgz*
# a later packsweep brings no datasets back (it packs only those its own job collected): the staged ones stay
ls "$1"/${P}demos.tgz.part* > /dev/null 2>&1 && rm -f .stage/${P}demos.tgz*
cat "$1"/${P}run.tgz.part* > .stage/${P}run.tgz
tar tzf .stage/${P}run.tgz > /dev/null   # a missing or truncated piece stops here
tar tzf .stage/${P}run.tgz | grep -m3 training_state || echo "note: no training state in the archive (nothing to resume)"
split -b 19M -d .stage/${P}run.tgz .stage/${P}run.tgz.part && rm .stage/${P}run.tgz
if ls "$1"/${P}demos.tgz.part* > /dev/null 2>&1; then
  cat "$1"/${P}demos.tgz.part* > .stage/${P}demos.tgz && tar tzf .stage/${P}demos.tgz > /dev/null
  split -b 19M -d .stage/${P}demos.tgz .stage/${P}demos.tgz.part && rm .stage/${P}demos.tgz
fi
ls -la .stage
