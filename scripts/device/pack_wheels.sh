#!/usr/bin/env bash
# Packs ManiSkill3 + SAPIEN 3 (and the Vulkan loader debs) for the device machine, which has torch but no network,
# in three carries that each fit its 64 MiB per call together with this working tree (~25 MB):
#   .whl/p1  the first half of the sapien wheel, with .gl/ (the loader debs)
#   .whl/p2  its second half
#   .whl/ms  a slimmed mani_skill wheel (robots other than panda, the panda's camera and humanoid-head meshes, the
#            large HDR maps dropped: the embedded world builds panda_v2 from its collision meshes) and the small
#            dependencies
# Each is at most ~27 MB, so the working tree may grow to ~37 MB (an experiment's committed state, keep_state.sh).
# Usage (here, in the repo root): bash scripts/device/pack_wheels.sh; then on the device, in three calls back to
# back (the machine is given back after 30 s idle): bash scripts/device/remote.sh install1|install2|install3.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
ex=$(git rev-parse --git-path info/exclude)  # (a worktree's .git is a file)
for p in /.whl/ /.gl/ /job.sh; do grep -qx "$p" "$ex" 2>/dev/null || echo "$p" >> "$ex"; done
rm -rf .whl .gl; mkdir -p .whl/dl .whl/p1 .whl/p2 .whl/ms .whl/full .gl
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
   --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
   --platform manylinux1_x86_64 --platform any"
python3 -m pip download -q $P -d .whl/dl sapien==3.0.3 gymnasium farama-notifications dacite GitPython gitdb \
  smmap transforms3d trimesh defusedxml tyro docstring-parser typeguard shtab pyperclip importlib_resources \
  pytorch_kinematics==0.7.6 arm-pytorch-utilities pytorch_seed ipython traitlets jedi parso prompt_toolkit wcwidth \
  pexpect ptyprocess decorator matplotlib-inline stack_data executing asttokens pure_eval
python3 -m pip download -q $P -d .whl/full mani-skill==3.0.1
python3 - <<'PY'
import glob, zipfile
src = glob.glob(".whl/full/mani_skill-*.whl")[0]
drop = ("mani_skill/assets/environment_maps/", "mani_skill/utils/scene_builder/replicacad/autumn_field_puresky_4k.hdr",
        "mani_skill/assets/robots/panda/realsense2_description/",
        "mani_skill/assets/robots/panda/sciurus17_description/") + tuple(f"mani_skill/assets/robots/{r}/" for r in
    ("g1_humanoid", "fetch", "trifinger", "dclaw", "ability_hand", "koch", "inspire_hand", "allegro", "so100", "xarm7"))
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(".whl/ms/" + src.split("/")[-1], "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if not item.filename.startswith(drop):
            zout.writestr(item, zin.read(item.filename))
PY
sapien=$(ls .whl/dl/sapien-*.whl)
split -b 26M "$sapien" .whl/sapien.part. && mv .whl/sapien.part.aa .whl/p1/ && mv .whl/sapien.part.ab .whl/p2/
rm "$sapien"; mv .whl/dl/*.whl .whl/ms/; rm -rf .whl/dl .whl/full
(cd .gl && apt-get download -q libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1)
du -sh .whl/p1 .whl/p2 .whl/ms .gl
