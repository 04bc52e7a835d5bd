"""Our demonstration folders <-> LeRobotDataset (format v3.0), through the `lerobot` package's own LeRobotDataset.

lerobot's pins (torch < 2.11, datasets < 5, huggingface-hub < 0.36) clash with the main venv's, so this module runs
in its own venv (`make setup-lerobot` builds .venv-lerobot); data_collection/convert.py calls it there as
`python -m data_collection.lerobot_format {to-lerobot,from-lerobot} SRC DST`. It never touches the Hub
(HF_HUB_OFFLINE=1): a LeRobotDataset is always a local folder. `lerobot` is imported inside the functions that
need it: it exists only in that venv.

A LeRobotDataset written from ours has, per frame (images inside the parquet, use_videos=False: no ffmpeg):
    observation.images.rgb  image   [H, W, 3]    the frame the action was taken on
    observation.state       float32 [P]          proprio (left out when P = 0, e.g. from RLDS without state)
    action                  float32 [7]          env convention (xyz, roll pitch yaw, gripper +1 open .. -1 closed)
    next.reward             float32 [1]
    next.success, next.done bool    [1]          true on the last frame of a successful / any episode
    task                                         the episode's instruction (LeRobot's language field)
and meta/vla_razor.json, which LeRobot ignores: the dataset's env_info, source_type, source_desc, the collection's
summary.json and collection.json (grid, attempts) and each episode's task name, seed, reset_kwargs, grid point,
grid xy, attempt and success, so a round trip keeps every field. A foreign LeRobotDataset (no
meta/vla_razor.json) is read with its first image feature (or `image_key`),
`observation.state` if present, its task strings as instructions and success from `next.success` if present.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from data_collection.dataset import (
    ACTION_DIM,
    DatasetError,
    DemoDataset,
    Episode,
    EpisodeMeta,
    read_dataset_json,
    write_dataset,
)

SIDECAR = "meta/vla_razor.json"
IMAGE_KEY = "observation.images.rgb"
STATE_KEY = "observation.state"
CARRIED = ("summary.json", "collection.json")
"""A collection's own files (grid, attempts, success rate), kept in the sidecar and restored by a round trip."""
DEFAULT_FPS = 3
"""Control rate of the Google robot in SimplerEnv (our demonstrations' steps)."""


