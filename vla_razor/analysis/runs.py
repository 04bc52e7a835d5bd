"""Read finished run folders into points for the analysis.

The analysis reads only run folders, so it works the same for toy, robot and LLM runs. A run folder is
finished when it holds ``summary.json`` (written last, atomically, by the trainer); its optional
``points.jsonl`` adds mid-training checkpoints as extra points. Everything else in a run folder
(config, metrics, checkpoints) is ignored here. An experiment folder's own ``summary.json`` (the table of its
runs that `robot pipeline` / `llm pipeline` write, marked ``"kind": "experiment"``) is not a run: the runs are
found inside it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_razor.runs import CorruptFileError, jsonl_exists, open_jsonl

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.json"
POINTS_FILE = "points.jsonl"
EXPERIMENT_KIND = "experiment"
"""The ``kind`` of an experiment folder's summary.json (a run's summary has none)."""


def is_experiment_summary(path: Path) -> bool:
    """An experiment's table of runs, not a finished run: marked by ``kind``, or (written before the mark) a
    ``runs`` list without a ``new_task``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False  # unreadable: left to the run loader, which says what is wrong with it
    return isinstance(data, dict) and (
        data.get("kind") == EXPERIMENT_KIND or (isinstance(data.get("runs"), list) and "new_task" not in data)
    )


@dataclass
class Point:
    """One evaluated model: a run's final checkpoint or one of its mid-training checkpoints."""

    run: str  # run folder, relative to runs_dir (posix style)
    domain: str
    method: str
    hparams: dict[str, Any]
    seed: int
    step: int
    final: bool  # True for the summary.json point, False for a points.jsonl checkpoint
    new_task: float
    prior: dict[str, float]
    prior_mean: float  # mean of the prior-task probe values
    forgetting: float  # mean over probes of (base prior - prior)
    predictors: dict[str, float] = field(default_factory=dict)
    base_new_task: float | None = None
    base_prior_mean: float | None = None
    base_prior: dict[str, float] = field(default_factory=dict)
    # per-example probe scores in document order (what intervals and paired forgetting are computed from; a robot
    # run's are per-episode successes); empty for runs made before they were kept
    prior_examples: dict[str, list[float]] = field(default_factory=dict)
    base_prior_examples: dict[str, list[float]] = field(default_factory=dict)
    new_task_examples: list[float] = field(default_factory=list)  # the new task's, where kept (robot runs)
    base_new_task_examples: list[float] = field(default_factory=list)
    episode_set: str | None = None  # fingerprint of the evaluated episodes: points with the same one pair
    chat_template: dict[str, bool] = field(default_factory=dict)  # probes whose prompts went through it


@dataclass
class LoadStats:
    """What load_points found, so a report can say which runs it used and which it ignored."""

    finished_runs: int
    unfinished_runs: int
    points: int


