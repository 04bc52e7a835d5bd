"""Configs of the robot domain: one YAML file per experiment (configs/robot_*.yaml), one section per stage.

    vla-razor robot pipeline --config configs/robot_quick.yaml      # demos, SFT, RL, evaluation, report
    vla-razor robot pretrain --config configs/robot_base.yaml       # base policy by behaviour cloning
    vla-razor robot sft      --config configs/robot_quick.yaml --sft.optim.lr 1e-4
    torchrun --nproc-per-node 8 -m vla_razor.cli robot sft --config ...   # sharded over 8 GPUs (the fsdp section)

Every field is also a `--dotted.name` flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from data_collection.collect import CollectConfig
from envs.grids import Region, checked_region
from envs.tasks import DEFAULT_PROBES, DEFAULT_TASK, TaskOrGroup, get_task, group_tasks
from vla_razor.config import ConfigError, option
from vla_razor.optim import OptimConfig, refuse_unused
from vla_razor.lora import LoraOptions
from vla_razor.policies.registry import PolicyConfig


def robot_optim(**changes: Any) -> OptimConfig:
    """The robot trainers' optimizer defaults, the paper's B.2 (batch 16 transitions, warmup 10), with `changes`."""
    return OptimConfig(**{"batch_size": 16, "warmup_steps": 10, **changes})


def _refuse_micro_batches(optim: OptimConfig, where: str) -> None:
    refuse_unused(
        optim,
        where,
        {
            "micro_batch_size": "the robot trainers take each batch in one forward / backward "
            "(several processes share it under torchrun)"
        },
    )


@dataclass
class FSDPConfig:
    """Multi-process training (`torchrun --nproc-per-node N -m vla_razor.cli robot sft|pretrain ...`): the policy
    is sharded with FSDP2 across the N processes (vla_razor.distributed). Ignored with one process."""

    reshard_after_forward: bool = option(
        True, "free each layer's gathered weights after its forward: less memory, one more all-gather in backward"
    )
    mixed_precision: Literal["none", "bf16"] = option(
        "none",
        "none: weights, compute and AdamW moments in the policy's dtype, as one process; bf16: float32 "
        "master weights and moments, bfloat16 compute, gradients reduced in float32 (the policy folder is "
        "saved in its config's dtype)",
    )


@dataclass
class PretrainConfig:
    """The base policy: the tiny OpenVLA-architecture model trained from scratch on expert demonstrations."""

    policy_config: Path = option(Path("configs/policy_tiny.yaml"), "OpenVLA config YAML of the fresh model")
    datasets: list[Path] = option(
        [], "demonstration folders (data_collection/rt1_grid.py) of every task the base should know"
    )
    norm_stats_datasets: list[Path] = option(
        [],
        "folders whose actions set the action normalization (default: datasets): include demonstrations of "
        "what the base may be fine-tuned on, so its 256 bins cover those actions too",
    )
    optim: OptimConfig = option(
        robot_optim(lr=1e-3, batch_size=32, epochs=20, warmup_steps=50, schedule="cosine"),
        "behaviour-cloning optimisation",
    )
    out: Path = option(Path("runs/robot/base"), "run folder; the policy lands in <out>/policy")
    snapshot_every: int = option(
        0,
        "also keep the policy every N updates in <out>/snapshots/step_<N> (0: off), so that the base can be "
        "chosen by evaluating them: a partial pick-can skill that transfers comes before it is memorized",
        ge=0,
    )


@dataclass
class SFTConfig:
    """Supervised fine-tuning of the base on pick-can demonstrations (paper, Appendix B.2)."""

    datasets: list[Path] = option(
        [], "demonstration folders to imitate (default style: the one the base did not learn)"
    )
    optim: OptimConfig = option(robot_optim(), "SFT optimisation")
    run_name: str | None = option(
        None, "run folder name under <experiment_dir>/runs (default: from lr and batch)", plain_name=True
    )
    allow_clipped_actions: bool = option(
        False, "train even when many demonstrated actions lie outside the base's action range (they are clipped)"
    )


@dataclass
class RLConfig:
    """On-policy REINFORCE with a reward-normalization baseline on pick-can (paper, Appendix B.2)."""

    grid: list[int] = option([10, 10], "grid points along x and y at which episodes are rolled out", ge=1)
    placements: Literal["grid", "uniform"] = option(
        "grid",
        "where the can is put: 'grid' the fixed grid's points every iteration (paper); 'uniform' as many "
        "placements drawn afresh over the region each iteration (from seed and iteration)",
    )
    episodes_per_point: int = option(5, "episodes per grid point per iteration (paper: 5)", ge=1)
    iterations: int = option(10, "rollout + update iterations", ge=1)
    temperature: float = option(
        1.0,
        "sampling temperature of the action tokens during rollouts (1.0 only: the "
        "update is on-policy, with untempered log-probabilities)",
        gt=0,
    )
    baseline: Literal["group", "batch"] = option(
        "group", "normalize rewards within each grid point's episodes (group) or over the whole iteration (batch)"
    )
    advantage: Literal["normalized", "one_zero"] = option(
        "normalized",
        "normalized: the normalized reward (paper); one_zero: 1 for a success, 0 otherwise "
        "(1-0 Reinforce, section 5.1: on-policy without negative gradients)",
    )
    length_normalize: bool = option(
        False,
        "weight each step by mean_length / its episode's length, so every episode counts the same whatever its "
        "length (as GRPO divides by the response length); false: every step counts once, the textbook sum over "
        "steps (a failure's steps then outweigh a success's; with the normalized advantage a group's rows sum to "
        "less than zero, and that common push-down of the sampled tokens collapsed the tiny base in one iteration "
        "at lr 3e-5: docs/results/robot/learning_curve/README.md, session 7)",
    )
    clip_ratio: float | None = option(
        None,
        "PPO / GRPO-style clipping against the rollout policy: once an action token's probability ratio to "
        "the one that sampled it leaves [1 - c, 1 + c] in the direction its advantage pushes, its row stops "
        "pushing it for the rest of the iteration (None: plain REINFORCE, the paper). Negative advantages "
        "alone move the tiny base along one direction at every update (docs/results/robot/learning_curve/"
        "README.md, session 8); this bounds how far one iteration's rows can take it",
        gt=0,
    )
    kl_coef: float = option(
        0.0,
        "coefficient of a reverse KL(pi || pi0) penalty per action dimension (exact over the bins, along the "
        "rollout's own actions, mean over the 7; evaluations report whole-action KLs, 7x larger); paper: 0",
        ge=0,
    )
    max_steps: int | None = option(None, "cap on rollout episode length (None: the task's own, 80 pick-can)", ge=1)
    fresh_scene: bool = option(
        True,
        "rebuild the physics scene at each training episode's reset, so rollouts are bitwise the same for any worker "
        "count; false: plain resets, faster where short episodes make resets weigh, though PhysX then carries contact "
        "state between a worker's episodes (~1e-4 rad). Evaluations always rebuild (paired comparisons)",
    )
    optim: OptimConfig = option(robot_optim(), "update settings (the paper: as SFT; schedule constant with warmup)")
    eval_every: int = option(0, "evaluate every this many iterations into points.jsonl (0: only at the end)", ge=0)
    run_name: str | None = option(
        None, "run folder name under <experiment_dir>/runs (default: from lr and k)", plain_name=True
    )


@dataclass
class EvalConfig:
    """What every model of an experiment is measured on (the same episodes and frames for all of them)."""

    pick_can_episodes: int = option(
        100, "new-task placements drawn uniformly in its grid region (paper: 100 pick-can placements)", ge=1
    )
    pick_can_placements: Literal["uniform", "grid"] = option(
        "uniform",
        "where the new task is evaluated: 'uniform' placements drawn over the region (paper B.2); 'grid' the "
        "points of rl.grid in turn (the placements RL practises), with heldout_episodes uniform ones beside",
    )
    heldout_episodes: int = option(
        0,
        "with pick_can_placements 'grid': also this many uniform placements, reported as <task>_heldout (not "
        "the new-task score)",
        ge=0,
    )
    probe_episodes: int = option(25, "episodes of each probe (default: open and close drawer) from fixed seeds", ge=1)
    seed: int = option(1000, "base of the evaluation seeds (apart from training seeds)", ge=0)
    kl_episodes: int = option(10, "base-policy new-task rollouts on held-out placements that give the KL frames", ge=1)
    kl_frames_per_episode: int = option(8, "frames taken evenly from each of those rollouts", ge=1)
    kl_samples_per_frame: int = option(
        4,
        "actions sampled from the base at each KL frame: the forward KL of a whole action is the mean over them "
        "of the per-dimension KLs along each (the chain rule); more gives a smaller standard error",
        ge=1,
    )
    max_steps: int | None = option(None, "cap on episode length (None: each task's own, its record's max_steps)", ge=1)
    temperature: float = option(
        0.0,
        "decoding of the evaluated policies: 0 greedy (OpenVLA's own); > 0 samples from each policy's "
        "distribution with noise fixed per (seed, episode seed and placement, step), so an episode's result does not "
        "depend on the other episodes evaluated; the success on-policy RL maximizes",
        ge=0,
    )
    during_training_every: int = option(0, "also evaluate every this many updates (0: only at the end)", ge=0)
    kl_every: int = option(
        0,
        "measure the forward KL to the base on the KL frames every this many updates (SFT) or iterations (RL) "
        "while training: cheap, no rollouts; logged as split 'live' (0: never; kl_budget then checks RL after "
        "every iteration, and needs it for SFT)",
        ge=0,
    )


@dataclass
class SimplerVariantsConfig:
    """SimplerEnv's own evaluation protocols over its variants of our tasks (`vla-razor robot variants`, backend
    simpler; envs/simpler_variants.py): one policy's success per variant and SimplerEnv's aggregate."""

    protocol: Literal["variant_aggregation", "visual_matching"] = option(
        "variant_aggregation",
        "variant_aggregation: scenes, lightings, table textures / cabinets, distractors; visual_matching: the real "
        "image overlaid, four robot recolorings",
    )
    tasks: list[str] = option([DEFAULT_TASK, *DEFAULT_PROBES], "our tasks whose variants are run")
    only: list[str] = option([], "run only the variants whose name contains one of these (empty: all)")
    episodes_per_variant: int = option(
        0, "the first this many of each variant's episodes (0: SimplerEnv's all: 25 coke can, 9 drawers)", ge=0
    )
    max_steps: int | None = option(None, "cap on episode length (None: the task's own, 80 coke can, 113 drawers)", ge=1)
    temperature: float = option(0.0, "decoding: 0 greedy (as SimplerEnv's policies), > 0 sampled", ge=0)
    out: Path | None = option(None, "JSON file of the results (default: <experiment>/simpler_<protocol>.json)")


@dataclass
class RobotConfig:
    experiment: str = option("robot", "experiment name: runs go to <runs_dir>/<experiment>", plain_name=True)
    task: TaskOrGroup = option(
        DEFAULT_TASK,
        "the new task the base is fine-tuned on (SFT demonstrations, RL, new-task success, KL frames): a task id "
        "of envs/tasks.py, or a LIBERO suite's id (libero_spatial, ...) for all its tasks",
    )
    region: list[list[float]] | None = option(
        None,
        "[[x_min, x_max], [y_min, y_max]] (metres): the part of the new task's placement region its placements "
        "come from, in RL (grid or uniform), the evaluation, the KL frames and the collected demonstrations "
        "(none: the task's whole region, envs/tasks.py); a smaller region is a narrower new task, learned from "
        "fewer episodes (the quickstart's)",
    )
    probes: list[TaskOrGroup] = option(
        list(DEFAULT_PROBES),
        "the prior tasks whose success measures retention (ids of envs/tasks.py); a LIBERO suite's id stands for "
        "its tasks, its retention the mean over them",
    )
    suite_tasks: int = option(
        0, "a suite named in task or probes stands for its first this many tasks (0: all; a short run's subset)", ge=0
    )
    runs_dir: Path = option(Path("runs"), "where experiments are written")
    base: Path = option(Path("assets/base_policy_embedded"), "the base policy folder (openvla-7b layout)")
    policy: PolicyConfig = option(PolicyConfig(), "which policy implementation loads the base and the runs' policies")
    dataset_name: str = option("vla_razor_embedded", "norm_stats key of the actions (the policy's unnorm key)")
    backend: Literal["embedded", "simpler", "libero"] = option(
        "embedded",
        "simulator: the embedded ManiSkill3 world, SimplerEnv, or LIBERO (its tasks: libero_<suite>_<index> ids, in "
        ".venv-libero: make setup-libero)",
    )
    simpler_env_kwargs: dict[str, Any] = option(
        {},
        "backend simpler: passed to SimplerEnv's env (e.g. {prepackaged_config: false} on a CPU, whose lavapipe "
        "cannot run the prepackaged drawers' ray-tracing shader; scene_name, shader_dir, ...; simpler_tasks: {pick_can: "
        "google_robot_pick_horizontal_coke_can, open_drawer: google_robot_open_middle_drawer} picks SimplerEnv's "
        "variants of our tasks)",
    )
    libero_env_kwargs: dict[str, Any] = option(
        {},
        "backend libero: options of envs/libero.py's make_libero (render_size, wrist, hard_reset, num_steps_wait, "
        "gripper_range: the policy's (closed, open) gripper values, [-1, 1] for the embedded world's policies; jpeg; "
        "cheap_render: true renders without anti-aliasing and reflections, faster on a CPU but other images) and "
        "LIBERO's env",
    )
    sim_backend: Literal["physx_cpu", "physx_cuda"] = option(
        "physx_cpu", "physics of the embedded world (physx_cuda needs ManiSkill to fetch GPU PhysX once)"
    )
    camera_size: int = option(
        224, "side of the camera image (demonstrations, rollouts and evaluation alike)", ge=32, le=1024
    )
    workers: int = option(2, "simulator worker processes for rollouts and evaluation (0: in this process)", ge=0)
    pipeline_groups: int = option(
        1,
        "split the workers into this many groups (1 to workers) that take turns, so that the policy computes one "
        "group's actions while the others step: sim and policy overlap (1: all step, then one policy call)",
        ge=1,
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where the policy trains (auto: cuda if available)")
    threads: int = option(2, "torch CPU threads", ge=1)
    seed: int = option(0, "data order and sampling seed", ge=0)
    checkpoint_every: int = option(50, "updates between resumable checkpoints", ge=1)
    keep_training_state: bool = option(
        False,
        "keep a finished SFT / RL run's training state (checkpoints/training_state.safetensors); off: it is deleted "
        "once summary.json marks the run finished, since a finished run is never resumed and its policy/ holds the "
        "weights (for a full 7B fine-tune the state is 45 GB: weights and AdamW moments)",
    )
    progress: bool = option(True, "show progress bars")
    wandb: Literal["auto", "offline", "online", "off"] = option("auto", "Weights & Biases mirror of the metrics")
    forecast: Path | None = option(
        None,
        "a forecast.json (`vla-razor forecast RUNS_DIR`): every evaluation and live KL check also logs the "
        "retention it predicts from the forward KL (forecast/prior_mean)",
    )
    kl_budget: float | None = option(
        None,
        "stop SFT / RL at the first live KL check (eval.kl_every) whose forward KL to the base reaches this "
        "budget; the model there is the run's final model (none: train to the end)",
        ge=0,
    )
    collect: CollectConfig = option(
        CollectConfig(progress=False), "the SFT demonstrations `robot pipeline` collects when sft.datasets lack them"
    )
    pretrain: PretrainConfig = option(PretrainConfig(), "base policy by behaviour cloning")
    sft: SFTConfig = option(SFTConfig(), "supervised fine-tuning")
    rl: RLConfig = option(RLConfig(), "on-policy REINFORCE")
    lora: LoraOptions = option(
        LoraOptions(),
        "LoRA adapters for `robot sft` and `robot rl` (OpenVLA's fine-tuning recipe: rank 32 on every "
        "linear layer of the Llama and ViTs but the output layer): only the adapters train and are "
        "checkpointed; they are merged into the weights when the policy is saved",
    )
    eval: EvalConfig = option(EvalConfig(), "evaluation: new-task success, retention on the probes, KL to the base")
    simpler_variants: SimplerVariantsConfig = option(
        SimplerVariantsConfig(), "SimplerEnv's variant aggregation / visual matching (`robot variants`)"
    )
    fsdp: FSDPConfig = option(FSDPConfig(), "sharding when pretrain / sft run under torchrun with several processes")

    def __post_init__(self) -> None:
        for stage in ("pretrain", "sft", "rl"):
            _refuse_micro_batches(getattr(self, stage).optim, f"{stage}.optim")
        probe_tasks = [t for p in self.probes for t in self.tasks_of(p)]
        if set(self.new_tasks) & set(probe_tasks) or len(set(probe_tasks)) < len(probe_tasks) or not self.probes:
            raise ConfigError(
                f"probes: {self.probes} must be one or more distinct tasks (or suites) other than the new task "
                f"({self.task!r}), none of their tasks named twice"
            )
        libero = self.backend == "libero"
        misplaced = [
            t for t in (self.task, *self.probes) if (get_task(self.tasks_of(t)[0]).libero is not None) != libero
        ]
        if misplaced:
            raise ConfigError(
                f"task / probes {misplaced}: backend {self.backend!r} "
                + (
                    "runs LIBERO's tasks only (<suite>_<index>, e.g. libero_spatial_0, or a suite, libero_spatial)"
                    if libero
                    else "runs the embedded world's tasks; LIBERO's tasks need backend: libero"
                )
            )
        if self.region is not None:
            if libero:
                raise ConfigError("region: LIBERO's placements are its stored init states; leave region out")
            for task in self.new_tasks:
                try:
                    checked_region(task, self.backend, self.region)
                except ValueError as e:
                    raise ConfigError(f"{e}; region: null places it over the task's whole region") from None
            if self.collect.region is not None and self.collect.region != self.region:
                raise ConfigError(
                    f"collect.region ({self.collect.region}) differs from region ({self.region}): the collection is "
                    "the new task's SFT demonstrations; leave collect.region out (it follows region) or set them alike"
                )
        if self.collect.task is not None and self.collect.task != self.task:
            raise ConfigError(
                f"collect.task ({self.collect.task!r}) differs from task ({self.task!r}): the collection is the new "
                "task's SFT demonstrations; leave collect.task out (it follows task) or set them alike"
            )

    def tasks_of(self, name: str) -> tuple[str, ...]:
        """The task ids `name` (the new task or a probe) stands for: a suite's (its first `suite_tasks`), or itself."""
        return group_tasks(name, self.suite_tasks)

    @property
    def placement_region(self) -> Region | None:
        """`region` as a checked Region (None: each task's own)."""
        return None if self.region is None else checked_region(self.new_tasks[0], self.backend, self.region)

    @property
    def new_tasks(self) -> tuple[str, ...]:
        """The task ids of the new task: one, or a suite's."""
        return self.tasks_of(self.task)

    @property
    def experiment_dir(self) -> Path:
        return self.runs_dir / self.experiment
