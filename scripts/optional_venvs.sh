#!/usr/bin/env bash
# Which cross-check venvs `make test` builds: each one already installed, and each missing one the disk has room for
# beside the suite, taken in order. CI machines have had from 4 to 80 GB free (stop 48 failed installing the LeRobot
# venv with 4 GB left), so a missing venv that does not fit is skipped with a line on stderr saying so; the tests
# that need it then skip, naming it. Prints the make targets to build, space-separated.
# usage: bash scripts/optional_venvs.sh SUITE_GB VENV_DIR:GB:TARGET ...
#   SUITE_GB: room kept for the main suite's temporary files; GB: what the venv takes once installed.
set -euo pipefail
suite_gb=$1
shift
free_gb=$(df -P -BG . | awk 'NR == 2 { sub("G", "", $4); print $4 }')
left=$((free_gb - suite_gb))
if [ "$left" -lt 0 ]; then left=0; fi
targets=()
for spec in "$@"; do
  IFS=: read -r venv size_gb target <<<"$spec"
  if [ -f "$venv/.installed" ]; then
    targets+=("$target")
  elif [ "$left" -ge "$size_gb" ]; then
    targets+=("$target")
    left=$((left - size_gb))
  else
    echo "skipping $venv ($target): it takes about $size_gb GB and $left GB are free beside the suite's $suite_gb;" \
      "the tests that need it skip (make $target builds it where there is room)" >&2
  fi
done
echo "${targets[@]}"