def load_points(runs_dir: Path, include_mid_training: bool = True) -> tuple[list[Point], LoadStats]:
    """Load every point of every finished run under ``runs_dir`` (searched recursively).

    - A finished run is a folder holding ``summary.json``; it gives one point (``final=True``).
    - With ``include_mid_training``, each line of the run's ``points.jsonl`` gives one more point
      (``final=False``). A line whose ``step`` equals the summary's step is the final checkpoint
      again and is skipped, so no model is counted twice. Run-level fields a line leaves out
      (domain, method, hparams, seed, base) are taken from the summary.
    - A folder holding ``points.jsonl``, ``metrics.jsonl`` or ``config.yaml`` but no ``summary.json``
      is an unfinished run: it is counted in ``LoadStats.unfinished_runs`` and its files are not read.
      Folders that merely contain run folders (an experiment folder with a sweep config) and folders
      inside a run folder (checkpoints) are not runs.
    - Malformed JSON, or a record missing ``new_task`` / ``prior``, raises ``ValueError`` naming the
      file and line.

    Points are returned sorted by run, then step, the final point of a run last.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs directory {runs_dir} does not exist or is not a directory")
    finished_dirs, unfinished_dirs = _find_run_dirs(runs_dir)

    points: list[Point] = []
    for run_dir in finished_dirs:
        points.extend(_load_run(run_dir, runs_dir, include_mid_training))
    points.sort(key=lambda p: (p.run, p.final, p.step))
    stats = LoadStats(finished_runs=len(finished_dirs), unfinished_runs=len(unfinished_dirs), points=len(points))
    return points, stats


def load_progress(runs_dir: Path) -> list[Point]:
    """The latest mid-training point of each unfinished run under ``runs_dir`` (its ``points.jsonl``, no
    ``summary.json`` yet), sorted by run: what a sweep in progress, or a run cut by a lost machine, has measured
    so far. A report lists them apart and fits nothing on them, since such a point is not a finished model; an
    unfinished run with no point yet gives none. The runs may be live: a line still being appended is not read."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"runs directory {runs_dir} does not exist or is not a directory")
    latest: list[Point] = []
    for run_dir in _find_run_dirs(runs_dir)[1]:
        path = run_dir / POINTS_FILE
        records = _read_jsonl_objects(path, complete_lines_only=True) if jsonl_exists(path) else []
        if not records:
            continue
        record, where = max(records, key=lambda item: _require_int(item[0], "step", item[1]))
        run = run_dir.relative_to(runs_dir).as_posix()
        latest.append(_make_point(record, {}, run, final=False, where=where, default_step=0))
    return latest


def by_method(points: list[Point]) -> dict[str, list[Point]]:
    """Group points by training method (keys sorted, so colours and tables come out in a fixed order)."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(point.method, []).append(point)
    return {method: groups[method] for method in sorted(groups)}


# ----------------------------------------------------------------------------------------------
# Finding run folders


def _find_run_dirs(runs_dir: Path) -> tuple[list[Path], list[Path]]:
    """Split the folders under runs_dir into finished and unfinished run folders (both sorted).

    A folder with metrics.jsonl or points.jsonl is surely a run ("strong"); one with only config.yaml
    may instead be an experiment folder holding a sweep config ("weak"), so it counts only when no
    other run folder lies inside it.
    """
    finished: list[Path] = []
    strong: list[Path] = []
    weak: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(runs_dir):
        names = set(filenames)
        if REPORT_FILE in names:  # a report folder (its summary.json is the report's, not a run's)
            continue
        if SUMMARY_FILE in names and not is_experiment_summary(Path(dirpath) / SUMMARY_FILE):
            finished.append(Path(dirpath))
        elif names.intersection(("points.jsonl", "metrics.jsonl")):
            strong.append(Path(dirpath))
        elif "config.yaml" in names:
            weak.append(Path(dirpath))
    # A finished run nested inside another finished run would be read twice over; keep the outer one.
    finished_set = set(finished)
    finished = sorted(run for run in finished if not _ancestors(run, runs_dir) & finished_set)
    finished_set = set(finished)
    strong_set = set(strong)
    holds_finished = set().union(*(_ancestors(run, runs_dir) for run in finished))
    holds_any = holds_finished.union(*(_ancestors(folder, runs_dir) for folder in strong + weak))

    def near_finished(folder: Path) -> bool:
        return folder in holds_finished or bool(_ancestors(folder, runs_dir) & finished_set)

    unfinished = [
        folder for folder in strong if not near_finished(folder) and not _ancestors(folder, runs_dir) & strong_set
    ]
    unfinished += [
        folder
        for folder in weak
        if not near_finished(folder) and folder not in holds_any and not _ancestors(folder, runs_dir) & strong_set
    ]
    return finished, sorted(unfinished)


def _ancestors(path: Path, root: Path) -> set[Path]:
    """Folders strictly above ``path``, up to and including ``root``."""
    above: set[Path] = set()
    for parent in path.parents:
        above.add(parent)
        if parent == root:
            break
    return above


# ----------------------------------------------------------------------------------------------
# Reading one run


def _load_run(run_dir: Path, runs_dir: Path, include_mid_training: bool) -> list[Point]:
    run_name = run_dir.relative_to(runs_dir).as_posix()
    summary_path = run_dir / SUMMARY_FILE
    summary = _read_json_object(summary_path)

    mid_records: list[tuple[dict[str, Any], str]] = []
    points_path = run_dir / POINTS_FILE
    if include_mid_training and jsonl_exists(points_path):
        mid_records = _read_jsonl_objects(points_path)

    # The summary may omit "step"; then it is taken to come after every mid-training checkpoint.
    final_step_default = 0
    for record, where in mid_records:
        final_step_default = max(final_step_default, _require_int(record, "step", where))

    final_point = _make_point(
        summary, {}, run_name, final=True, where=str(summary_path), default_step=final_step_default
    )
    points = [final_point]
    for record, where in mid_records:
        if "step" not in record:
            raise CorruptFileError(f"{where}: mid-training point has no 'step'")
        point = _make_point(record, summary, run_name, final=False, where=where, default_step=0)
        if point.step == final_point.step:
            continue  # the final checkpoint repeated in points.jsonl
        points.append(point)
    return points


def experiment_table(
    experiment_dir: Path, domain: str, methods: Sequence[str], columns: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every finished run of an experiment (its `domain`, a method in `methods`) as a row: method, run folder,
    hparams, then the domain's `columns(summary)`; sorted by method (in `methods` order), learning rate and run.
    Also the base results the runs were measured against. One listing for every domain's pipeline."""
    rows, base = [], None
    for path in sorted((Path(experiment_dir) / "runs").glob(f"*/{SUMMARY_FILE}")):
        summary = json.loads(path.read_text())
        if summary.get("domain") != domain or summary.get("method") not in methods:
            continue
        base = base or summary["base"]
        row = {"method": summary["method"], "run": path.parent.name, "hparams": summary["hparams"]}
        rows.append({**row, **columns(summary)})
    if base is None:
        raise FileNotFoundError(
            f"{Path(experiment_dir) / 'runs'}: no finished {domain} run ({', '.join(methods)}) with a {SUMMARY_FILE}"
        )
    rows.sort(key=lambda r: (list(methods).index(r["method"]), r["hparams"].get("lr", 0.0), r["run"]))
    return rows, base


