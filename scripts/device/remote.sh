#!/usr/bin/env bash
# Runs on the device machine (see pack_wheels.sh). Steps, each one `run` call, back to back:
#   install1 (carry .whl/p1 .gl)   install2 (carry .whl/p2)   install3 (carry .whl/ms)
#   start "COMMAND"   the command in the background, in a private copy of the tree at /tmp/w (the tree of later
#                     calls is replaced; /tmp/w and /tmp/site stay while the machine is held), log /tmp/w/job.log
#   poll [SECONDS] [LINES]   wait, then the log's tail and the load
#   pack [PATH...]     JSON / logs / curves / configs written since start, and PATHs, as $OUT/results.tgz
#                      (returned files are at most 16 MiB each: split weights with `split -b 9M`)
#   packrun DIR        DIR (a run or experiment folder, checkpoints included) as $OUT/run.tgz.partNN pieces of
#                      15 MiB, to resume it in a later session (scripts/device/stage_run.sh prepares the carries)
#   stage              before start: the carried .stage/run.tgz.partNN pieces (one or two per call) to /tmp/stage;
#                      start unpacks them into /tmp/w, so the job resumes the runs they hold
# The sapien wheel is reassembled from its two halves; everything installs into /tmp/site (PYTHONPATH).
set -u
case "$1" in
install1) for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; mkdir -p /tmp/parts; cp .whl/p1/sapien.part.aa /tmp/parts/ ;;
install2) whl=/tmp/sapien-3.0.3-cp312-cp312-manylinux_2_28_x86_64.whl
          cat /tmp/parts/sapien.part.aa .whl/p2/sapien.part.ab > $whl
          pip install -q --no-index --no-deps --no-compile --target /tmp/site $whl .whl/p2/*.whl 2>&1 | grep -v WARN ;;
install3) pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ms/*.whl 2>&1 | grep -v WARN ;;
stage) mkdir -p /tmp/stage && cp .stage/run.tgz.part* /tmp/stage/ && ls -la /tmp/stage ;;
start) rm -rf /tmp/w && mkdir -p /tmp/w && cp -r . /tmp/w/ && cd /tmp/w
       if ls /tmp/stage/run.tgz.part* >/dev/null 2>&1; then cat /tmp/stage/run.tgz.part* | tar xz -C /tmp/w; fi
       touch .started
       export PYTHONPATH=/tmp/site:/tmp/w MS_ASSET_DIR=/tmp/w/.cache/maniskill MS_SKIP_ASSET_DOWNLOAD_PROMPT=1
       nohup setsid bash -c "$2" > /tmp/w/job.log 2>&1 < /dev/null &
       sleep 15; tail -5 /tmp/w/job.log ;;
poll) sleep "${2:-200}"; cd /tmp/w; date; uptime; tail -n "${3:-20}" job.log | tr '\r' '\n' | tail -n "${3:-20}" ;;
pack) cd /tmp/w; shift; find . -path ./.whl -prune -o -type f \( -name "*.json" -o -name "*.jsonl" -o -name "*.log" \
        -o -name "*.png" -o -name "*.yaml" -o -name "*.md" \) -newer .started -print 2>/dev/null > /tmp/list.txt
      for g in "$@"; do ls -d $g >> /tmp/list.txt 2>/dev/null; done
      tar czf "$OUT/results.tgz" -T /tmp/list.txt job.log; ls -la "$OUT" ;;
packrun) cd /tmp/w && tar czf /tmp/run.tgz "$2" && rm -f "$OUT"/run.tgz.part* && split -b 15M -d /tmp/run.tgz "$OUT/run.tgz.part"
         ls -la "$OUT" ;;
*) echo "usage: remote.sh install1|install2|install3|stage|start CMD|poll [S] [N]|pack [GLOB...]|packrun DIR"; exit 2 ;;
esac
