#!/usr/bin/env bash
# Does the device machine simulate faster when each worker renders its 112 px camera on its own CPU core (Mesa's
# lavapipe) than when 14 worker processes share the GPU? On the 2-core CPU here a pick-can step is ~12 ms, of
# which ~7.5 ms is lavapipe's render and read-back and ~2.5 ms the 40 physics substeps; on the H200 machine a
# worker's step took ~26 ms with GPU rendering (537 env steps/s from 14 workers, rollout_h200_tiny.json). If
# lavapipe holds its ~10-15 ms there, 14 workers give ~2x the env steps. (A renderer changes the images: one
# renderer for every model of an experiment.)
#   here:   bash scripts/device/lavapipe.sh pack     lavapipe and the libraries it needs beyond glibc / libstdc++ /
#                                                    zlib, from this machine's Mesa (bookworm-backports 25.x), as
#                                                    .lvp/lvp.tar.xz.partNN pieces of 25 MB (one per call)
#   device: install1-5 (remote.sh), then one call per piece: `bash scripts/device/lavapipe.sh piece`
#           (carry [".lvp/lvp.tar.xz.partNN"]), then `bash scripts/device/lavapipe.sh bench` (no carry): the rollout
#           bench with a no-op and with the tiny base, 14 workers, GPU rendering then lavapipe, JSON into $OUT;
#           a job renders on lavapipe after `eval "$(bash scripts/device/lavapipe.sh env)"` (razor20.sh: RENDERER=lavapipe)
#   here (the same mechanics on this CPU): bash scripts/device/lavapipe.sh pack && LVP_PIECES=.lvp \
#           bash scripts/device/lavapipe.sh piece && WORKERS=2 EPISODES=4 PY=.venv/bin/python bash scripts/device/lavapipe.sh bench
#           (session 13: rc 0; a simulator under `env` maps /tmp/lvp/libvulkan_lvp.so and renders its camera)
#   session 14 on the device: GPU rendering 528.6 (no-op) / 289.7 (tiny base) env steps/s; lavapipe failed with
#   "Failed to find a supported physical device cuda:0" (ManiSkill asked for a CUDA render device because CUDA was
#   visible); `env` now also sets VLA_RAZOR_RENDER_BACKEND=cpu (envs/__init__.py), so that it asks for lavapipe
set -euo pipefail
cd "$(dirname "$0")/../.."
PIECES=/tmp/lvp_pieces
ROOT=/tmp/lvp
case "${1:-}" in
pack)
  ex=$(git rev-parse --git-path info/exclude); grep -qx "/.lvp/" "$ex" 2>/dev/null || echo "/.lvp/" >> "$ex"
  lib=$(ldconfig -p | awk '/libvulkan_lvp.so/ {print $NF; exit}')
  [ -n "$lib" ] || { echo "no libvulkan_lvp.so here: bash scripts/setup_vulkan.sh first"; exit 1; }
  rm -rf .lvp /tmp/lvp_pack && mkdir -p .lvp /tmp/lvp_pack
  cp -L "$lib" /tmp/lvp_pack/
  for dep in $(ldd "$lib" | awk '$3 ~ /^\// {print $3}'); do
    case "$(basename "$dep")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libgcc_s.so*|libstdc++.so*|libz.so*|ld-linux*) ;;
      *) cp -L "$dep" /tmp/lvp_pack/ ;;
    esac
  done
  printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s/libvulkan_lvp.so", "api_version": "1.3.0"}}\n' \
    "$ROOT" > /tmp/lvp_pack/lvp_icd.json
  tar -C /tmp/lvp_pack -cJf .lvp/lvp.tar.xz . && rm -rf /tmp/lvp_pack
  split -b 25M -d .lvp/lvp.tar.xz .lvp/lvp.tar.xz.part && rm .lvp/lvp.tar.xz
  ls -la .lvp ;;
piece)
  mkdir -p "$PIECES" && cp "${LVP_PIECES:-.lvp}"/lvp.tar.xz.part* "$PIECES"/ && ls -la "$PIECES" ;;
unpack)
  rm -rf "$ROOT" && mkdir -p "$ROOT" && cat "$PIECES"/lvp.tar.xz.part* | tar -C "$ROOT" -xJ && ls "$ROOT" | head -3 ;;
env)  # the variables that make a process (and its simulator workers) render on lavapipe: eval "$(lavapipe.sh env)"
  echo "export VLA_RAZOR_RENDER_BACKEND=cpu VK_ICD_FILENAMES=$ROOT/lvp_icd.json VK_DRIVER_FILES=$ROOT/lvp_icd.json" \
       "LP_NUM_THREADS=1 LD_LIBRARY_PATH=$ROOT\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" ;;
bench)
  PY=${PY:-python3}
  bash "$0" unpack
  out=${OUT:-docs/results/perf}
  args=(--device "${DEVICE:-cuda}" --workers "${WORKERS:-14}" --pipeline-groups 1 --episodes "${EPISODES:-112}"
        --max-steps 16 --camera-size 112 --threads 4 --temperature 1)
  echo "== GPU rendering (the machine's own Vulkan driver)"
  "$PY" bench/rl_rollout_throughput.py "${args[@]}" --out "$out/render_gpu.json" 2>&1 | tail -3
  echo "== lavapipe, one render thread per worker"
  ( eval "$(bash "$0" env)"; "$PY" bench/rl_rollout_throughput.py "${args[@]}" --out "$out/render_lavapipe.json" 2>&1 | tail -3 ) ;;
*) echo "usage: lavapipe.sh pack|piece|unpack|env|bench"; exit 2 ;;
esac
