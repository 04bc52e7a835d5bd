"""LIBERO's demonstrations (robomimic-style HDF5, one file per task) read as our demonstration episodes.

A LIBERO dataset is a folder of `<task name>_demo.hdf5` files (LIBERO's download, or OpenVLA's regenerated
no-noop files), each holding one task's demonstrations:
    data                              attrs: problem_info (JSON; its "language_instruction"), env_args, ...
    data/demo_<i>/actions             [T, 7]  OSC_POSE deltas in [-1, 1], gripper -1 open .. +1 close
    data/demo_<i>/obs/agentview_rgb   uint8 [T, H, W, 3], upside down as LIBERO's cameras render
    data/demo_<i>/obs/ee_states       [T, 6]  end-effector position and axis-angle
    data/demo_<i>/obs/gripper_states  [T, 2]  finger joints
    data/demo_<i>/obs/eye_in_hand_rgb, obs/joint_states, rewards, dones, states, ...  (rewards read if present)
Each demo becomes one of our episodes as the policy sees LIBERO in envs/libero.py, so SFT trains on what RL and the
evaluation show it: the agent-view frame rotated 180 degrees, through the JPEG round trip and resized to `image_size`
(`preprocess_image`); the gripper put on the policy's (closed, open) `gripper_range` (`gripper_opening`, OpenVLA's
transform); proprio = ee_states + gripper_states (envs/libero.py's make_proprio). The task is the registry's id
(libero_spatial_3) found by the file's task name, the instruction the file's own. h5py only: no LIBERO needed.
h5py (optional) and vla_razor.runs (torch) are imported where files are read or written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from data_collection.dataset import ACTION_DIM, DatasetError, Episode, EpisodeMeta, write_dataset
from envs.libero import gripper_opening, preprocess_image
from envs.tasks import LIBERO_TASKS

SUFFIX = "_demo.hdf5"
"""LIBERO names a task's demonstration file <task name>_demo.hdf5."""


def is_libero(root: Path) -> bool:
    """Whether `root` is a folder of LIBERO demonstration files."""
    return Path(root).is_dir() and any(Path(root).glob(f"*{SUFFIX}"))


def libero_task_id(name: str) -> str | None:
    """The registry's id of the LIBERO task named `name` (its BDDL file's stem), or None."""
    return next((t.id for t in LIBERO_TASKS.values() if t.libero.name == name), None)


def _instruction(data: Any, fallback: str) -> str:
    """The language instruction in the `data` group's problem_info JSON (a string, or a list LIBERO joins)."""
    try:
        said = json.loads(data.attrs["problem_info"])["language_instruction"]
    except (KeyError, TypeError, ValueError):
        return fallback
    return ("".join(said) if isinstance(said, list) else str(said)).strip().strip('"') or fallback


def read_libero_episodes(
    root: Path, image_size: int = 0, gripper_range: tuple[float, float] = (0.0, 1.0)
) -> Iterator[Episode]:
    """Every demo of every `*_demo.hdf5` file in `root` (files by name, demos by index) as our Episode, converted
    as the module docstring says; image_size 0 keeps the stored size."""
    import h5py

    files = sorted(Path(root).glob(f"*{SUFFIX}"))
    if not files:
        raise DatasetError(f"{root}: no LIBERO demonstration files (*{SUFFIX})")
    e = 0
    for path in files:
        name = path.name[: -len(SUFFIX)]
        task = libero_task_id(name) or name
        try:
            with h5py.File(path, "r") as f:
                data = f["data"]
                instruction = _instruction(data, name.replace("_", " "))
                demos = sorted((k for k in data if k.startswith("demo_")), key=lambda k: int(k[5:]))
                for demo in demos:
                    yield _episode(data[demo], path, demo, task, instruction, e, image_size, gripper_range)
                    e += 1
        except (OSError, KeyError, ValueError) as err:
            raise DatasetError(f"{path}: cannot read it as a LIBERO demonstration file ({err})") from None


def _episode(
    g: Any,
    path: Path,
    demo: str,
    task: str,
    instruction: str,
    e: int,
    image_size: int,
    gripper_range: tuple[float, float],
) -> Episode:
    actions = np.asarray(g["actions"][()], dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise DatasetError(f"{path}: {demo}/actions has shape {list(actions.shape)}, expected [steps, 7]")
    actions[:, 6] = gripper_opening(actions[:, 6], gripper_range)
    t = len(actions)
    frames = g["obs/agentview_rgb"][()]
    if len(frames) != t:
        raise DatasetError(f"{path}: {demo} has {len(frames)} agentview frames for {t} actions")
    images = np.stack([preprocess_image(frame, image_size or None) for frame in frames])
    obs = g["obs"]
    if "ee_states" in obs and "gripper_states" in obs:
        proprio = np.concatenate([obs["ee_states"][()][:, :6], obs["gripper_states"][()][:, :2]], axis=1)
    else:
        proprio = np.zeros((t, 0))
    if "rewards" in g:
        rewards = np.asarray(g["rewards"][()], dtype=np.float32).reshape(t)
    else:  # LIBERO's demonstrations succeed: the last step reaches the goal
        rewards = np.zeros(t, np.float32)
        rewards[-1:] = 1.0
    meta = EpisodeMeta(
        task=task,
        instruction=instruction,
        seed=int(demo[5:]),
        grid_point=e,
        grid_xy=[],
        attempt=0,
        steps=t,
        success=bool(t and rewards[-1] > 0),
        reset_kwargs={"libero_file": path.name, "demo": demo},
    )
    return Episode(images, proprio.astype(np.float32), actions, rewards, meta)


def libero_to_ours(
    src: Path,
    dst: Path,
    image_size: int = 0,
    gripper_range: tuple[float, float] = (0.0, 1.0),
    dataset_name: str = "",
) -> int:
    """Writes the LIBERO folder `src` as our dataset at `dst` (atomically), statistics under `dataset_name` (default:
    the tasks' suite when they share one, OpenVLA's unnorm key, else src's folder name); returns the frames."""
    from vla_razor.runs import atomic_write_folder

    env_info = {
        "libero_files": sorted(p.name for p in Path(src).glob(f"*{SUFFIX}")),
        "image": f"agentview_rgb rotated 180 degrees, JPEG round trip, resized to {image_size or 'as stored'}",
        "gripper": f"the policy's (closed, open) = {list(gripper_range)}, from LIBERO's -1 open .. +1 close",
    }

    def suite(metas: list[EpisodeMeta]) -> str:
        suites = {LIBERO_TASKS[m.task].libero.suite for m in metas if m.task in LIBERO_TASKS}
        return next(iter(suites)) if len(suites) == 1 else Path(src).name

    episodes = read_libero_episodes(src, image_size, gripper_range)
    desc = f"converted from LIBERO demonstrations {src}"
    return atomic_write_folder(
        Path(dst), lambda root: write_dataset(root, src, episodes, env_info, "libero", desc, dataset_name or suite)
    )