def _parse_object(text: str, path: Path, line: int | None = None) -> dict[str, Any]:
    """One JSON object from `text` (the whole file, or its line `line`), or a CorruptFileError naming file:line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{path}:{line or error.lineno}: malformed JSON: {error.msg}") from error
    if not isinstance(value, dict):
        raise CorruptFileError(f"{path}:{line or 1}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_json_object(path: Path) -> dict[str, Any]:
    return _parse_object(path.read_text(encoding="utf-8"), path)


def _read_jsonl_objects(path: Path, complete_lines_only: bool = False) -> list[tuple[dict[str, Any], str]]:
    """Parse a JSON-lines file; blank lines are allowed. Returns (record, 'file:line') pairs. With
    ``complete_lines_only``, a last line without its newline (a live run's writer mid-append) is not read."""
    records: list[tuple[dict[str, Any], str]] = []
    with open_jsonl(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if complete_lines_only and not line.endswith("\n"):
                break
            if not line.strip():
                continue
            records.append((_parse_object(line, path, line_number), f"{path}:{line_number}"))
    return records


def _make_point(
    record: Mapping[str, Any], fallback: Mapping[str, Any], run: str, final: bool, where: str, default_step: int
) -> Point:
    """Build a Point from one record; run-level fields missing from it come from ``fallback``."""

    def get(key: str) -> Any:
        return record[key] if key in record else fallback.get(key)

    if "new_task" not in record:
        raise CorruptFileError(f"{where}: missing 'new_task'")
    new_task = _require_float(record["new_task"], "new_task", where)
    prior = _float_dict(record.get("prior"), "prior", where)
    if not prior:
        raise CorruptFileError(f"{where}: 'prior' must be a non-empty object of probe -> performance")
    prior_mean = sum(prior.values()) / len(prior)

    base = get("base")
    base_new_task: float | None = None
    base_prior: dict[str, float] = {}
    base_prior_examples: dict[str, list[float]] = {}
    base_new_task_examples: list[float] = []
    if base is not None:
        if not isinstance(base, Mapping):
            raise CorruptFileError(f"{where}: 'base' must be an object")
        if base.get("new_task") is not None:
            base_new_task = _require_float(base["new_task"], "base.new_task", where)
        base_prior = _float_dict(base.get("prior"), "base.prior", where)
        base_prior_examples = _examples_dict(base.get("prior_examples"), "base.prior_examples", where)
        base_new_task_examples = _examples_list(base.get("new_task_examples"), "base.new_task_examples", where)
    base_prior_mean = sum(base_prior.values()) / len(base_prior) if base_prior else None

    forgetting_value = record.get("forgetting")
    if forgetting_value is not None:
        forgetting = _require_float(forgetting_value, "forgetting", where)
    else:
        shared = [probe for probe in prior if probe in base_prior]
        if not shared:
            raise CorruptFileError(f"{where}: no 'forgetting' and no base prior values to compute it from")
        forgetting = sum(base_prior[probe] - prior[probe] for probe in shared) / len(shared)

    step = record["step"] if "step" in record else default_step
    seed = get("seed")
    return Point(
        run=run,
        domain=str(get("domain") or "unknown"),
        method=str(get("method") or "unknown"),
        hparams=dict(get("hparams") or {}),
        seed=int(seed) if seed is not None else 0,
        step=_require_int({"step": step}, "step", where),
        final=final,
        new_task=new_task,
        prior=prior,
        prior_mean=prior_mean,
        forgetting=forgetting,
        predictors=_predictor_dict(record.get("predictors"), where),
        base_new_task=base_new_task,
        base_prior=base_prior,
        base_prior_mean=base_prior_mean,
        prior_examples=_examples_dict(record.get("prior_examples"), "prior_examples", where),
        base_prior_examples=base_prior_examples,
        new_task_examples=_examples_list(record.get("new_task_examples"), "new_task_examples", where),
        base_new_task_examples=base_new_task_examples,
        episode_set=str(get("episode_set")) if get("episode_set") is not None else None,
        chat_template={str(k): bool(v) for k, v in (get("chat_template") or {}).items()},
    )


def _require_float(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CorruptFileError(f"{where}: '{name}' must be a number, got {value!r}")
    return float(value)


def _require_int(record: Mapping[str, Any], name: str, where: str) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise CorruptFileError(f"{where}: '{name}' must be an integer, got {value!r}")
    return int(value)


def _float_dict(value: Any, name: str, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CorruptFileError(f"{where}: '{name}' must be an object of name -> number")
    return {str(key): _require_float(item, f"{name}.{key}", where) for key, item in value.items()}


def _examples_dict(value: Any, name: str, where: str) -> dict[str, list[float]]:
    """Per-example scores: probe -> list of numbers (absent: {})."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, list) for v in value.values()):
        raise CorruptFileError(f"{where}: '{name}' must be an object of probe -> list of per-example scores")
    return {str(key): [_require_float(x, f"{name}.{key}", where) for x in items] for key, items in value.items()}


def _examples_list(value: Any, name: str, where: str) -> list[float]:
    """Per-example scores of one task: a list of numbers (absent: [])."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CorruptFileError(f"{where}: '{name}' must be a list of per-example scores")
    return [_require_float(x, name, where) for x in value]


def _predictor_dict(value: Any, where: str) -> dict[str, float]:
    """Predictor values; null or non-finite entries mean 'not measured' and are dropped."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CorruptFileError(f"{where}: 'predictors' must be an object of name -> number")
    predictors: dict[str, float] = {}
    for key, item in value.items():
        if item is None:
            continue
        number = _require_float(item, f"predictors.{key}", where)
        if math.isfinite(number):
            predictors[str(key)] = number
    return predictors
