"""Demonstration datasets on disk: ManiSkill's trajectory format (.h5 + .json), one file per episode.

A dataset is a folder:

    trajectory.json           ManiSkill's metadata file: {"env_info", "source_type", "source_desc", "episodes"};
                              each episode entry has ManiSkill's keys (episode_id, episode_seed, reset_kwargs,
                              control_mode, elapsed_steps, success) plus ours (task, instruction, grid_point,
                              grid_xy, attempt, file). The reader's index.
    trajectory.h5             ManiSkill's data file: one group traj_<episode_id> per episode, an HDF5 external
                              link into the episode's own file, so `h5py.File("trajectory.h5")["traj_0/actions"]`
                              and ManiSkill's trajectory tools read the dataset as one file.
    episodes/p0042_a0003.h5   one episode (grid point 42, attempt 3), group "traj":
                                obs/rgb      uint8   [T, H, W, 3]  the image each action was taken on (gzip)
                                obs/proprio  float32 [T, P]
                                actions      float32 [T, 7]        env convention (envs/wrapper.py)
                                rewards      float32 [T]
                                success, terminated, truncated  bool [T]
                              and attributes format, task, instruction, seed, grid_point, grid_xy, attempt.
                              Unlike ManiSkill's RecordEpisode, obs has T rows, not T + 1: the observation after
                              the last action is not stored (no action was taken on it).
    dataset_statistics.json   OpenVLA's norm_stats layout: {name: {"action": {q01, q99, mean, std, min, max,
                              mask}, "proprio": {...}, "num_transitions", "num_trajectories"}}; `mask` is false
                              for the gripper, which the action tokenizer does not rescale.

Each episode file is written once, atomically (temporary file, fsync, rename), and the index files after it,
so an interrupted writer leaves either a whole episode or none. Episode ids are the position in
(task, grid_point, attempt) order, so a dataset is the same whether or not its collection was interrupted.

    ds = DemoDataset("data/demos/pick_can")
    ep = ds.load(0)                  # Episode: images, proprio, actions, rewards, instruction, meta
    stats = ds.statistics()          # dataset_statistics.json, {name: {...}}
h5py (the episode files) and vla_razor.runs (torch) are imported where episodes are read or written, so that
listing a dataset's index and metadata JSON stays light.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

FORMAT = "vla-razor-demos/1"
TRAJECTORY_JSON = "trajectory.json"
TRAJECTORY_H5 = "trajectory.h5"
STATISTICS_JSON = "dataset_statistics.json"
EPISODES_DIR = "episodes"
CONTROL_MODE = "pd_ee_delta_pose"
ACTION_DIM = 7
GRIPPER_DIM = 6


class DatasetError(ValueError):
    """A dataset file that is missing, truncated, or not one of ours; the message names the file."""


def read_dataset_json(path: Path, missing: str) -> Any:
    """A dataset's JSON file, or a DatasetError naming it: `missing` says what its absence means."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); truncated?") from None


@dataclass
class EpisodeMeta:
    """One episode's index entry (everything but the arrays)."""

    task: str
    instruction: str
    seed: int
    grid_point: int
    grid_xy: list[float]
    attempt: int
    steps: int
    success: bool
    file: str = ""
    """Path of the episode file relative to the dataset folder; left empty, episode_filename(grid_point, attempt)."""
    reset_kwargs: dict[str, Any] = field(default_factory=dict)
    """What `env.reset(**reset_kwargs)` took (seed and options): enough to re-create the initial state."""

    def __post_init__(self) -> None:
        self.file = self.file or episode_filename(self.grid_point, self.attempt)


@dataclass
class Episode:
    """One episode's arrays (T = steps)."""

    images: np.ndarray
    """uint8 [T, H, W, 3]."""
    proprio: np.ndarray
    """float32 [T, P]."""
    actions: np.ndarray
    """float32 [T, 7]."""
    rewards: np.ndarray
    """float32 [T]."""
    meta: EpisodeMeta

    @property
    def instruction(self) -> str:
        return self.meta.instruction


def episode_filename(grid_point: int, attempt: int) -> str:
    return f"{EPISODES_DIR}/p{grid_point:04d}_a{attempt:04d}.h5"


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_json(path: Path, value: Any) -> None:
    from vla_razor.runs import atomic_write_json

    atomic_write_json(path, value)


def _tmp_path(path: Path) -> Path:
    from vla_razor.runs import default_file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, default_file_mode())
    return Path(tmp)


