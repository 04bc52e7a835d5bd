"""`vla-razor sweep`: an experiment's runs as Ray tasks, on this machine or a cluster.

1. The grid is expanded into tasks (toy: one stack of runs each; robot and llm: one run of one method each), each
   naming the run folders it writes. A task whose folders all hold a summary.json is finished and skipped.
2. The shared step runs first, as a task of its own: toy, the base model; robot, the SFT demonstrations and
   the base's evaluation with the KL frames, which every run is measured against; llm, the base's evaluation and
   its stored KL responses.
3. The other tasks run with `resources` each, as many at once as the cluster holds (or, `in_process`, one after
   another in this process, without Ray: `vla-razor toy sweep`). A task that raises (or whose
   worker dies) is reported, by name and cause, and the others go on; it is not finished, so the next sweep
   runs it again (robot and llm runs resume from their last checkpoint). Ctrl-C cancels the running tasks: a run
   counts as finished only once its summary.json, written last and atomically, exists, so nothing half-written
   is ever skipped. The report is remade after each task that finishes, so a sweep cut off mid-way leaves one
   over every run finished so far.
4. `<experiment>/sweep_status.json` records what was finished, skipped, failed or interrupted; then, with
   `curves`, each finished run's learning curve; then the report.
Tasks receive plain data (config path, dotted overrides, the working directory), so a cluster's nodes need the
project and the runs folder at the same paths.
The domains' configs and trainers are imported inside the functions that use them (torch, the simulator,
transformers): a sweep's driver and a Ray worker load only the domain they run; Ray (the `sweep` extra, optional)
only when the sweep runs on it.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla_razor.config import ConfigError, load_config
from vla_razor.runs import RunFolder, atomic_write_json, release_run_locks
from vla_razor.sweep.config import SweepConfig

STATUS = "sweep_status.json"
ROBOT_METHODS = ("sft", "rl")
LLM_METHODS = ("sft", "grpo", "one_zero", "simpo")


@dataclass(frozen=True)
class SweepTask:
    """One Ray task: `payload` is what `execute_task` needs, `run_dirs` the run folders it finishes."""

    name: str
    run_dirs: tuple[str, ...]
    payload: dict[str, Any]

    def is_finished(self) -> bool:
        return all(RunFolder(Path(d)).is_finished() for d in self.run_dirs)


@dataclass
class SweepResult:
    experiment_dir: Path
    finished: list[str] = field(default_factory=list)
    """Tasks that ran to the end in this sweep."""
    skipped: list[str] = field(default_factory=list)
    """Tasks already finished before it."""
    failed: dict[str, str] = field(default_factory=dict)
    """Task name -> the cause of its failure."""
    seconds: float = 0.0
    report_dir: Path | None = None
    runs_trained: int = 0
    """Run folders the finished tasks wrote (a toy task trains a stack of runs)."""
    runs_skipped: int = 0
    """Run folders already finished before the sweep."""

    @property
    def runs_per_min(self) -> float | None:
        return self.runs_trained / (self.seconds / 60) if self.seconds > 0 and self.runs_trained else None


# ---------------------------------------------------------------------------------------------- the grid
def _experiment(cfg: SweepConfig, overrides: dict[str, Any] | None = None) -> Any:
    """The experiment config with the sweep's overrides (and a grid point's, if given)."""
    if cfg.domain == "toy":
        from vla_razor.toy.config import ToyConfig

        return load_config(ToyConfig, cfg.experiment_config, {**cfg.overrides, **(overrides or {})})
    if cfg.domain == "llm":
        from vla_razor.llm.pipeline import load_llm_config

        return load_llm_config(cfg.experiment_config, {**cfg.overrides, **(overrides or {})})
    from vla_razor.robot.config import RobotConfig

    return load_config(RobotConfig, cfg.experiment_config, {**cfg.overrides, **(overrides or {})})


def _payload(cfg: SweepConfig, kind: str, overrides: dict[str, Any], **extra: Any) -> dict[str, Any]:
    path = None if cfg.experiment_config is None else str(cfg.experiment_config)
    return {
        "domain": cfg.domain,
        "kind": kind,
        "cwd": os.getcwd(),
        "experiment_config": path,
        "overrides": {**cfg.overrides, **overrides},
        **extra,
    }


def sweep_tasks(cfg: SweepConfig) -> tuple[SweepTask, list[SweepTask]]:
    """The shared step and the runs' tasks of the sweep, in a fixed order."""
    if cfg.curves is not None and cfg.domain != "robot":
        raise ConfigError(f"curves: learning curves are read from robot runs' folders; a {cfg.domain} sweep has none")
    if cfg.domain == "toy":
        return _toy_tasks(cfg)
    return _method_tasks(cfg)