def is_lerobot(root: Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def _atomic_dir(dst: Path) -> tuple[Path, Path]:
    """(a fresh temporary folder beside dst, the not-yet-existing folder inside it to write to)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))
    return tmp, tmp / "data"


def _publish(tmp: Path, inner: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    inner.rename(dst)
    shutil.rmtree(tmp, ignore_errors=True)


def _source_desc(root: Path) -> str:
    return str(json.loads((root / "trajectory.json").read_text()).get("source_desc", ""))


def _statistics_name(src: Path) -> str:
    """The key of the source's own dataset_statistics.json if it carries one (kept through a round trip)."""
    path = src / "meta" / "dataset_statistics.json"
    if path.is_file():
        keys = list(json.loads(path.read_text()))
        if len(keys) == 1:
            return keys[0]
    return src.name


def write_lerobot(src: Path, dst: Path, repo_id: str, fps: int = DEFAULT_FPS) -> int:
    """Writes our dataset `src` as a LeRobotDataset at `dst` (atomically); returns the number of frames."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = DemoDataset(src)
    if not len(ds):
        raise DatasetError(f"{src / 'trajectory.json'}: no episodes to convert")
    first = ds.load(0)
    h, w = first.images.shape[1:3]
    features = {
        IMAGE_KEY: {"dtype": "image", "shape": (h, w, 3), "names": ["height", "width", "channel"]},
        "action": {
            "dtype": "float32",
            "shape": (ACTION_DIM,),
            "names": ["x", "y", "z", "roll", "pitch", "yaw", "gripper"],
        },
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }
    if first.proprio.shape[1]:  # none for an RLDS source without state: lerobot refuses an empty feature
        features[STATE_KEY] = {"dtype": "float32", "shape": (first.proprio.shape[1],), "names": None}
    tmp, inner = _atomic_dir(dst)
    out = None
    try:
        # the embedded world's robot is the panda; an RLDS or LeRobot source names its own or stays unknown
        robot = ds.env_info.get("robot") or ("panda" if ds.source_type in ("scripted", "rt1") else None)
        out = LeRobotDataset.create(
            repo_id=repo_id, fps=fps, features=features, root=inner, robot_type=robot, use_videos=False
        )
        frames = 0
        for i in range(len(ds)):
            ep = first if i == 0 else ds.load(i)
            t = len(ep.actions)
            if t == 0:
                raise DatasetError(f"{src / ep.meta.file}: an episode without steps cannot be a LeRobot episode")
            for k in range(t):
                last = k == t - 1
                frame = {
                    IMAGE_KEY: ep.images[k],
                    "action": ep.actions[k].astype(np.float32),
                    "next.reward": np.array([ep.rewards[k]], np.float32),
                    "next.success": np.array([last and ep.meta.success]),
                    "next.done": np.array([last]),
                    "task": ep.meta.instruction,
                }
                if STATE_KEY in features:
                    frame[STATE_KEY] = ep.proprio[k].astype(np.float32)
                try:
                    out.add_frame(frame)
                except ValueError as err:  # lerobot's check of a frame against the features (the first episode's)
                    raise DatasetError(
                        f"{src / ep.meta.file}: step {k} does not match the first episode's "
                        f"features ({' '.join(str(err).split())})"
                    ) from None
            out.save_episode()
            frames += t
        out.finalize()
        sidecar = {
            "format": "vla-razor-lerobot/1",
            "env_info": ds.env_info,
            "source_type": ds.source_type,
            "source_desc": _source_desc(src),
            "files": {name: json.loads((src / name).read_text()) for name in CARRIED if (src / name).is_file()},
            "episodes": [
                {
                    "task": m.task,
                    "seed": m.seed,
                    "grid_point": m.grid_point,
                    "grid_xy": m.grid_xy,
                    "attempt": m.attempt,
                    "success": m.success,
                    "reset_kwargs": m.reset_kwargs,
                }
                for m in ds.episodes
            ],
        }
        (inner / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        stats = src / "dataset_statistics.json"
        if stats.is_file():
            shutil.copyfile(stats, inner / "meta" / "dataset_statistics.json")
        _publish(tmp, inner, dst)
    except BaseException:
        if out is not None:  # lerobot flushes buffered metadata when closed: close it before removing the folder
            with contextlib.suppress(Exception):
                out.finalize()
            del out
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return frames


def _open(src: Path) -> Any:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    info = src / "meta" / "info.json"
    info_json = read_dataset_json(info, f"{src} is not a LeRobotDataset")
    if not str(info_json.get("codebase_version", "")).startswith("v3"):
        raise DatasetError(
            f"{info}: codebase_version {info_json.get('codebase_version')!r}, expected v3.x "
            "(convert older datasets with lerobot's convert_dataset_v21_to_v30)"
        )
    repo_id = f"local/{src.name}"
    try:
        return LeRobotDataset(repo_id, root=src)
    except Exception as err:  # noqa: BLE001 (lerobot/pyarrow raise many types on a damaged folder)
        raise DatasetError(
            f"{src}: lerobot cannot open it as a LeRobotDataset ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]})"
        ) from None


def _image_key(ds: Any, src: Path, image_key: str) -> str:
    images = [k for k, f in ds.meta.features.items() if f["dtype"] in ("image", "video")]
    if image_key:
        if image_key not in ds.meta.features:
            raise DatasetError(f"{src / 'meta/info.json'}: no feature {image_key!r} (image features: {images})")
        return image_key
    if IMAGE_KEY in images:
        return IMAGE_KEY
    if not images:
        raise DatasetError(
            f"{src / 'meta/info.json'}: features has no image or video feature; "
            "a policy needs one camera image per frame"
        )
    return images[0]


def read_lerobot(src: Path, dst: Path, image_key: str = "", dataset_name: str = "") -> int:
    """Writes the LeRobotDataset `src` as our dataset at `dst` (atomically), with its statistics under
    `dataset_name` (default: the key of a carried dataset_statistics.json, else the folder's name); returns the
    number of frames."""
    from vla_razor.runs import atomic_write_folder

    ds = _open(src)
    features = ds.meta.features
    info = src / "meta" / "info.json"
    if "action" not in features:
        raise DatasetError(f"{info}: features has no 'action' (features: {sorted(features)})")
    if tuple(features["action"]["shape"]) != (ACTION_DIM,):
        raise DatasetError(
            f"{info}: features.action has shape {list(features['action']['shape'])}, expected "
            f"[{ACTION_DIM}] (xyz, roll pitch yaw, gripper)"
        )
    key = _image_key(ds, src, image_key)
    sidecar_path = src / SIDECAR
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    side_eps = sidecar.get("episodes", [])
    if side_eps and len(side_eps) != ds.meta.total_episodes:
        raise DatasetError(f"{sidecar_path}: {len(side_eps)} episodes, but {info} has {ds.meta.total_episodes}")
    episodes = _episodes(ds, src, key, side_eps)
    env_info = sidecar.get("env_info", {"lerobot_repo_id": ds.meta.repo_id, "fps": ds.meta.fps})
    source_type = sidecar.get("source_type", "lerobot")
    source_desc = sidecar.get("source_desc", f"converted from LeRobotDataset {src}")

    def write(root: Path) -> int:
        name = dataset_name or _statistics_name(src)
        frames = write_dataset(root, src, episodes, env_info, source_type, source_desc, name)
        for file, value in sidecar.get("files", {}).items():
            if file in CARRIED:
                (root / file).write_text(json.dumps(value, indent=1))
        return frames

    return atomic_write_folder(Path(dst), write)


def _episodes(ds: Any, src: Path, key: str, side_eps: list[dict[str, Any]]) -> Iterator[Episode]:
    """The LeRobotDataset's episodes as ours, one at a time: the fields our sidecar carries (`side_eps`, one entry an
    episode) restored, a foreign dataset's taken from its frames or set to defaults."""
    hf = ds.hf_dataset.with_format(None)
    tasks = {int(i): str(task) for task, i in ds.meta.tasks["task_index"].items()}
    for e in range(ds.meta.total_episodes):
        row = ds.meta.episodes[e]
        lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
        try:
            part = hf.select(range(lo, hi))[:]
        except Exception as err:  # noqa: BLE001
            raise DatasetError(
                f"{src}: episode {e} (frames {lo}..{hi}) cannot be read "
                f"({type(err).__name__}: {' '.join(str(err).split())[:300]})"
            ) from None
        images = np.stack([np.asarray(im.convert("RGB"), np.uint8) for im in part[key]])
        actions = np.asarray(part["action"], np.float32)
        t = len(actions)
        proprio = np.asarray(part[STATE_KEY], np.float32) if STATE_KEY in part else np.zeros((t, 0), np.float32)
        rewards = (
            np.asarray(part["next.reward"], np.float32).reshape(t) if "next.reward" in part else np.zeros(t, np.float32)
        )
        success = bool(np.asarray(part["next.success"]).reshape(t)[-1]) if "next.success" in part else False
        s = side_eps[e] if side_eps else {}
        meta = EpisodeMeta(
            task=str(s.get("task", ds.meta.repo_id.split("/")[-1])),
            instruction=tasks[int(part["task_index"][0])],
            seed=int(s.get("seed", e)),
            grid_point=int(s.get("grid_point", e)),
            grid_xy=[float(v) for v in s.get("grid_xy", [])],
            attempt=int(s.get("attempt", 0)),
            steps=t,
            success=bool(s.get("success", success)),
            reset_kwargs=s.get("reset_kwargs", {}),
        )
        yield Episode(images=images, proprio=proprio, actions=actions, rewards=rewards, meta=meta)


def main(argv: list[str] | None = None) -> int:
    """Entry point in the lerobot venv; a dataset problem is one line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(prog="python -m data_collection.lerobot_format")
    parser.add_argument("direction", choices=["to-lerobot", "from-lerobot"])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--repo-id", default="")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS)
    parser.add_argument("--image-key", default="")
    parser.add_argument("--dataset-name", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.direction == "to-lerobot":
            frames = write_lerobot(args.src, args.dst, args.repo_id or f"local/{args.dst.name}", args.fps)
        else:
            frames = read_lerobot(args.src, args.dst, args.image_key, args.dataset_name)
    except DatasetError as err:
        print(" ".join(str(err).split()), file=sys.stderr)
        return 2
    print(json.dumps({"frames": frames}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
