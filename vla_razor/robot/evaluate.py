"""Evaluation of a robot policy: new-task success, retention on the probes, and forward KL to the base on the new
task. The new task is `RobotConfig.task` (default pick_can), the probes `RobotConfig.probes` (default the drawers);
results are keyed by task id.

- new task: success over `pick_can_episodes` placements drawn uniformly in its grid region (paper B.2: 100), or
  (`eval.pick_can_placements: grid`) at the RL grid's points, the placements RL practises, with
  `heldout_episodes` uniform placements beside them as <task>_heldout;
- retention: success on each probe from fixed seeds (the forgetting probes);
- suites: a LIBERO suite named as the new task or a probe stands for its tasks (RobotConfig.tasks_of); each task is
  evaluated on its own episodes, the suite's success is the mean over its tasks, and the summary adds each task's
  success with its 95 % Wilson interval (`success_intervals`);
- KL: E_x[KL(pi0(.|x) || pi(.|x))] over whole 7-token actions, on a fixed set of new-task observations x (frames
  of the base policy's own new-task rollouts on held-out placements, made once per experiment and stored as
  kl_observations.npz with K actions per frame sampled from the base): by the chain rule, the mean over those
  actions of the per-dimension KLs (exact over the 256 bins) summed along each, with its standard error; total
  variation and reverse KL (over actions sampled from the evaluated policy) beside it
  (vla_razor/policies/openvla/kl.py).
The seeds of every episode and the observation set depend only on the config, so base, SFT and RL models
are measured on exactly the same episodes and frames.

Per-episode results pair. Each task's success is kept per episode (0 / 1, `episode_successes`) in the evaluation's
fixed order, and episode i of a task is the same episode for every model evaluated with the same settings: its
placement and env seed come from `eval.seed` alone (`new_task_specs`, `probe_specs`), ParallelRollout returns results
in the order of the specs, and a sampled evaluation (`eval.temperature` > 0) draws each step's noise from (eval.seed,
the episode's identity, step) (`evaluation_actor`, `vla_razor.robot.rl.episode_key`), never from its position or
batch. So two models' lists differ only where the models act differently, which is what makes the paired intervals
of forgetting and of one model minus another (vla_razor/analysis/intervals.py) valid; `episode_set` fingerprints
those settings, so results of other episodes are not paired by mistake.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.grids import Region, grid_points, placement_options, uniform_points
from envs.rollout import EpisodeSpec, ParallelRollout
from envs.simpler import checked_env
from envs.tasks import DEFAULT_PROBES, DEFAULT_TASK, get_task
from vla_razor.analysis.intervals import Interval, interval_summary, wilson
from vla_razor.analysis.forecast import RetentionForecast
from vla_razor.config import ConfigError, to_dict
from vla_razor.core.predictors import module_weight_change_l1
from vla_razor.policies.base import TokenPolicy, require_token_policy
from vla_razor.policies.openvla.kl import action_tv_terms, chain_rule_kl_terms, mean_and_se
from vla_razor.robot.rl import PolicyActor
from vla_razor.runs import CorruptFileError, atomic_write_bytes, cached_json_result, read_json_file

KL_OBSERVATIONS = "kl_observations.npz"
SAMPLING_NOISE = "per episode: (eval.seed, task, placement, env seed, step)"
"""How sampled evaluations key their noise (stamped in base_eval.json's settings)."""
EPISODE_RESULTS = "per-episode success, in each task's fixed episode order"
"""What base_eval.json keeps beside the rates (stamped in its settings, so a base evaluation made before is redone:
the same episodes, now with the per-episode results that paired intervals need)."""


@dataclass
class EvalSpec:
    pick_can_episodes: int = 100
    probe_episodes: int = 25
    seed: int = 1_000
    """Base of the evaluation seeds (kept apart from the training seeds)."""
    max_steps: int | None = None
    """Episode length cap (None: each task's own)."""
    backend: str = "embedded"
    """Whose region of the new task the placements are drawn from."""
    temperature: float = 0.0
    """Decoding of the evaluated policies: 0 greedy; > 0 samples each row from its own (seed, episode identity,
    step) noise (vla_razor.robot.rl.episode_key: task, placement, env seed), so the same policy gives the same
    episodes, whatever else is evaluated beside them (the success of the policy's own distribution, which is
    what on-policy RL maximizes)."""
    pick_can_points: np.ndarray | None = None
    """[P, 2] placements the new task is evaluated at, cycled over the episodes (None: drawn uniformly)."""
    heldout_episodes: int = 0
    """With `pick_can_points`, also this many uniform placements, reported as <task>_heldout."""
    task: str = DEFAULT_TASK
    """The new task (an id of envs/tasks.py)."""
    probes: tuple[str, ...] = DEFAULT_PROBES
    """The prior tasks whose success measures retention."""
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The new task or a probe that names a group (a LIBERO suite) -> the task ids it stands for."""
    region: Region | None = None
    """The part of the new task's region its uniform placements are drawn from (None: the task's own)."""

    def tasks_of(self, name: str) -> tuple[str, ...]:
        """The task ids the new task or a probe `name` stands for (a group's, or itself)."""
        return self.groups.get(name, (name,))


def new_task_specs(
    task: str,
    n: int,
    seed: int,
    max_steps: int | None = None,
    backend: str = "embedded",
    points: np.ndarray | None = None,
    region: Region | None = None,
) -> list[Any]:
    """`n` episodes of `task` at placements drawn uniformly over `region` (default: its grid region), fixed by
    `seed`; or at `points` ([P, 2]) in turn, each episode with its own seed."""

    rng = np.random.default_rng([seed, 1])
    xy = uniform_points(task, backend, n, rng, region) if points is None else np.resize(np.asarray(points), (n, 2))
    seeds = rng.integers(0, 2**31 - 1, n)
    return [EpisodeSpec(task, int(s), placement_options(task, backend, p), max_steps) for s, p in zip(seeds, xy)]


def probe_specs(task: str, n: int, seed: int, max_steps: int | None = None) -> list[Any]:
    """`n` episodes of probe `task` from fixed seeds (the task's randomizations, e.g. the cabinet offset and initial
    opening, come from the seed), in the task's own seed stream (its record's eval_stream)."""

    rng = np.random.default_rng([seed, 2, get_task(task).eval_stream])
    return [EpisodeSpec(task, int(s), {}, max_steps) for s in rng.integers(0, 2**31 - 1, n)]


def evaluation_actor(policy: TokenPolicy, spec: EvalSpec) -> PolicyActor:
    """How evaluated policies act: greedy, or sampled at `spec.temperature` from noise fixed by the seeds."""
    return PolicyActor(policy, temperature=spec.temperature, seed=spec.seed)


def evaluation_episodes(spec: EvalSpec, tasks: tuple[str, ...] | None = None) -> dict[str, list[Any]]:
    """Each task's episodes, keyed by task id (default: the new task's tasks, then the probes'): the new task's at
    its placements, with `spec.pick_can_points` and `heldout_episodes` <task>_heldout beside each; a probe's from
    its fixed seeds."""
    groups: dict[str, list[Any]] = {}
    for name in (spec.task, *spec.probes) if tasks is None else tasks:
        for task in spec.tasks_of(name):
            if name == spec.task:
                groups[task] = new_task_specs(
                    task,
                    spec.pick_can_episodes,
                    spec.seed,
                    spec.max_steps,
                    spec.backend,
                    spec.pick_can_points,
                    spec.region,
                )
                if spec.pick_can_points is not None and spec.heldout_episodes > 0:
                    groups[f"{task}_heldout"] = new_task_specs(
                        task, spec.heldout_episodes, spec.seed + 1, spec.max_steps, spec.backend, region=spec.region
                    )
            else:
                groups[task] = probe_specs(task, spec.probe_episodes, spec.seed, spec.max_steps)
    return groups


def with_groups(successes: dict[str, list[float]], spec: EvalSpec) -> dict[str, list[float]]:
    """Per-episode successes per task id, with each group's (a suite's) beside them: its tasks' episodes one after
    the other (and their <task>_heldout's), so its rate is the mean over its tasks (each has as many episodes) and
    its episode i is the same episode for every model, as a task's is."""
    out = dict(successes)
    for name, tasks in spec.groups.items():
        for suffix in ("", "_heldout"):
            if all(f"{t}{suffix}" in successes for t in tasks):
                out[f"{name}{suffix}"] = [v for t in tasks for v in successes[f"{t}{suffix}"]]
    return out


def episode_successes(
    policy: TokenPolicy,
    rollout: Any,
    spec: EvalSpec,
    tasks: tuple[str, ...] | None = None,
    progress: str | None = None,
) -> dict[str, list[float]]:
    """Success (1.0 / 0.0) of each episode per task (default: the new task, then the probes; a group's tasks each,
    and the group: `with_groups`), in the task's fixed episode order, at `spec.temperature` (0: greedy), all tasks'
    episodes in one batched run (a progress bar under `progress`); with `spec.pick_can_points` and
    `heldout_episodes`, <task>_heldout beside the new task. Episode i of a task is the same episode (placement, env
    seed, sampling noise) for every policy evaluated with `spec`."""
    groups = evaluation_episodes(spec, tasks)
    episodes = [e for specs in groups.values() for e in specs]
    results = rollout.run(evaluation_actor(policy, spec), episodes, progress=progress)
    successes, start = {}, 0
    for name, specs in groups.items():
        successes[name] = [float(bool(r.success)) for r in results[start : start + len(specs)]]
        start += len(specs)
    return with_groups(successes, spec)


def episode_set(spec: EvalSpec, camera_size: int, world: dict[str, Any]) -> str:
    """A fingerprint of the episodes an evaluation runs (their specs and sampling noise, what the policy sees and
    how its tokens become actions): two models with the same one were measured on the same episodes, in the same
    order, so their per-episode results pair."""
    fields = {k: v for k, v in to_dict(spec).items() if k not in ("pick_can_points", "region")}  # region: in world
    points = None if spec.pick_can_points is None else np.asarray(spec.pick_can_points).tolist()
    text = json.dumps({**fields, "pick_can_points": points, "camera_size": camera_size, **world}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def success_intervals(rates: dict[str, float], spec: EvalSpec) -> dict[str, dict[str, Any]]:
    """{"tasks": {task id: its success with the 95 % Wilson interval over its episodes}, "groups": {group: the mean
    over its tasks with the Wilson interval over all their episodes}} over the new task's and the probes' tasks (and
    <task>_heldout), as JSON: what an evaluation that names groups (suites) reports beside the rates. Every task of
    a group has as many episodes, so the group's mean is its pooled success rate; treating the tasks as fixed
    strata, the pooled interval is a little wider than the stratified one, and stays within [0, 1]."""
    entries = [(name, spec.tasks_of(name), spec.pick_can_episodes) for name in (spec.task,)]
    if spec.pick_can_points is not None and spec.heldout_episodes > 0:
        heldout = tuple(f"{t}_heldout" for t in spec.tasks_of(spec.task))
        entries.append((f"{spec.task}_heldout", heldout, spec.heldout_episodes))
    entries += [(name, spec.tasks_of(name), spec.probe_episodes) for name in spec.probes]
    tasks: dict[str, Interval] = {}
    groups: dict[str, dict[str, Any]] = {}
    for name, members, n in entries:
        for m in members:
            low, high = wilson(round(rates[m] * n), n)
            tasks[m] = Interval(rates[m], low, high, n, "wilson")
        if name.removesuffix("_heldout") in spec.groups:  # equal episodes per task: the mean is the pooled rate
            successes = sum(round(rates[m] * n) for m in members)
            low, high = wilson(successes, n * len(members))
            pooled = Interval(rates[name], low, high, n * len(members), "wilson over the tasks' episodes")
            groups[name] = {**pooled.to_json(), "tasks": list(members)}
    return {"tasks": {t: i.to_json() for t, i in tasks.items()}, "groups": groups}


@dataclass
class KLObservations:
    """The fixed new-task observation set of an experiment: frames, and action prefixes sampled from the base."""

    images: np.ndarray
    """uint8 [N, H, W, 3]."""
    instructions: list[str]
    tokens: np.ndarray
    """int64 [N, K, 7]: K actions per frame sampled from the base at temperature 1 (the prefixes of the forward
    KL's chain rule, vla_razor/policies/openvla/kl.py)."""
    settings: dict[str, Any]
    """What made the set (evaluation settings, camera, base fingerprint): an experiment refuses a set made
    otherwise."""
    base_logits: np.ndarray | None = None
    """float32 [N, K, 7, n_bins]: the base's teacher-forced logits on `tokens`. The base never changes within an
    experiment, so they are computed once (`kl_to_base` fills them in when absent) and a forward KL then costs
    one forward of the fine-tuned policy."""
    episodes: np.ndarray | None = None
    """int64 [N]: the rollout each frame was taken from (frames of one rollout are not independent draws, so the
    standard errors are clustered by it); None: each frame its own."""

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        arrays = {
            "images": self.images,
            "instructions": np.asarray(self.instructions),
            "tokens": self.tokens,
            "settings": np.asarray(json.dumps(self.settings, sort_keys=True)),
        }
        if self.base_logits is not None:
            arrays["base_logits"] = self.base_logits
        if self.episodes is not None:
            arrays["episodes"] = np.asarray(self.episodes, dtype=np.int64)
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> KLObservations:
        try:
            with np.load(path, allow_pickle=False) as f:
                if "settings" not in f.files or f["tokens"].ndim != 3:
                    raise ValueError("made by an older version (one greedy prefix per frame, no settings)")
                base_logits = f["base_logits"] if "base_logits" in f.files else None
                episodes = f["episodes"] if "episodes" in f.files else None
                return cls(
                    f["images"],
                    [str(s) for s in f["instructions"]],
                    f["tokens"],
                    json.loads(str(f["settings"])),
                    base_logits,
                    episodes,
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise CorruptFileError(
                f"{path}: not a KL observation set ({type(err).__name__}: {err}); delete it to make a new one"
            ) from None


def make_kl_observations(
    base: TokenPolicy,
    rollout: Any,
    n_episodes: int,
    per_episode: int,
    samples: int,
    seed: int,
    settings: dict[str, Any],
    max_steps: int | None = None,
    backend: str = "embedded",
    progress: str | None = None,
    tasks: tuple[str, ...] = (DEFAULT_TASK,),
    region: Region | None = None,
) -> KLObservations:
    """Frames of the base's greedy rollouts of the new task on held-out placements (`per_episode` evenly spaced
    each), with `samples` actions per frame drawn from the base at temperature 1 (noise fixed by `seed`). A new
    task of several `tasks` (a suite's) shares the `n_episodes` among them, task i taking episodes i, i + T, ..."""
    require_token_policy(base, "the KL frames (the base)")
    if samples < 1:
        raise ValueError(f"eval.kl_samples_per_frame: expected >= 1, got {samples}")
    specs = [
        s
        for i, task in enumerate(tasks)
        for s in new_task_specs(
            task, len(range(i, n_episodes, len(tasks))), seed + 7, max_steps, backend, region=region
        )
    ]
    results = rollout.run(PolicyActor(base, temperature=0.0), specs, record=True, progress=progress)
    images, instructions, episodes = [], [], []
    for e, r in enumerate(results):
        t = r.trajectory
        steps = np.unique(np.linspace(0, len(t.actions) - 1, per_episode).round().astype(int))
        images += [t.images[s] for s in steps]
        instructions += [t.instruction] * len(steps)
        episodes += [e] * len(steps)
    tokens = _sample_prefixes(base, images, instructions, samples, seed)
    obs = KLObservations(np.stack(images), instructions, tokens.numpy(), settings, episodes=np.asarray(episodes))
    obs.base_logits = base_action_logits(base, obs)
    return obs


@torch.no_grad()
def _sample_prefixes(
    policy: TokenPolicy,
    images: list[np.ndarray],
    instructions: list[str],
    samples: int,
    seed: int,
    batch_size: int = 32,
) -> torch.Tensor:
    """[N, K, 7] action tokens drawn from `policy` at temperature 1, each (frame, k) from its own noise."""
    actor = PolicyActor(policy, seed=seed)
    frames = np.repeat(np.arange(len(images)), samples)
    ks = np.tile(np.arange(samples), len(images))
    out = []
    for i in range(0, len(frames), batch_size):
        rows = slice(i, i + batch_size)
        batch = policy.encode([images[f] for f in frames[rows]], [instructions[f] for f in frames[rows]])
        noise = actor.row_noise(frames[rows], ks[rows])
        out.append(policy.sample(batch, temperature=1.0, uniform_noise=noise).tokens.cpu())
    return torch.cat(out).view(len(images), samples, -1)


def _teacher_forced(
    policy: TokenPolicy, images: np.ndarray, instructions: list[str], tokens: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """`policy`'s logits [N, K, 7, n_bins] teacher-forced on tokens [N, K, 7] (each frame repeated K times)."""
    n, k, d = tokens.shape
    flat_tokens = tokens.reshape(n * k, d)
    frames = np.repeat(np.arange(n), k)
    out = []
    for i in range(0, n * k, batch_size):
        rows = frames[i : i + batch_size]
        batch = policy.encode([images[f] for f in rows], [instructions[f] for f in rows])
        out.append(policy.action_logits(batch, flat_tokens[i : i + batch_size]).float().cpu())
    logits = torch.cat(out)
    return logits.view(n, k, d, logits.shape[-1])


@torch.no_grad()
def base_action_logits(base: TokenPolicy, obs: KLObservations, batch_size: int = 32) -> np.ndarray:
    """The base's teacher-forced logits [N, K, 7, n_bins] on the observation set's sampled actions (float32)."""
    return _teacher_forced(base, obs.images, obs.instructions, torch.as_tensor(obs.tokens), batch_size).numpy()


@torch.no_grad()
def kl_to_base(
    base: TokenPolicy | None, policy: TokenPolicy, obs: KLObservations, batch_size: int = 32
) -> dict[str, float]:
    """Divergences of `policy` from the base over whole 7-token actions, averaged over the observation set, each
    with its standard error over frames, clustered by rollout (`<name>_se`; vla_razor/policies/openvla/kl.py):
    - forward_kl, KL(pi0 || pi): the chain rule over the stored actions sampled from the base;
    - tv: total variation of the two action distributions, from the same actions;
    - reverse_kl, KL(pi || pi0): the chain rule over K actions per frame sampled from `policy` (noise fixed by
      the set's seed), so it needs `base`; left out when `base` is None.
    The base's logits on its own actions come from `obs.base_logits`, computed here once if the set lacks them."""
    require_token_policy(policy, "the KL to the base")
    if base is not None:
        require_token_policy(base, "the KL to the base (the base)")
    if obs.base_logits is None:
        obs.base_logits = base_action_logits(base, obs, batch_size)
    tokens = torch.as_tensor(obs.tokens)
    base_logits = torch.from_numpy(obs.base_logits)
    logits = _teacher_forced(policy, obs.images, obs.instructions, tokens, batch_size)
    bins = policy.bin_index(tokens)
    clusters = None if obs.episodes is None else torch.as_tensor(obs.episodes)
    out: dict[str, float] = {}
    out["forward_kl"], out["forward_kl_se"] = mean_and_se(chain_rule_kl_terms(base_logits, logits), clusters)
    out["tv"], out["tv_se"] = mean_and_se(action_tv_terms(base_logits, logits, bins), clusters)
    if base is not None:
        own = _sample_prefixes(
            policy,
            list(obs.images),
            obs.instructions,
            tokens.shape[1],
            int(obs.settings.get("seed", 0)) + 1,
            batch_size,
        )
        own_logits = _teacher_forced(policy, obs.images, obs.instructions, own, batch_size)
        base_on_own = _teacher_forced(base, obs.images, obs.instructions, own, batch_size)
        out["reverse_kl"], out["reverse_kl_se"] = mean_and_se(chain_rule_kl_terms(own_logits, base_on_own), clusters)
    return out


BASE_EVAL = "base_eval.json"
ROBOT_PREDICTORS = ("forward_kl", "reverse_kl", "tv", "weight_l1")
"""A robot run's predictors of forgetting (summary.json's `predictors`): the divergences over whole actions from
`kl_to_base`, and the weight change (L1) from the base where both policies expose their torch module."""


def weight_change_to_base(base: Any, policy: Any) -> dict[str, float]:
    """{"weight_l1": sum |theta - theta0|} of `policy` against the base (LoRA counted as merged), or {} for a
    policy without a torch module of the base's architecture to compare (a policy plugged in through the registry
    may hold none)."""
    model, base_model = getattr(policy, "model", None), getattr(base, "model", None)
    if not isinstance(model, torch.nn.Module) or not isinstance(base_model, torch.nn.Module):
        return {}
    return {"weight_l1": module_weight_change_l1(base_model, model)}


def base_fingerprint(policy_dir: Any) -> str:
    """A cheap identity of a policy folder's weights: config.json, and each safetensors file's name, size, first
    and last MiB (enough to tell a remade base at the same path from the one an experiment was measured with)."""
    root = Path(policy_dir)
    digest = hashlib.sha256()
    for path in [root / "config.json", *sorted(root.glob("*.safetensors"))]:
        if not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as f:
            digest.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                digest.update(f.read())
    return digest.hexdigest()[:16]


def simpler_env_kwargs(cfg: Any, gripper: str) -> dict[str, Any]:
    """What SimplerEnv's envs get: the config's `simpler_env_kwargs`, and the gripper convention of the base (its
    fine-tunes keep it) for the adapter to convert."""
    return {**cfg.simpler_env_kwargs, "gripper": gripper}


class Evaluator:
    """Measures models of one experiment against its base, on shared episodes and a shared KL frame set.

    The KL frames (kl_observations.npz) and the base's own results (base_eval.json) are made once and kept
    in the experiment folder; base_eval.json is redone when the evaluation settings change.
    """

    def __init__(self, cfg: Any, base: TokenPolicy):

        self.cfg, self.base = cfg, base
        e = cfg.eval
        if e.temperature < 0:
            raise ConfigError(f"eval.temperature: must be >= 0 (0: greedy), got {e.temperature}")
        points = None
        if e.pick_can_placements == "grid":  # a suite's tasks share one region (their stored init states)
            points = grid_points(cfg.new_tasks[0], cfg.backend, tuple(cfg.rl.grid), cfg.placement_region)
        elif e.heldout_episodes:
            raise ConfigError(
                "eval.heldout_episodes: held-out placements are for eval.pick_can_placements 'grid' "
                "(with 'uniform' every evaluated placement is already held out); set it to 0"
            )
        self.spec = EvalSpec(
            e.pick_can_episodes,
            e.probe_episodes,
            e.seed,
            e.max_steps,
            cfg.backend,
            e.temperature,
            points,
            e.heldout_episodes,
            cfg.task,
            tuple(cfg.probes),
            {name: cfg.tasks_of(name) for name in (cfg.task, *cfg.probes) if cfg.tasks_of(name) != (name,)},
            cfg.placement_region,
        )
        self.settings = {
            "eval": to_dict(e),
            "camera_size": cfg.camera_size,
            "base": str(cfg.base),
            "backend": cfg.backend,
            "base_fingerprint": base_fingerprint(cfg.base),
            **self._world(cfg),
        }
        if points is not None:
            self.settings["pick_can_grid"] = list(cfg.rl.grid)
        if e.temperature > 0:  # sampled episodes: base results made while noise followed list positions are redone
            self.settings["sampling_noise"] = SAMPLING_NOISE
        self.settings["episode_results"] = EPISODE_RESULTS  # base results made before they were kept are redone
        self.episode_set = episode_set(self.spec, cfg.camera_size, {"backend": cfg.backend, **self._world(cfg)})
        self._check_same_base(cfg.experiment_dir / BASE_EVAL)
        if not 1 <= cfg.pipeline_groups <= max(1, cfg.workers):
            raise ConfigError(
                f"pipeline_groups ({cfg.pipeline_groups}) must be from 1 to workers ({cfg.workers}; 0 "
                "workers, in this process, count as one): each group needs a worker"
            )
        # on SimplerEnv the adapter converts what the policies emit (the base's convention, which its fine-tunes
        # keep) for the Google robot's relative gripper
        env_kwargs = simpler_env_kwargs(cfg, base.gripper) if cfg.backend == "simpler" else None
        if cfg.backend == "simpler":  # a missing SimplerEnv scene is said here, before any simulator starts
            for name in (cfg.task, *cfg.probes):
                for task in cfg.tasks_of(name):
                    checked_env(task, **cfg.simpler_env_kwargs)
        if cfg.backend == "libero":  # LIBERO's adapter converts the policies' gripper by libero_env_kwargs
            env_kwargs = dict(cfg.libero_env_kwargs)
        self.rollout = ParallelRollout(
            cfg.workers,
            backend=cfg.backend,
            camera_size=cfg.camera_size,
            sim_backend=cfg.sim_backend,
            pipeline_groups=cfg.pipeline_groups,
            env_kwargs=env_kwargs,
        )
        self.dir = cfg.experiment_dir
        self._obs: KLObservations | None = None
        self.forecast = None
        if cfg.forecast is not None:
            self.forecast = RetentionForecast.load(cfg.forecast)

    def _check_same_base(self, path: Any) -> None:
        """An experiment's runs, KL frames and base results all refer to one base: refuse another one there."""

        if not path.is_file():
            return
        saved = read_json_file(path)
        saved = saved.get("settings", {}).get("base_fingerprint") if isinstance(saved, dict) else None
        if saved is not None and saved != self.settings["base_fingerprint"]:
            raise ConfigError(
                f"base: {self.cfg.base} is not the base the experiment {self.cfg.experiment_dir} was measured against "
                f"(weights fingerprint {self.settings['base_fingerprint']}, the experiment's {saved}, see {path}); "
                "use another --experiment for this base, or delete that experiment folder to start it again"
            )

    @staticmethod
    def _world(cfg: Any) -> dict[str, Any]:
        """What else shapes the base's rollouts: how its tokens become actions (the norm_stats key), the physics,
        the new task's placement region, and SimplerEnv's env options."""
        world: dict[str, Any] = {"dataset_name": cfg.dataset_name, "sim_backend": cfg.sim_backend}
        if cfg.task != DEFAULT_TASK or tuple(cfg.probes) != DEFAULT_PROBES:  # left out for the paper's tasks, so
            world["tasks"] = {"task": cfg.task, "probes": list(cfg.probes)}  # results made before stay valid
            if cfg.suite_tasks:
                world["tasks"]["suite_tasks"] = cfg.suite_tasks
        if cfg.region is not None:  # where the new task's placements come from (left out for the whole region)
            world["region"] = [list(axis) for axis in cfg.placement_region]
        if cfg.backend == "simpler":
            world["simpler_env_kwargs"] = dict(cfg.simpler_env_kwargs)
        if cfg.backend == "libero":
            world["libero_env_kwargs"] = dict(cfg.libero_env_kwargs)
        if cfg.policy.dtype != "saved":  # the base sampled in another dtype takes other actions
            world["policy_dtype"] = cfg.policy.dtype
        return world

    def kl_settings(self) -> dict[str, Any]:
        """What the experiment's KL frames depend on (stamped in kl_observations.npz)."""
        e = self.cfg.eval
        return {
            "kl_episodes": e.kl_episodes,
            "kl_frames_per_episode": e.kl_frames_per_episode,
            "kl_samples_per_frame": e.kl_samples_per_frame,
            "seed": e.seed,
            "max_steps": e.max_steps,
            "backend": self.cfg.backend,
            "camera_size": self.cfg.camera_size,
            "base_fingerprint": self.settings["base_fingerprint"],
            "region": None,  # the whole region's, recorded too, so frames of a part are not reused for it (and back)
            **self._world(self.cfg),  # a part's region, when set
        }

    def kl_observations(self) -> KLObservations:
        """The experiment's KL frames: loaded when made with this config's settings (a mismatch is refused, not
        silently mixed into one experiment), else made from the base's rollouts and saved."""

        if self._obs is None:
            path = self.dir / KL_OBSERVATIONS
            wanted = self.kl_settings()
            if path.is_file():
                obs = KLObservations.load(path)
                differ = {
                    k: (obs.settings.get(k, "not recorded"), v) for k, v in wanted.items() if obs.settings.get(k) != v
                }
                if differ:
                    said = ", ".join(f"{k} {saved!r} there, {now!r} here" for k, (saved, now) in differ.items())
                    raise ConfigError(
                        f"{path}: the experiment's KL frames were made with other settings ({said}); "
                        "use another --experiment, or delete that file to make the frames again "
                        "(the experiment's earlier KLs were measured on the old ones)"
                    )
                self._obs = obs
            else:
                e = self.cfg.eval
                self._obs = make_kl_observations(
                    self.base,
                    self.rollout,
                    e.kl_episodes,
                    e.kl_frames_per_episode,
                    e.kl_samples_per_frame,
                    e.seed,
                    wanted,
                    e.max_steps,
                    self.cfg.backend,
                    self._bar("KL frames (base)"),
                    self.cfg.new_tasks,
                    self.cfg.placement_region,
                )
                self._obs.save(path)
        return self._obs

    def _bar(self, desc: str) -> str | None:
        return desc if self.cfg.progress else None

    def evaluate(self, policy: TokenPolicy, name: str = "policy") -> dict[str, Any]:
        """{<task>, <each probe>, *ROBOT_PREDICTORS} of `policy` (`name` labels the progress bar),
        with each episode's success in the LLM side's names: "new_task_examples" (and "new_task_heldout_examples"
        beside <task>_heldout) and "probe_examples" ({probe: [0 / 1 per episode]})."""
        require_token_policy(policy, f"evaluating {name} (its KL to the base)")
        task = self.spec.task
        episodes = episode_successes(policy, self.rollout, self.spec, progress=self._bar(f"evaluating {name}"))
        results: dict[str, Any] = {k: float(np.mean(v)) for k, v in episodes.items()}
        results.update(kl_to_base(self.base, policy, self.kl_observations()))
        results.update(weight_change_to_base(self.base, policy))
        results["new_task_examples"] = episodes[task]
        if f"{task}_heldout" in episodes:
            results["new_task_heldout_examples"] = episodes[f"{task}_heldout"]
        results["probe_examples"] = {p: episodes[p] for p in self.spec.probes}
        return results

    def live_kl(self, policy: TokenPolicy) -> dict[str, float]:
        """Forward KL and TV to the base on the KL frames (no rollouts; one forward of `policy` over the stored
        base actions, no sampling), with the forecast's retention. The reverse KL is left to evaluations."""
        kl = kl_to_base(None, policy, self.kl_observations())
        if self.forecast is not None:
            kl["forecast/prior_mean"] = self.forecast.predict(kl["forward_kl"])
        return kl

    def base_results(self) -> dict[str, float]:
        return cached_json_result(self.dir / BASE_EVAL, self.settings, lambda: self.evaluate(self.base, "the base"))

    def summary(self, method: str, hparams: dict[str, Any], seed: int, step: int, results: dict[str, Any]) -> dict:
        """A run's summary.json in the shared contract (DESIGN.md section 6). Beside it, as on the LLM side: each
        episode's success (`new_task_examples`, `prior_examples`; the base's under `base`), `episode_set` (the
        fingerprint of those episodes: results with the same one pair) and the 95 % intervals they give
        (`intervals`: Wilson for each success rate, paired for forgetting)."""
        base = self.base_results()
        task, probes = self.spec.task, self.spec.probes
        forgetting = float(np.mean([base[p] - results[p] for p in probes]))
        examples = results.get("probe_examples", {})
        base_examples = base.get("probe_examples", {})
        summary = {
            "domain": "robot",
            "method": method,
            "hparams": hparams,
            "seed": seed,
            "step": step,
            "new_task": results[task],
            "prior": {p: results[p] for p in probes},
            "forgetting": forgetting,
            "predictors": {k: results[k] for k in ROBOT_PREDICTORS if k in results},
            "predictor_se": {k: results[f"{k}_se"] for k in ROBOT_PREDICTORS if f"{k}_se" in results},
            "base": {
                "new_task": base[task],
                "prior": {p: base[p] for p in probes},
                "new_task_examples": base.get("new_task_examples", []),
                "prior_examples": base_examples,
            },
            "new_task_examples": results.get("new_task_examples", []),
            "prior_examples": examples,
            "episode_set": self.episode_set,
            "intervals": interval_summary(
                base_examples, examples, base.get("new_task_examples", []), results.get("new_task_examples", [])
            ),
        }
        if f"{task}_heldout" in results:  # the new task at the RL grid's points is new_task; held out beside it
            summary["new_task_heldout"] = results[f"{task}_heldout"]
            summary["base"]["new_task_heldout"] = base[f"{task}_heldout"]
            summary["new_task_heldout_examples"] = results.get("new_task_heldout_examples", [])
            summary["base"]["new_task_heldout_examples"] = base.get("new_task_heldout_examples", [])
        if self.spec.groups:  # suites: each task's success with its interval, and the suites' means
            summary["success_intervals"] = success_intervals(results, self.spec)
            summary["base"]["success_intervals"] = success_intervals(base, self.spec)
        if self.forecast is not None:
            summary["forecast"] = {
                "prior_mean": self.forecast.predict(results["forward_kl"]),
                "file": str(self.cfg.forecast),
            }
        return summary

    def close(self) -> None:
        self.rollout.close()