def _toy_tasks(cfg: SweepConfig) -> tuple[SweepTask, list[SweepTask]]:
    from vla_razor.toy.sweep import sweep_groups
    from vla_razor.toy.train import NOT_IN_RUN_IDENTITY, run_config

    if cfg.grid:
        raise ConfigError(
            f"grid: a toy sweep's grid is the `sweep` section of {cfg.experiment_config}; leave grid empty"
        )
    threads = {} if cfg.in_process else {"threads": max(1, round(cfg.resources.cpus))}
    exp = _experiment(cfg, threads)
    base_dir = str(exp.experiment_dir / "base")
    prepare = SweepTask("base model", (), _payload(cfg, "prepare", threads))
    tasks = []
    for group in sweep_groups(exp):
        for r in group:  # a run folder made with other settings is refused, not resumed nor called finished
            RunFolder(exp.experiment_dir / "runs" / r.name).check_settings(run_config(exp, r), NOT_IN_RUN_IDENTITY)
        name = group[0].name if len(group) == 1 else f"{group[0].name} (+{len(group) - 1} stacked)"
        tasks.append(
            SweepTask(
                name,
                tuple(str(exp.experiment_dir / "runs" / r.name) for r in group),
                _payload(cfg, "run", threads, runs=[asdict(r) for r in group], base_dir=base_dir),
            )
        )
    return prepare, tasks


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of each dotted field's values, as override dicts (the fields' order is kept)."""
    names = list(grid)
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid: {name} must list at least one value, got {values!r}")
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def method_points(grid: dict[str, list[Any]] | list[dict[str, list[Any]]]) -> list[dict[str, Any]]:
    """A method's grid points: the product of its fields' values, or of each grid of a list, one after another."""
    if isinstance(grid, dict):
        return grid_points(grid)
    return [point for one in grid for point in grid_points(one)]


def _run_name(cfg: SweepConfig, exp: Any, method: str) -> str:
    if cfg.domain == "llm":
        from vla_razor.llm.train import run_name

        return run_name(exp, method)
    from vla_razor.robot.stages import rl_run_name, sft_run_name

    return sft_run_name(exp) if method == "sft" else rl_run_name(exp)


def _method_tasks(cfg: SweepConfig) -> tuple[SweepTask, list[SweepTask]]:
    """Robot and LLM sweeps: per method, the product of its dotted fields' values, one run a task."""
    methods = ROBOT_METHODS if cfg.domain == "robot" else LLM_METHODS
    if not cfg.grid:
        raise ConfigError(
            f"grid: a {cfg.domain} sweep lists the values to try per method, e.g. "
            "{sft: {sft.optim.lr: [1e-5, 3e-5]}, " + f"{methods[1]}: " + "{...}}"
        )
    unknown = sorted(set(cfg.grid) - set(methods))
    if unknown:
        raise ConfigError(f"grid: unknown method {unknown[0]!r} ({cfg.domain} methods: {', '.join(methods)})")
    tasks, seen = [], {}
    for method in cfg.grid:  # the grid's order: a lease that ends early has run the methods listed first
        for point in method_points(cfg.grid[method]):
            exp = _experiment(cfg, point)
            name = _run_name(cfg, exp, method)
            if name in seen:
                raise ConfigError(
                    f"grid: {method} runs {seen[name]} and {point} would share the run folder {name}; the folder name "
                    f"comes from a few of the method's settings (the learning rate and its batch or group settings): "
                    f"sweep one of those, or give each run its own {method.replace('one_zero', 'grpo')}.run_name"
                )
            seen[name] = point
            tasks.append(
                SweepTask(name, (str(exp.experiment_dir / "runs" / name),), _payload(cfg, "run", point, method=method))
            )
    if cfg.domain == "llm":
        prepare = SweepTask("the base's evaluation and KL responses", (), _payload(cfg, "prepare", {}))
        return prepare, tasks
    collect = "sft" in cfg.grid
    prepare = SweepTask(
        "SFT demonstrations and the base's evaluation" if collect else "the base's evaluation",
        (),
        _payload(cfg, "prepare", {}, collect=collect),
    )
    return prepare, tasks