def write_episode(root: Path, episode: Episode) -> Path:
    """Writes one episode file atomically; returns its path. An existing file of that name is replaced."""
    import h5py

    meta = episode.meta
    t = len(episode.actions)
    for name, array, shape in (
        ("images", episode.images, (t, None, None, 3)),
        ("proprio", episode.proprio, (t, None)),
        ("actions", episode.actions, (t, ACTION_DIM)),
        ("rewards", episode.rewards, (t,)),
    ):
        if array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape)):
            raise ValueError(f"episode {meta.file}: {name} has shape {array.shape}, expected {shape} (T={t})")
    path = root / meta.file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            g = f.create_group("traj", track_order=True)
            obs = g.create_group("obs")
            h, w = episode.images.shape[1:3]
            obs.create_dataset(
                "rgb",
                data=episode.images.astype(np.uint8),
                compression="gzip",
                compression_opts=4,
                chunks=(1, h, w, 3) if t and h and w else None,
            )
            obs.create_dataset("proprio", data=episode.proprio.astype(np.float32))
            g.create_dataset("actions", data=episode.actions.astype(np.float32))
            g.create_dataset("rewards", data=episode.rewards.astype(np.float32))
            done = np.zeros(t, bool)
            success = done.copy()
            if t:
                success[-1] = meta.success
            g.create_dataset("success", data=success)
            g.create_dataset("terminated", data=success)
            truncated = done.copy()
            if t:
                truncated[-1] = not meta.success
            g.create_dataset("truncated", data=truncated)
            g.attrs["format"] = FORMAT
            for key, value in asdict(meta).items():
                if key not in ("file",):
                    g.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        _fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_episode_meta(root: Path, file: str) -> EpisodeMeta:
    """The metadata stored in an episode file; DatasetError if it is truncated or not an episode file."""
    import h5py

    path = root / file
    try:
        with h5py.File(path, "r") as f:
            if "traj" not in f or f["traj"].attrs.get("format") != FORMAT:
                raise DatasetError(f"{path}: not a vla-razor episode file (no 'traj' group with format {FORMAT!r})")
            a = dict(f["traj"].attrs)
            steps = int(f["traj/actions"].shape[0])
    except DatasetError:
        raise
    except (OSError, KeyError) as err:
        raise DatasetError(f"{path}: cannot read it as an episode file (truncated or foreign?): {err}") from None
    return EpisodeMeta(
        task=str(a["task"]),
        instruction=str(a["instruction"]),
        seed=int(a["seed"]),
        grid_point=int(a["grid_point"]),
        grid_xy=[float(v) for v in json.loads(a["grid_xy"])],
        attempt=int(a["attempt"]),
        steps=steps,
        success=bool(a["success"]),
        file=file,
        reset_kwargs=json.loads(a["reset_kwargs"]),
    )


