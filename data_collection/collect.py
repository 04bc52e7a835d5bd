"""Demonstrations over a grid of object placements, as a library: `CollectConfig` says what to collect,
`Collector(cfg).run()` collects it, resumably. `data_collection/rt1_grid.py` is the command over it, and
`vla_razor.robot` calls it for the SFT demonstrations of `robot pipeline`.

    from data_collection.collect import CollectConfig, Collector
    summary = Collector(CollectConfig(grid="2x2", successes_per_point=2, out=Path("data/demos/tiny"))).run()

As the paper (Appendix B.2), each grid point is tried until it has `successes_per_point` successful episodes
(default 10) or `max_attempts_per_point` attempts; only successes are kept (`keep_failures` keeps the rest,
marked as failures), and points that never succeed are reported. Demonstrators:
    scripted: the privileged-state expert of envs/experts.py (pick-can style `expert_style`), in the workers;
    rt1:      an RT-1 SavedModel through data_collection/rt1.py (needs the `rt1` extra), batched over workers.
The dataset format is data_collection/dataset.py's (ManiSkill's trajectory .h5 + .json, one file per
episode, dataset_statistics.json with the action q01/q99 for the action tokenizer); `--format lerobot` also
writes it as a LeRobotDataset (`--lerobot_out`), converted after the collection (data_collection/convert.py).

Resuming: every finished attempt is recorded at once (the episode file, atomically, then collection.json,
atomically), so after Ctrl-C or kill -9 the same collection continues where it stopped, with no episode lost or
duplicated. Attempt k at grid point p always runs with seed `attempt_seed(seed, p, k)`, so a resumed
collection is the same as an uninterrupted one. Changing what the data depends on (task, grid, demonstrator,
...) in an existing folder is refused; counts and workers may change.
The one import inside functions is vla_razor.runs (torch): heavy, and needed only when collecting, so that the
configs that embed CollectConfig load fast (the simulator's workers, SimplerEnv and TensorFlow load inside
envs/rollout.py, envs/simpler.py and rt1.py's functions, when collecting).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

import envs
from data_collection.convert import ConvertConfig, convert
from data_collection.dataset import (
    EPISODES_DIR,
    DatasetError,
    DemoDataset,
    Episode,
    EpisodeMeta,
    episode_filename,
    read_episode_meta,
    write_episode,
    write_index,
)
from data_collection.rt1 import RT1Demonstrator
from envs.grids import default_region, grid_points, placement_options
from envs.gripper import relative_to_absolute
from envs.rollout import EpisodeSpec, ExpertPolicy, ParallelRollout
from envs.simpler import SIMPLER_TASKS, checked_env
from envs.tasks import DEFAULT_TASK, TaskId, get_task
from vla_razor.config import ConfigError, option, to_dict

COLLECTION_JSON = "collection.json"
SUMMARY_JSON = "summary.json"
COLLECTION_FORMAT = "vla-razor-collection/1"
SAVE_EVERY_S = 10.0
"""How often a running collection rewrites collection.json and its index (Collector.save)."""
EPISODE_FILE = re.compile(r"^p(\d{4,})_a(\d{4,})\.h5$")


@dataclass
class RT1Config:
    saved_model: Path | None = option(None, "RT-1 SavedModel directory (tf_agents PolicySaver export)")
    embedder: Path | None = option(None, "Universal Sentence Encoder SavedModel directory (local)")
    action_scale: float = option(1.0, "scale of RT-1's world_vector and rotation_delta (SimplerEnv: 1.0)", gt=0)


@dataclass
class CollectConfig:
    task: TaskId | None = option(
        None, "task to demonstrate, an id of envs/tasks.py (None: pick_can; in a robot config, the robot's `task`)"
    )
    demonstrator: Literal["scripted", "rt1"] = option("scripted", "who acts: the scripted expert or RT-1")
    expert_style: Literal["top_down", "angled"] = option(
        "angled", "pick-can style of the scripted expert (the SFT data's default; the base policy learns top_down)"
    )
    expert_noise: float = option(
        0.0,
        "std of Gaussian noise on the scripted expert's translation, m per step "
        "(executed and recorded; 0: the clean expert)",
        ge=0,
    )
    backend: Literal["embedded", "simpler"] = option("embedded", "simulator: embedded ManiSkill3 or real SimplerEnv")
    grid: str = option("10x10", "grid points along x and y, e.g. 10x10")
    placement_jitter: float = option(
        0.0,
        "half-width (m) of a uniform offset of x and y added to each attempt's grid point, drawn from the "
        "attempt's seed and kept inside the region: a deterministic scripted expert repeats itself at one "
        "placement, so its 10 demonstrations of a point are 10 nearby placements instead (0: the point)",
        ge=0,
    )
    region: list[list[float]] | None = option(
        None, "[[x_min, x_max], [y_min, y_max]] of the grid (default: the task's, see envs/grids.py)"
    )
    points: list[int] | None = option(None, "collect only these grid point indices (default: all)", ge=0)
    successes_per_point: int = option(10, "successful episodes wanted per grid point (paper: 10)", ge=1)
    max_attempts_per_point: int = option(30, "give up on a grid point after this many attempts", ge=1)
    keep_failures: bool = option(False, "also store failed episodes (marked success=false)")
    out: Path = option(Path("data/demos/pick_can_angled"), "dataset folder (created, or resumed)")
    format: Literal["ours", "lerobot"] = option(
        "ours",
        "lerobot: also write the finished dataset as a LeRobotDataset v3.0 (converted from `out` after the "
        "collection, in .venv-lerobot: make setup-lerobot)",
    )
    lerobot_out: Path | None = option(None, "folder of the LeRobotDataset (default: <out>_lerobot)")
    workers: int = option(2, "simulator worker processes (0: in this process)", ge=0)
    camera_size: int = option(224, "side of the square camera image stored with each step", ge=32, le=1024)
    max_steps: int | None = option(None, "step limit per episode (default: the task's own, its record's)", ge=1)
    seed: int = option(0, "base of the per-(grid point, attempt) episode seeds", ge=0)
    dataset_name: str = option("vla_razor_embedded", "key of dataset_statistics.json (the policy's unnorm key)")
    reset_options: dict[str, Any] = option({}, "extra env.reset options merged into every episode's")
    env_kwargs: dict[str, Any] = option({}, "extra keyword arguments of envs.make")
    rt1: RT1Config = option(RT1Config(), "RT-1 demonstrator")
    progress: bool = option(True, "show a progress bar")

    def grid_shape(self) -> tuple[int, int]:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", self.grid)
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            raise ConfigError(f"grid: expected NxM with positive N and M (e.g. 10x10), got {self.grid!r}")
        return int(m[1]), int(m[2])


# Fields that decide what the data is: an existing folder must have been collected with the same values.
IDENTITY_FIELDS = (
    "task",
    "demonstrator",
    "backend",
    "grid",
    "region",
    "camera_size",
    "max_steps",
    "seed",
    "reset_options",
    "env_kwargs",
)


def identity(cfg: CollectConfig) -> dict[str, Any]:
    d = to_dict(cfg)
    out = {k: d[k] for k in IDENTITY_FIELDS}
    if cfg.demonstrator == "scripted" and len(get_task(cfg.task).experts) > 1:  # the style shapes the data
        out["expert_style"] = cfg.expert_style
    if cfg.demonstrator == "scripted" and cfg.expert_noise:
        out["expert_noise"] = cfg.expert_noise
    if cfg.placement_jitter:
        out["placement_jitter"] = cfg.placement_jitter
    if cfg.demonstrator == "rt1":
        out["rt1"] = d["rt1"]
    return out


GRIPPER_STORED = {
    "embedded": "absolute, the panda's scale: +1 open .. -1 closed (as executed)",
    "simpler": "absolute, OpenVLA's: 1 open, 0 closed (converted from the Google robot's relative commands, as "
    "OpenVLA converted RT-1's data: envs/gripper.py)",
}
"""The gripper convention of a dataset's stored actions (trajectory.json's env_info["gripper"])."""


def stored_actions(executed: np.ndarray, backend: str) -> np.ndarray:
    """The actions a dataset keeps for an episode: as executed, except that on SimplerEnv the Google robot's
    relative gripper commands become OpenVLA's absolute openings, the convention a base policy is trained in."""
    if backend != "simpler":
        return executed

    out = np.array(executed, dtype=np.float32, copy=True)
    out[:, 6] = relative_to_absolute(out[:, 6])
    return out