# -------------------------------------------------------------------------------------- inside a Ray task
def execute_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Runs one task in a Ray worker (or in this process): the shared step, or the runs of one task."""
    os.chdir(payload["cwd"])  # the config's relative paths (runs/, assets/, data/) are the driver's
    started = time.perf_counter()
    try:
        if payload["domain"] == "toy":
            _execute_toy(payload)
        elif payload["domain"] == "llm":
            _execute_llm(payload)
        else:
            _execute_robot(payload)
    finally:
        release_run_locks()  # a Ray worker outlives its task: a retry elsewhere may take the task's runs
    return {"seconds": time.perf_counter() - started, "pid": os.getpid()}


_TOY_INPUTS: dict[str, Any] = {}
"""The data and base reference of the toy experiment whose tasks this process last ran: a process that runs
several of its tasks (in_process, or a Ray worker given more than one) loads them once, as one stack does."""


def _execute_toy(payload: dict[str, Any]) -> None:
    from vla_razor.toy.config import ToyConfig
    from vla_razor.toy.data import load_toy_data
    from vla_razor.toy.sweep import set_threads
    from vla_razor.toy.train import RunSpec, load_base_for_experiment, load_or_pretrain_base, run_group

    cfg = load_config(ToyConfig, payload["experiment_config"], payload["overrides"])
    set_threads(cfg.threads)
    d = cfg.data
    if payload["kind"] == "prepare":
        data = load_toy_data(d.pretrain_per_task, d.parity_test, d.fashion_test, d.fashion_dir, d.seed)
        load_or_pretrain_base(cfg, data, progress=False)
        return
    if not (Path(payload["base_dir"]) / "base.json").is_file():
        raise FileNotFoundError(f"{payload['base_dir']}: the sweep's base model is missing (its shared step failed?)")
    runs = [RunSpec(**r) for r in payload["runs"]]
    base_made = (Path(payload["base_dir"]) / "base.json").stat().st_mtime_ns
    key = json.dumps([payload["experiment_config"], payload["overrides"], base_made], sort_keys=True, default=str)
    if _TOY_INPUTS.get("key") != key:
        data = load_toy_data(d.pretrain_per_task, d.parity_test, d.fashion_test, d.fashion_dir, d.seed)
        _TOY_INPUTS.update(key=key, data=data, base=load_base_for_experiment(cfg, data, progress=False))
    seconds = run_group(cfg, runs, _TOY_INPUTS["base"], _TOY_INPUTS["data"], progress=False)
    with open(cfg.experiment_dir / "timing.jsonl", "a") as f:  # the toy report's runs per minute
        f.write(
            json.dumps(
                {
                    "method": runs[0].method,
                    "epochs": runs[0].epochs,
                    "seed": runs[0].seed,
                    "runs": len(runs),
                    "seconds": seconds,
                }
            )
            + "\n"
        )


def _execute_robot(payload: dict[str, Any]) -> None:
    from vla_razor.robot.stages import collect_sft_demos, load_robot_config, run_eval, run_rl, run_sft

    cfg = load_robot_config(payload["experiment_config"], {**payload["overrides"], "progress": False})
    if payload["kind"] == "prepare":
        if payload["collect"]:
            collect_sft_demos(cfg)
        run_eval(cfg, cfg.base)  # base_eval.json and the KL frames, made once for every run
        return
    if payload["method"] == "sft":
        collect_sft_demos(cfg)  # only points sft.datasets at the collection (collected by the shared step)
        run_sft(cfg)
    else:
        run_rl(cfg)


def _execute_llm(payload: dict[str, Any]) -> None:
    from vla_razor.llm.pipeline import load_llm_config
    from vla_razor.llm.train import evaluate_model, train_method

    cfg = load_llm_config(payload["experiment_config"], {**payload["overrides"], "progress": False})
    if payload["kind"] == "prepare":
        evaluate_model(cfg, None)  # base_eval.json and kl_responses.json, made once for every run
        return
    train_method(cfg, payload["method"])


# ------------------------------------------------------------------------------------------- the driver
def _describe_failure(err: BaseException) -> str:
    """The cause of a task's failure in a line or two: the original exception where Ray kept it."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".strip()
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _write_status(path: Path, result: SweepResult, pending: list[str], interrupted: bool) -> None:
    atomic_write_json(
        path,
        {
            "finished": result.finished,
            "skipped": result.skipped,
            "failed": result.failed,
            "unfinished": pending,
            "interrupted": interrupted,
            "seconds": result.seconds,
        },
    )


