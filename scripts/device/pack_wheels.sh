#!/usr/bin/env bash
# Packs ManiSkill3 + SAPIEN 3 (and the Vulkan loader debs) for the device machine, which has torch but no network,
# in five carries that each fit its 64 MiB per call together with this working tree (41 MiB on 2026-12-05: two
# committed bases and the results):
#   .whl/p1 .. .whl/p4  a quarter of the sapien wheel each (sapien.part.aa .. ad; every carry holds the list and
#                       the wheel's sha256) and a share of the small dependencies; .gl/ (the loader debs) beside p1
#   .whl/p5             a slimmed mani_skill wheel (robots other than panda, the panda's camera and humanoid-head
#                       meshes, the large HDR maps dropped: the embedded world builds panda_v2 from its collision meshes)
# Each is at most ~15 MiB, so the working tree may grow to ~48 MiB.
# Usage (here, in the repo root): bash scripts/device/pack_wheels.sh; then on the device, in five calls back to
# back (the machine is given back after 30 s idle): bash scripts/device/remote.sh install1 .. install5 (carry
# .whl/pK, and .gl with install1); the call that completes the sapien wheel checks and installs it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
ex=$(git rev-parse --git-path info/exclude)  # (a worktree's .git is a file)
for p in /.whl/ /.gl/ /job.sh; do grep -qx "$p" "$ex" 2>/dev/null || echo "$p" >> "$ex"; done
rm -rf .whl .gl; mkdir -p .whl/dl .whl/p1 .whl/p2 .whl/p3 .whl/p4 .whl/p5 .whl/full .gl
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
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(".whl/p5/" + src.split("/")[-1], "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if not item.filename.startswith(drop):
            zout.writestr(item, zin.read(item.filename))
PY
sapien=$(ls .whl/dl/sapien-*.whl)
split -n 4 "$sapien" .whl/sapien.part.
(cd .whl && ls sapien.part.?? > sapien.parts && sha256sum < "../$sapien" | sed "s|-\$|$(basename "$sapien")|" > sapien.sha256)
for k in 1 2 3 4; do
  mv .whl/sapien.part.a$(echo abcd | cut -c$k) .whl/p$k/ && cp .whl/sapien.parts .whl/sapien.sha256 .whl/p$k/
done
rm "$sapien" .whl/sapien.parts .whl/sapien.sha256
k=0; for w in $(ls -S .whl/dl/*.whl); do mv "$w" .whl/p$((k % 4 + 1))/; k=$((k + 1)); done  # largest first, in turn
rm -rf .whl/dl .whl/full
(cd .gl && apt-get download -q libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1)
du -sh .whl/p? .gl
