#!/usr/bin/env bash
# device-side driver (not committed): background jobs and polling
cmd=$1; shift
case $cmd in
  start) rm -rf /tmp/job/repo; mkdir -p /tmp/job; cp -r . /tmp/job/repo; cd /tmp/job/repo
         export PYTHONPATH=/tmp/site:$PWD MS_ASSET_DIR=$PWD/.cache/maniskill MS_SKIP_ASSET_DOWNLOAD_PROMPT=1 PYTHONUNBUFFERED=1
         setsid nohup bash -c "$*" > /tmp/job/log 2>&1 < /dev/null & echo started;;
  poll) limit=$1; t0=$(date +%s); while [ $(( $(date +%s) - t0 )) -lt $limit ]; do if [ -f /tmp/job/done ]; then echo DONE; break; fi; sleep 5; done; tail -c 5000 /tmp/job/log;;
esac
# again: a new background job inside the existing /tmp/job/repo (its data and runs kept), with this tree's code
case $cmd in
  again) rsync -a --exclude data --exclude runs --exclude .whl --exclude .gl ./ /tmp/job/repo/ 2>/dev/null || cp -r vla_razor scripts bench configs envs data_collection /tmp/job/repo/
         cd /tmp/job/repo; rm -f /tmp/job/done
         export PYTHONPATH=/tmp/site:$PWD MS_ASSET_DIR=$PWD/.cache/maniskill MS_SKIP_ASSET_DOWNLOAD_PROMPT=1 PYTHONUNBUFFERED=1
         setsid nohup bash -c "$*" > /tmp/job/log 2>&1 < /dev/null & echo started;;
esac