def run_sweep(cfg: SweepConfig, progress: bool = True, command: str | None = None) -> SweepResult:
    """Runs every unfinished task of the sweep on Ray, or in this process (`in_process`), see the module
    docstring, and writes the learning curves (`curves`) and the report; `command`, the command line that ran
    the sweep, is recorded beside each curve."""
    prepare, tasks = sweep_tasks(cfg)
    experiment_dir = _experiment(cfg).experiment_dir
    result = SweepResult(experiment_dir)
    todo = [task for task in tasks if not task.is_finished()]
    result.skipped = [task.name for task in tasks if task not in todo]
    left = [task.name for task in todo[cfg.max_new_tasks :]] if cfg.max_new_tasks is not None else []
    todo = todo[: cfg.max_new_tasks]
    prepare = shared_step_for(prepare, todo)
    started = time.perf_counter()
    experiment_dir.mkdir(parents=True, exist_ok=True)

    def report_now() -> None:
        result.report_dir = None  # set again only if this report is made
        result.report_dir = write_sweep_report(cfg)

    # the report after every run, so that a sweep cut mid-way (a lease taken back, a cluster job's time up) leaves an
    # experiment summary.json that lists every finished run
    after_task = report_now if cfg.report else None
    if cfg.in_process:
        _run_in_process(prepare, todo, result, progress, after_task)
    else:
        _run_on_ray(cfg, prepare, todo, len(tasks), result, progress, after_task)
    result.seconds = time.perf_counter() - started
    runs = {task.name: len(task.run_dirs) for task in tasks}
    result.runs_trained = sum(runs[name] for name in result.finished)
    result.runs_skipped = sum(runs[name] for name in result.skipped)
    _write_status(experiment_dir / STATUS, result, left, interrupted=False)
    if cfg.curves is not None:
        write_curves(tasks, cfg.curves, command)
    if cfg.report and (result.finished or result.skipped) and result.report_dir is None:  # not made after the last run
        result.report_dir = write_sweep_report(cfg)
    return result


def shared_step_for(prepare: SweepTask, todo: list[SweepTask]) -> SweepTask:
    """The shared step as the unfinished tasks need it: a robot sweep whose SFT runs are all finished does not
    collect their demonstrations again (2,000 of them took minutes of a device lease that had only RL runs left)."""
    if prepare.payload.get("collect") and not any(t.payload.get("method") == "sft" for t in todo):
        return SweepTask("the base's evaluation", prepare.run_dirs, {**prepare.payload, "collect": False})
    return prepare


