#!/usr/bin/env bash
# SimplerEnv beside the project (issue #21 item 4): its own venv, since ManiSkill2_real2sim pins SAPIEN 2.2.2 and
# gymnasium < 1 (which would replace SAPIEN 3 and break the embedded world) and SAPIEN 2 needs numpy < 2.
# Usage: [WITH_RT1=1] bash scripts/setup_simpler.sh SIMPLER_DIR [VENV]   (SIMPLER_DIR: a SimplerEnv clone with its
# ManiSkill2_real2sim submodule; VENV defaults to .venv-simpler). Without a GPU driver, it also builds the Vulkan
# layer scripts/simpler/vk_extension_shim.c (lavapipe lacks device extensions SAPIEN 2 asks for) and prints the
# two variables that enable it. The project is installed there (editable, robot extra), so `vla-razor` runs in it.
set -euo pipefail
cd "$(dirname "$0")/.."
SIMPLER=${1:?usage: bash scripts/setup_simpler.sh SIMPLER_DIR [VENV]}
VENV=${2:-.venv-simpler}
SIMPLER=$(cd "$SIMPLER" && pwd)
[ -f "$SIMPLER/setup.py" ] && [ -f "$SIMPLER/ManiSkill2_real2sim/setup.py" ] || {
  echo "$SIMPLER: not a SimplerEnv clone with ManiSkill2_real2sim (git clone --recurse-submodules)"; exit 2; }
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q 'numpy<2' 'setuptools<81' scipy 'gymnasium>=0.28.1,<1.0' sapien==2.2.2 h5py \
  pyyaml tqdm GitPython tabulate transforms3d 'opencv-python<4.11' imageio trimesh rtree ruckig pillow
"$VENV/bin/python" -m pip install -q --no-deps -e "$SIMPLER/ManiSkill2_real2sim" -e "$SIMPLER"
# The project itself with its robot extra, so that every `vla-razor robot ...` command runs here. The same numpy and
# setuptools caps in the same resolve keep SAPIEN 2 working: torch's CPU wheel, transformers, timm and peft all accept
# numpy 1.26. Never the `sim` extra (mani-skill pulls SAPIEN 3 and gymnasium 1).
"$VENV/bin/python" -m pip install -q 'numpy<2' 'setuptools<81' -e ".[robot]" 'pytest>=8'
# WITH_RT1=1: also the RT-1 demonstrator (`robot collect --collect.demonstrator rt1`): TensorFlow 2.15 takes numpy 1.26
# too; tf-agents pins typing-extensions 4.5, which torch refuses, so it comes without its dependencies (the `rt1`
# extra lists them), as in the Makefile's .venv-rt1.
if [ "${WITH_RT1:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip install -q 'numpy<2' 'setuptools<81' -e ".[robot,rt1]"
  "$VENV/bin/python" -m pip install -q --no-deps tf-agents==0.19.0
fi
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi > /dev/null 2>&1; then
  echo "GPU driver found: SAPIEN 2 renders on it, no layer needed"
else
  out="$(cd "$VENV" && pwd)/vk_layer"
  mkdir -p "$out"
  command -v gcc > /dev/null && [ -f /usr/include/vulkan/vk_layer.h ] || {
    echo "building the Vulkan layer needs gcc and the Vulkan headers: apt-get install gcc libvulkan-dev"; exit 2; }
  gcc -shared -fPIC -O2 -o "$out/libVkLayer_vla_razor_extension_shim.so" scripts/simpler/vk_extension_shim.c
  cp scripts/simpler/VkLayer_vla_razor_extension_shim.json "$out/"
  echo "CPU rendering (lavapipe): export VK_LAYER_PATH=$out VK_INSTANCE_LAYERS=VK_LAYER_VLA_RAZOR_extension_shim"
  echo "and pass prepackaged_config=False (the prepackaged drawer configs use the ray-tracing shader)"
fi
"$VENV/bin/python" -c "import simpler_env, sapien.core, numpy, torch, vla_razor.cli.main
from vla_razor.hf_imports import import_timm, import_transformers  # they repair a CUDA-built torchvision
print('SimplerEnv and vla-razor importable in $VENV: numpy', numpy.__version__, 'torch', torch.__version__,
      'transformers', import_transformers().__version__, 'timm', import_timm().__version__)"