def write_index(
    root: Path, episodes: list[EpisodeMeta], env_info: dict[str, Any], source_type: str, source_desc: str
) -> None:
    """trajectory.json and trajectory.h5 for `episodes`, each written atomically."""
    import h5py

    ordered = sorted(episodes, key=lambda m: (m.task, m.grid_point, m.attempt))
    entries = []
    for episode_id, m in enumerate(ordered):
        entries.append(
            {
                "episode_id": episode_id,
                "episode_seed": m.seed,
                "reset_kwargs": m.reset_kwargs,
                "control_mode": CONTROL_MODE,
                "elapsed_steps": m.steps,
                "success": m.success,
                "fail": False,
                **{k: v for k, v in asdict(m).items() if k not in ("seed", "steps", "success", "reset_kwargs")},
            }
        )
    h5_path = root / TRAJECTORY_H5
    tmp = _tmp_path(h5_path)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            for entry in entries:
                f[f"traj_{entry['episode_id']}"] = h5py.ExternalLink(entry["file"], "/traj")
        _fsync_replace(tmp, h5_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _atomic_json(
        root / TRAJECTORY_JSON,
        {
            "format": FORMAT,
            "env_info": env_info,
            "source_type": source_type,
            "source_desc": source_desc,
            "episodes": entries,
        },
    )


def write_dataset(
    root: Path,
    src: Path,
    episodes: Iterable[Episode],
    env_info: dict[str, Any],
    source_type: str,
    source_desc: str,
    statistics_name: str | Callable[[list[EpisodeMeta]], str],
) -> int:
    """A whole dataset converted from `src`, written into the empty folder `root` (a converter's atomic_write_folder):
    each of `episodes` as it comes, so one is in memory at a time, then the index and the statistics under
    `statistics_name` (or the name it gives for the episodes written). Returns the number of frames; DatasetError
    naming `src` if there are no episodes."""
    metas = []
    for episode in episodes:
        write_episode(root, episode)
        metas.append(episode.meta)
    if not metas:
        raise DatasetError(f"{src}: holds no episodes to convert")
    write_index(root, metas, env_info, source_type, source_desc)
    name = statistics_name if isinstance(statistics_name, str) else statistics_name(metas)
    DemoDataset(root).write_statistics(name)
    return sum(m.steps for m in metas)


# ------------------------------------------------------------------------------------------- statistics
def array_statistics(values: np.ndarray, mask: list[bool] | None = None) -> dict[str, list]:
    """Per-dimension q01, q99, mean, std, min, max of [N, D] values (OpenVLA's norm_stats entry)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"statistics need a non-empty [N, D] array, got shape {values.shape}")
    out = {
        "mean": values.mean(0),
        "std": values.std(0),
        "min": values.min(0),
        "max": values.max(0),
        "q01": np.quantile(values, 0.01, axis=0),
        "q99": np.quantile(values, 0.99, axis=0),
    }
    result: dict[str, list] = {k: [float(x) for x in v] for k, v in out.items()}
    result["mask"] = list(mask) if mask is not None else [True] * values.shape[1]
    return result


def action_mask() -> list[bool]:
    """Normalize the six arm dims; leave the gripper (already -1 closed .. +1 open) as it is."""
    return [d != GRIPPER_DIM for d in range(ACTION_DIM)]


def widen_degenerate(stats: dict[str, list]) -> dict[str, list]:
    """Makes q99 > q01 on every masked dim (a constant dim, e.g. an unused rotation, gets +-1e-3)."""
    for d, normalized in enumerate(stats["mask"]):
        if normalized and stats["q99"][d] - stats["q01"][d] < 1e-6:
            stats["q01"][d] -= 1e-3
            stats["q99"][d] += 1e-3
    return stats


def compute_statistics(episodes: list[Episode], name: str) -> dict[str, Any]:
    actions = np.concatenate([e.actions for e in episodes])
    proprio = np.concatenate([e.proprio for e in episodes])
    return {
        name: {
            "action": widen_degenerate(array_statistics(actions, action_mask())),
            "proprio": array_statistics(proprio),
            "num_transitions": int(len(actions)),
            "num_trajectories": len(episodes),
        }
    }


# ----------------------------------------------------------------------------------------------- reader
class DemoDataset:
    """Reads a dataset folder (see the module docstring). Every problem names the file it is in."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index_path = self.root / TRAJECTORY_JSON
        index = read_dataset_json(
            index_path,
            f"{self.root} is not a demonstration dataset (make one with "
            "`python data_collection/rt1_grid.py --out DIR`)",
        )
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise DatasetError(
                f"{index_path}: not a vla-razor demonstration index (expected format {FORMAT!r}, "
                f"got {index.get('format') if isinstance(index, dict) else type(index).__name__!r})"
            )
        self.env_info: dict[str, Any] = index.get("env_info", {})
        self.source_type: str = index.get("source_type", "")
        self.episodes: list[EpisodeMeta] = []
        for i, e in enumerate(index.get("episodes", [])):
            try:
                self.episodes.append(
                    EpisodeMeta(
                        task=e["task"],
                        instruction=e["instruction"],
                        seed=int(e["episode_seed"]),
                        grid_point=int(e["grid_point"]),
                        grid_xy=list(e["grid_xy"]),
                        attempt=int(e["attempt"]),
                        steps=int(e["elapsed_steps"]),
                        success=bool(e["success"]),
                        file=e["file"],
                        reset_kwargs=e.get("reset_kwargs", {}),
                    )
                )
            except (KeyError, TypeError, ValueError) as err:
                raise DatasetError(f"{index_path}: episodes[{i}] is malformed ({err!r})") from None
        for m in self.episodes:
            if not (self.root / m.file).is_file():
                raise DatasetError(f"{self.root / m.file}: listed in {index_path} but missing")

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_transitions(self) -> int:
        return sum(m.steps for m in self.episodes)

    @property
    def tasks(self) -> list[str]:
        return sorted({m.task for m in self.episodes})

    def load(self, index: int, images: bool = True) -> Episode:
        """Episode `index`; images=False skips the frames (an empty [T, 0, 0, 3] array), e.g. for statistics."""
        import h5py

        meta = self.episodes[index]
        path = self.root / meta.file
        try:
            with h5py.File(path, "r") as f:
                g = f["traj"]
                if g.attrs.get("format") != FORMAT:
                    raise DatasetError(f"{path}: not a vla-razor episode file")
                episode = Episode(
                    images=g["obs/rgb"][()] if images else np.zeros((meta.steps, 0, 0, 3), np.uint8),
                    proprio=g["obs/proprio"][()],
                    actions=g["actions"][()],
                    rewards=g["rewards"][()],
                    meta=meta,
                )
        except DatasetError:
            raise
        except (OSError, KeyError) as err:
            raise DatasetError(f"{path}: cannot read episode {index} (truncated or foreign?): {err}") from None
        if len(episode.actions) != meta.steps:
            raise DatasetError(f"{path}: {len(episode.actions)} steps, but {TRAJECTORY_JSON} says {meta.steps}")
        return episode

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.load(i)

    def statistics(self) -> dict[str, Any]:
        """dataset_statistics.json ({name: {"action": ..., "proprio": ..., ...}})."""
        return read_dataset_json(
            self.root / STATISTICS_JSON,
            "collection not finished? rerun the collection command, which finishes by writing it",
        )

    def write_statistics(self, name: str) -> dict[str, Any]:
        """Computes the statistics over every episode and writes dataset_statistics.json."""
        if not self.episodes:
            raise DatasetError(f"{self.root}: no episodes to compute statistics over")
        stats = compute_statistics([self.load(i, images=False) for i in range(len(self))], name)
        _atomic_json(self.root / STATISTICS_JSON, stats)
        return stats