def attempt_seed(seed: int, point: int, attempt: int) -> int:
    """The env seed of attempt `attempt` at grid point `point`: fixed, and unrelated across (point, attempt)."""
    return int(np.random.SeedSequence([seed, point, attempt]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class Attempt:
    point: int
    attempt: int
    seed: int
    success: bool
    steps: int
    file: str | None = None
    """The episode file, if the episode was stored."""


@dataclass
class Collection:
    """collection.json: what was asked, what was tried. The resume state; rewritten every SAVE_EVERY_S seconds
    and at the end (an episode file written since is adopted on resume, a failure not recorded is tried again)."""

    root: Path
    config: dict[str, Any]
    grid_xy: list[list[float]]
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def path(self) -> Path:
        return self.root / COLLECTION_JSON

    def save(self) -> None:
        from vla_razor.runs import atomic_write_json

        atomic_write_json(
            self.path,
            {
                "format": COLLECTION_FORMAT,
                "config": self.config,
                "grid_xy": self.grid_xy,
                "seconds": self.seconds,
                "attempts": [asdict(a) for a in self.attempts],
            },
        )

    def tried(self, point: int) -> int:
        return sum(a.point == point for a in self.attempts)

    def successes(self, point: int) -> int:
        return sum(a.point == point and a.success for a in self.attempts)

    def next_attempt(self, point: int) -> int:
        return 1 + max((a.attempt for a in self.attempts if a.point == point), default=-1)


def open_collection(cfg: CollectConfig, grid_xy: np.ndarray) -> Collection:
    """The folder's collection (new, or resumed after reconciling it with the episode files on disk). The
    folder is locked for this process first (`.lock`, as a run folder): a second collection into it is refused
    instead of deleting the first one's temporaries and interleaving episodes."""
    from vla_razor.runs import RunFolder

    root = cfg.out
    path = root / COLLECTION_JSON
    config = to_dict(cfg)
    grid = [[float(v) for v in xy] for xy in grid_xy]
    if not path.exists():
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise DatasetError(
                f"{root}: exists, is not empty and has no {COLLECTION_JSON}; "
                "not a collection folder (choose another --out)"
            )
        RunFolder(root).lock()
        collection = Collection(root, config, grid)
        collection.save()
        return collection
    RunFolder(root).lock()
    try:
        saved = json.loads(path.read_text())
        if saved.get("format") != COLLECTION_FORMAT:
            raise DatasetError(f"{path}: not a vla-razor collection file (format {saved.get('format')!r})")
        attempts = [Attempt(**a) for a in saved["attempts"]]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: unreadable ({err!r}); truncated or foreign?") from None
    old = {k: saved["config"].get(k) for k in identity(cfg)}
    new = identity(cfg)
    changed = {k: (old[k], new[k]) for k in new if old[k] != new[k]}
    if changed:
        what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise DatasetError(f"{root} was collected with other settings ({what}); use a new --out, or the old settings")
    collection = Collection(root, config, grid, attempts, float(saved.get("seconds", 0.0)))

    # Reconcile with the files: drop our own interrupted temporaries, adopt episodes whose attempt record was
    # not written yet (killed between the two writes), refuse anything else.
    known = {(a.point, a.attempt): a for a in attempts}
    episodes_dir = root / EPISODES_DIR
    for p in sorted(episodes_dir.iterdir()) if episodes_dir.is_dir() else []:
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink()
            continue
        m = EPISODE_FILE.match(p.name)
        if not m:
            raise DatasetError(f"{p}: not an episode file of this collection (expected pNNNN_aNNNN.h5)")
        file = f"{EPISODES_DIR}/{p.name}"
        meta = read_episode_meta(root, file)  # validates: a truncated or foreign file is named here
        key = (int(m[1]), int(m[2]))
        if key not in known:
            a = Attempt(meta.grid_point, meta.attempt, meta.seed, meta.success, meta.steps, file)
            attempts.append(a)
            known[key] = a
    for a in attempts:
        if a.file and not (root / a.file).is_file():
            raise DatasetError(f"{root / a.file}: recorded in {path} but missing")
    collection.save()
    return collection


class Collector:
    """Runs the attempts a collection still needs and stores each one as it ends."""

    def __init__(self, cfg: CollectConfig):
        if cfg.task is None:
            cfg = replace(cfg, task=DEFAULT_TASK)
        self.cfg = cfg
        self._saved = time.perf_counter()  # when collection.json and the index were last written
        region = tuple(tuple(r) for r in cfg.region) if cfg.region else None
        if not cfg.placement_jitter >= 0:
            raise ConfigError(f"placement_jitter: expected >= 0 metres, got {cfg.placement_jitter}")
        if region is not None and (len(region) != 2 or any(len(r) != 2 for r in region)):
            raise ConfigError(f"region: expected [[x_min, x_max], [y_min, y_max]], got {cfg.region!r}")
        try:
            self.grid_xy = grid_points(cfg.task, cfg.backend, cfg.grid_shape(), region)  # type: ignore[arg-type]
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.region = np.array(region or default_region(cfg.task, cfg.backend), dtype=float)  # [[x0, x1], [y0, y1]]
        n = len(self.grid_xy)
        self.points = list(range(n)) if cfg.points is None else list(cfg.points)
        bad = [p for p in self.points if not 0 <= p < n]
        if bad:
            raise ConfigError(f"points: {bad} are not grid indices of a {cfg.grid} grid (0..{n - 1})")
        for name in ("successes_per_point", "max_attempts_per_point", "camera_size"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(cfg, name)}")
        if cfg.demonstrator == "rt1" and (cfg.rt1.saved_model is None or cfg.rt1.embedder is None):
            raise ConfigError("rt1.saved_model and rt1.embedder: both are needed with --demonstrator rt1")
        if cfg.demonstrator == "scripted" and cfg.backend == "simpler":
            raise ConfigError(
                "demonstrator: the scripted experts read the embedded world's state (ManiSkill3); "
                "on --backend simpler use --demonstrator rt1"
            )
        if cfg.backend == "simpler":  # a missing SimplerEnv scene is said here, before any simulator starts
            checked_env(cfg.task, **cfg.env_kwargs)
        self.collection = open_collection(cfg, self.grid_xy)
        self.env_info = {
            "env_id": _env_id(cfg),
            "env_kwargs": {"camera_size": cfg.camera_size, **cfg.env_kwargs},
            "max_episode_steps": cfg.max_steps,
            "backend": cfg.backend,
            "gripper": GRIPPER_STORED[cfg.backend],
        }
        self.source_type = "scripted" if cfg.demonstrator == "scripted" else "rt1"
        self.source_desc = (
            f"envs/experts.py {cfg.task} expert"
            + (f", style {cfg.expert_style}" if len(get_task(cfg.task).experts) > 1 else "")
            + (f", noise {cfg.expert_noise} m" if cfg.expert_noise else "")
            if cfg.demonstrator == "scripted"
            else f"RT-1 SavedModel {cfg.rt1.saved_model}"
        )

    # ---- planning ----------------------------------------------------------------------------------
    def point_done(self, point: int) -> bool:
        c, cfg = self.collection, self.cfg
        return c.successes(point) >= cfg.successes_per_point or c.tried(point) >= cfg.max_attempts_per_point

    def next_round(self) -> list[tuple[int, int]]:
        """(point, attempt) pairs to try now: as many as each unfinished point still needs, within its cap."""
        c, cfg = self.collection, self.cfg
        todo = []
        for p in self.points:
            need = cfg.successes_per_point - c.successes(p)
            budget = cfg.max_attempts_per_point - c.tried(p)
            first = c.next_attempt(p)
            todo += [(p, first + k) for k in range(max(0, min(need, budget)))]
        return todo

    def placement(self, point: int, attempt: int) -> np.ndarray:
        """Where attempt `attempt` at grid point `point` puts the object: the point, offset by `placement_jitter`."""
        xy = np.asarray(self.grid_xy[point], dtype=float)
        if not self.cfg.placement_jitter:
            return xy
        rng = np.random.default_rng([self.cfg.seed, point, attempt, 23])
        xy = xy + rng.uniform(-self.cfg.placement_jitter, self.cfg.placement_jitter, 2)
        return np.clip(xy, self.region[:, 0], self.region[:, 1])

    def spec(self, point: int, attempt: int) -> Any:
        options = _merge(
            placement_options(self.cfg.task, self.cfg.backend, self.placement(point, attempt)), self.cfg.reset_options
        )
        return EpisodeSpec(self.cfg.task, attempt_seed(self.cfg.seed, point, attempt), options, self.cfg.max_steps)

    # ---- storing -----------------------------------------------------------------------------------
    def store(self, point: int, attempt: int, result: Any) -> None:
        spec, traj = result.spec, result.trajectory
        file = None
        if result.success or self.cfg.keep_failures:
            file = episode_filename(point, attempt)
            meta = EpisodeMeta(
                task=spec.task,
                instruction=traj.instruction,
                seed=spec.seed,
                grid_point=point,
                grid_xy=[float(v) for v in self.grid_xy[point]],
                attempt=attempt,
                steps=result.steps,
                success=bool(result.success),
                file=file,
                reset_kwargs={"seed": spec.seed, "options": spec.options},
            )
            write_episode(
                self.cfg.out,
                Episode(traj.images, traj.proprio, stored_actions(traj.actions, self.cfg.backend), traj.rewards, meta),
            )
        self.collection.attempts.append(Attempt(point, attempt, spec.seed, bool(result.success), result.steps, file))
        if time.perf_counter() - self._saved >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """collection.json and the index over every stored episode. Both grow with the collection, so they are
        written every SAVE_EVERY_S seconds rather than after each episode: once per episode, 2,000 episodes spent
        most of a 440 s collection rewriting them (quadratic)."""
        self.collection.save()
        if any(a.file for a in self.collection.attempts):
            self.write_index()
        self._saved = time.perf_counter()

    def write_index(self) -> None:
        metas = self._metas()
        write_index(self.cfg.out, metas, self.env_info, self.source_type, self.source_desc)

    def _metas(self) -> list[Any]:
        metas = []
        for a in self.collection.attempts:
            if a.file is None:
                continue
            spec = self.spec(a.point, a.attempt)
            metas.append(
                EpisodeMeta(
                    task=self.cfg.task,
                    instruction=_instruction(self.cfg),
                    seed=a.seed,
                    grid_point=a.point,
                    grid_xy=[float(v) for v in self.grid_xy[a.point]],
                    attempt=a.attempt,
                    steps=a.steps,
                    success=a.success,
                    file=a.file,
                    reset_kwargs={"seed": spec.seed, "options": spec.options},
                )
            )
        return metas

    # ---- running -----------------------------------------------------------------------------------
    def policy(self) -> Any:
        if self.cfg.demonstrator == "scripted":
            if not self.cfg.expert_noise >= 0:
                raise ConfigError(f"expert_noise: expected >= 0 metres, got {self.cfg.expert_noise}")
            styles = get_task(self.cfg.task).experts
            return ExpertPolicy(self.cfg.expert_style if len(styles) > 1 else None, self.cfg.expert_noise)

        r = self.cfg.rt1
        return RT1Demonstrator(
            r.saved_model,
            r.embedder,
            gripper="relative" if self.cfg.backend == "simpler" else "absolute",
            action_scale=r.action_scale,
        )

    def run(self) -> dict[str, Any]:
        from vla_razor.runs import RunFolder

        cfg, c = self.cfg, self.collection
        policy = self.policy() if self.next_round() else None
        bar = tqdm(
            total=len(self.points),
            unit="point",
            desc=f"collect {cfg.task}",
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        bar.update(sum(self.point_done(p) for p in self.points))
        started = self._saved = time.perf_counter()
        rollout = ParallelRollout(
            cfg.workers, backend=cfg.backend, camera_size=cfg.camera_size, env_kwargs=cfg.env_kwargs
        )
        try:
            while todo := self.next_round():
                specs = [self.spec(p, a) for p, a in todo]

                def on_result(index: int, result: Any) -> None:
                    point, attempt = todo[index]
                    was_done = self.point_done(point)
                    c.seconds += time.perf_counter() - self._tick
                    self._tick = time.perf_counter()
                    self.store(point, attempt, result)
                    if self.point_done(point) and not was_done:
                        bar.update(1)
                    tried = len(c.attempts)
                    bar.set_postfix(
                        point=point,
                        episodes=sum(a.success for a in c.attempts),
                        success=f"{sum(a.success for a in c.attempts) / max(tried, 1):.1%}",
                    )

                self._tick = time.perf_counter()
                rollout.run(policy, specs, record=True, on_result=on_result)
        finally:
            self.save()  # also when interrupted: everything recorded has its episode file written already
            rollout.close()
            bar.close()
        if c.attempts and any(a.file for a in c.attempts):
            self.write_statistics()
        summary = self.summary(time.perf_counter() - started)
        RunFolder(cfg.out).unlock()
        return summary

    def write_statistics(self) -> None:
        DemoDataset(self.cfg.out).write_statistics(self.cfg.dataset_name)

    def summary(self, seconds_this_run: float) -> dict[str, Any]:
        from vla_razor.runs import atomic_write_json

        c, cfg = self.collection, self.cfg
        attempts = [a for a in c.attempts if a.point in set(self.points)]
        successes = sum(a.success for a in attempts)
        summary = {
            "episodes": sum(a.file is not None for a in attempts),  # failures too, under keep_failures
            "successes_stored": sum(a.file is not None and a.success for a in attempts),
            "attempts": len(attempts),
            "success_rate": successes / len(attempts) if attempts else 0.0,
            "seconds": round(c.seconds, 1),
            "workers": cfg.workers,
        }
        atomic_write_json(cfg.out / SUMMARY_JSON, summary)
        per_point = [(p, c.successes(p), c.tried(p)) for p in self.points]
        return {
            **summary,
            "points": len(self.points),
            "points_complete": sum(s >= cfg.successes_per_point for _, s, _ in per_point),
            "never_succeeded": [
                {"point": p, "xy": [round(float(v), 4) for v in self.grid_xy[p]], "attempts": t}
                for p, s, t in per_point
                if s == 0 and t > 0
            ],
            "short": [
                {"point": p, "successes": s, "attempts": t} for p, s, t in per_point if 0 < s < cfg.successes_per_point
            ],
            "seconds_this_run": seconds_this_run,
        }


def _merge(base: dict, extra: dict) -> dict:
    out = json.loads(json.dumps(base))
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _env_id(cfg: CollectConfig) -> str:
    if cfg.backend == "simpler":
        return SIMPLER_TASKS[cfg.task]
    return envs.TASKS[cfg.task]


def _instruction(cfg: CollectConfig) -> str:
    return envs.INSTRUCTIONS[cfg.task]


def write_lerobot_copy(cfg: CollectConfig) -> Path:
    """The finished collection as a LeRobotDataset: our folder stays the resumable original, the copy is rewritten
    whole (atomically) after each run."""
    dst = cfg.lerobot_out or cfg.out.with_name(f"{cfg.out.name}_lerobot")
    convert(ConvertConfig(src=cfg.out, dst=dst, to="lerobot", repo_id=f"local/{cfg.out.name}"))
    return dst


def print_summary(summary: dict[str, Any], out: Path) -> None:
    rows = [
        ("grid points", f"{summary['points']} ({summary['points_complete']} complete)"),
        ("episodes stored", f"{summary['episodes']} ({summary['successes_stored']} successes)"),
        ("attempts", str(summary["attempts"])),
        ("success rate", f"{summary['success_rate']:.1%}"),
        ("collection time", f"{summary['seconds']:.0f} s ({summary['workers']} workers)"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if summary["never_succeeded"]:
        print(f"  points that never succeeded ({len(summary['never_succeeded'])}):")
        for e in summary["never_succeeded"]:
            print(f"    point {e['point']} at (x, y) = {tuple(e['xy'])}: 0 of {e['attempts']} attempts")
    if summary["short"]:
        print(
            "  points short of their target: "
            + ", ".join(f"{e['point']} ({e['successes']}/{e['attempts']})" for e in summary["short"])
        )
    print(f"dataset: {out} (trajectory.json/.h5, dataset_statistics.json, summary.json)")