def _run_in_process(
    prepare: SweepTask,
    todo: list[SweepTask],
    result: SweepResult,
    progress: bool,
    after_task: Callable[[], Any] | None = None,
) -> None:
    """The tasks one after another, here, `after_task` after each; an error stops the sweep (nothing half-written
    counts as finished)."""
    if not todo:
        return
    execute_task(prepare.payload)
    for task in tqdm(todo, desc=f"sweep {result.experiment_dir.name}", unit="task", disable=not progress):
        execute_task(task.payload)
        result.finished.append(task.name)
        _after(task, after_task, print)


def _after(task: SweepTask, after_task: Callable[[], Any] | None, say: Callable[[str], Any]) -> None:
    """`after_task` once `task` has finished; its failure is said and the sweep goes on (a report that cannot be
    made yet must not stop the runs; the one after the last run raises)."""
    if after_task is None:
        return
    try:
        after_task()
    except Exception as err:  # noqa: BLE001 - said, and the runs go on
        say(f"sweep: the report after {task.name} failed ({type(err).__name__}: {err}); the sweep goes on")


def _run_on_ray(
    cfg: SweepConfig,
    prepare: SweepTask,
    todo: list[SweepTask],
    total: int,
    result: SweepResult,
    progress: bool,
    after_task: Callable[[], Any] | None = None,
) -> None:
    """The shared step, then the other tasks as Ray tasks, as many at once as the cluster holds, `after_task` here
    after each that finishes; a failed task is recorded and the others go on; Ctrl-C cancels them and records what
    was unfinished."""
    import ray

    experiment_dir = result.experiment_dir
    started = time.perf_counter()
    pending: dict[Any, SweepTask] = {}
    if todo:
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if cfg.address is None:
            init.update(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
        else:
            init["address"] = cfg.address
        ray.init(**init)
        remote = ray.remote(execute_task).options(
            num_cpus=cfg.resources.cpus, num_gpus=cfg.resources.gpus, max_retries=0
        )
        try:
            shared = remote.remote(prepare.payload)
            pending = {shared: prepare}  # so that Ctrl-C cancels it too
            try:
                ray.get(shared)
            except Exception as err:  # noqa: BLE001 - reported; every run needs it, so none is launched
                result.failed[prepare.name] = _describe_failure(err)
                todo = []
            pending = {remote.remote(task.payload): task for task in todo}
            bar = tqdm(
                total=total,
                initial=len(result.skipped),
                desc=f"sweep {experiment_dir.name}",
                unit="task",
                disable=not progress,
            )
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(done[0])
                try:
                    ray.get(done[0])
                    result.finished.append(task.name)
                except Exception as err:  # noqa: BLE001 - one failed run must not stop the others
                    result.failed[task.name] = _describe_failure(err)
                    bar.write(f"failed: {task.name}: {result.failed[task.name]}")
                else:
                    _after(task, after_task, bar.write)
                bar.update(1)
                bar.set_postfix(failed=len(result.failed))
            bar.close()
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            result.seconds = time.perf_counter() - started
            _write_status(experiment_dir / STATUS, result, [t.name for t in pending.values()], interrupted=True)
            raise
        finally:
            ray.shutdown()


def write_curves(tasks: list[SweepTask], out: Path, command: str | None) -> list[Path]:
    """Each finished run's learning curve into out/<run>/ (a run of this sweep or of an earlier one)."""
    from vla_razor.analysis.learning_curve import write_curve

    written = []
    for task in tasks:
        for run_dir in map(Path, task.run_dirs):
            if RunFolder(run_dir).is_finished():
                written.append(write_curve(run_dir, out / run_dir.name, command=command)[0])
    return written


def write_sweep_report(cfg: SweepConfig) -> Path:
    """The experiment's own report over every finished run (the same one its domain's commands write)."""
    exp = _experiment(cfg)
    if cfg.domain == "toy":
        from vla_razor.toy.sweep import write_toy_report

        return write_toy_report(exp)
    if cfg.domain == "llm":
        from vla_razor.llm.pipeline import summarize_experiment as summarize_llm

        return summarize_llm(exp).report_dir
    from vla_razor.robot.stages import summarize_experiment

    return summarize_experiment(exp).report_dir
