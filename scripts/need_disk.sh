#!/usr/bin/env bash
# Refuses, naming what needs the space, when the disk holding this folder has less than $1 GB free: a clear
# message before an install, not pip's 'No space left on device' half-way through one.
# usage: bash scripts/need_disk.sh GB "what needs it"
set -euo pipefail
need_gb=$1
what=$2
free_gb=$(df -P -BG . | awk 'NR == 2 { sub("G", "", $4); print $4 }')
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "error: $what needs about $need_gb GB free on $(df -P . | awk 'NR == 2 { print $6 }'); $free_gb GB are free" >&2
  exit 1
fi
