"""One report from a folder of runs: the R^2 table, per-method frontiers, and the paper's plots.

The report is written twice with the same content, as Markdown and as self-contained HTML (only the
PNGs next to it are referenced), plus report.json for programs. It reads run folders only, so it serves
toy, robot and LLM experiments alike.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vla_razor.analysis.fits import PAPER_TABLE1_R2, predictor_table
from vla_razor.analysis.intervals import (
    Interval,
    forgetting_intervals,
    mean_of_probes,
    paired_difference,
    probe_intervals,
    score_interval,
    unpaired_difference,
)
from vla_razor.analysis.pareto import ExponentialFit, fit_exponential, near_frontier, pareto_frontier
from vla_razor.analysis.plots import plot_forgetting_vs, plot_new_task_vs, plot_tradeoff
from vla_razor.analysis.forecast import fit_forecast, holdout_error
from vla_razor.analysis.runs import (
    EXPERIMENT_KIND,
    SUMMARY_FILE,
    LoadStats,
    Point,
    by_method,
    is_experiment_summary,
    load_points,
    load_progress,
)
from vla_razor.runs import atomic_write_json

KEY_PREDICTOR = "forward_kl"
FRONTIER_TOL = 0.02  # "within 2 accuracy points of the Pareto frontier" (Appendix B.1)
N_COMPARISON_LEVELS = 5


@dataclass
class ReportResult:
    """Where the report went and its headline numbers."""

    markdown_path: Path
    html_path: Path
    summary_path: Path
    r2: dict[str, float]
    runs: int  # finished runs used
    points: int  # points pooled


@dataclass
class MethodSummary:
    """One method's share of the points and its fitted frontier."""

    runs: int
    points: int
    near_frontier: int
    best_new_task: float
    retention_at_best_new_task: float  # prior-task performance of the frontier point with best new-task
    frontier_range: tuple[float, float]  # new-task range of the near-frontier points
    exp_fit: ExponentialFit


@dataclass
class FrontierComparison:
    """Each method's fitted frontier at a few new-task levels that every method's frontier covers."""

    levels: list[float]
    values: dict[str, list[float]]
    sentence: str


@dataclass
class MatchedModels:
    """At each matched new-task level, each method's Pareto-frontier model nearest it, with 95 % intervals of its
    new-task success and retention, and (two methods) the first's retention minus the second's."""

    levels: list[float]
    models: dict[str, list[Point]]  # method -> the model chosen at each level
    difference: tuple[str, str] | None  # (a, b): the rows' a minus b; None unless exactly two methods
    differences: list[Interval | None]  # a minus b in retention at each level (None: no per-example results)
    # a minus b in new-task success at each level: the match itself, which the retention difference presumes
    new_task_differences: list[Interval | None] = field(default_factory=list)


class NoRunsError(ValueError):
    """A folder handed to the report holds no finished run (the user pointed at the wrong folder, or too early)."""


def write_experiment_summary(
    experiment_dir: Path, fields: dict, title: str, extra: dict | None = None
) -> tuple[Path, ReportResult]:
    """The end of a domain's pipeline: the experiment's summary.json (``kind: experiment`` and the domain's
    ``fields``: its table of runs, base, config) and the report over every finished run in ``experiment_dir/runs``.
    One place, so that report / forecast tell an experiment's table from a run's summary in every domain. Once the
    report is made, the summary also says what it pooled: ``n_runs`` finished runs and ``n_points`` points (final and
    mid-training checkpoints)."""
    summary_path = Path(experiment_dir) / SUMMARY_FILE
    atomic_write_json(summary_path, {"kind": EXPERIMENT_KIND, **fields})  # kept should the report find no run
    report = write_report(Path(experiment_dir) / "runs", Path(experiment_dir) / "report", title=title, extra=extra)
    atomic_write_json(summary_path, _with_pooled({"kind": EXPERIMENT_KIND, **fields}, report))
    return summary_path, report


def _with_pooled(summary: dict, report: ReportResult) -> dict:
    """``summary`` with what ``report`` pooled: ``n_runs`` finished runs, ``n_points`` points."""
    return {**summary, "n_runs": report.runs, "n_points": report.points}


class StaleSummaryError(ValueError):
    """An experiment's summary.json whose table of runs is not the runs its folder holds now."""


class NotAnExperimentError(ValueError):
    """A folder handed over as an experiment holds no experiment summary.json (kind ``experiment``)."""


def read_experiment_summary(experiment_dir: Path) -> dict:
    """The experiment's summary.json, which `robot pipeline` / `llm pipeline` / `vla-razor sweep` write (its table
    of runs with their intervals, the base, the config); NotAnExperimentError naming the file otherwise."""
    source = Path(experiment_dir) / SUMMARY_FILE
    if not is_experiment_summary(source):
        why = "missing" if not source.is_file() else "unreadable, or a run's summary"
        raise NotAnExperimentError(
            f"{source}: an experiment's summary.json was expected ({why}; `robot pipeline` / `llm pipeline` and "
            "`vla-razor sweep` write one in the experiment folder); give the experiment folder"
        )
    return json.loads(source.read_text())


def write_results_summary(summary: dict, out: Path, report: ReportResult) -> Path:
    """``out``: an experiment's ``summary`` with ``n_runs`` / ``n_points`` set to what ``report`` pooled: a results
    folder's headline file (docs/results/<domain>/summary.json), made from the committed experiment folder by the
    same command as its report, so the two cannot disagree."""
    listed = len(summary.get("runs", []))
    if listed != report.runs:
        raise StaleSummaryError(
            f"the experiment's summary.json lists {listed} finished runs, its runs folder holds {report.runs}: it "
            "predates the last runs (a sweep cut before its end writes none). Remake it first, with `vla-razor robot "
            "report` / `llm report` on the experiment's config, or `vla-razor sweep` on its sweep config"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, _with_pooled(summary, report))
    return out


def write_report(
    runs_dir: Path,
    out_dir: Path,
    title: str | None = None,
    predictors: list[str] | None = None,
    n_boot: int = 200,
    extra: dict | None = None,
) -> ReportResult:
    """Analyse every finished run under ``runs_dir`` and write the report files into ``out_dir``.

    Writes tradeoff.png, forgetting_vs_<predictor>.png for forward_kl and every other predictor in
    the table, new_task_vs_forward_kl.png, report.md, report.html and report.json. ``extra`` (e.g.
    throughput) is shown as "Run facts" and merged into report.json. Raises ValueError when no run
    under ``runs_dir`` is finished.
    """
    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir)
    points, stats = load_points(runs_dir, include_mid_training=True)
    if not points:
        raise NoRunsError(
            f"no finished runs (summary.json) under {runs_dir}; {stats.unfinished_runs} unfinished runs ignored"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    title = title or f"RL's Razor report: {runs_dir.resolve().name}"

    table = predictor_table(points, predictors=predictors, target="forgetting", degree=2, n_boot=n_boot)
    methods = {method: _summarize_method(group) for method, group in by_method(points).items()}
    comparison = _compare_frontiers(methods)
    matched = _matched_models(by_method(points), comparison.levels)
    pooled = _pooled_sentence(points, stats)
    forecast = _forecast(points)

    plot_tradeoff(points, out_dir / "tradeoff.png", tol=FRONTIER_TOL)
    plot_new_task_vs(points, KEY_PREDICTOR, out_dir / f"new_task_vs_{KEY_PREDICTOR}.png")
    plotted_predictors = [KEY_PREDICTOR] + [name for name in table if name != KEY_PREDICTOR]
    forgetting_plots: dict[str, str] = {}
    for name in plotted_predictors:
        file_name = f"forgetting_vs_{_safe_file_part(name)}.png"
        plot_forgetting_vs(points, name, out_dir / file_name)
        forgetting_plots[name] = file_name

    in_progress = load_progress(runs_dir)
    blocks = _report_blocks(
        title,
        points,
        stats,
        pooled,
        table,
        methods,
        comparison,
        forgetting_plots,
        extra,
        forecast,
        matched,
        in_progress,
    )
    markdown_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    summary_path = out_dir / "report.json"
    markdown_path.write_text(_render_markdown(blocks), encoding="utf-8")
    html_path.write_text(_render_html(title, blocks), encoding="utf-8")

    summary = {
        "r2": {name: row["r2"] for name, row in table.items()},
        "r2_std": {name: row["r2_std"] for name, row in table.items()},
        "r2_n": {name: row["n"] for name, row in table.items()},
        "r2_n_runs": {name: row["n_runs"] for name, row in table.items()},
        "r2_loro": {name: row["r2_loro"] for name, row in table.items()},
        "r2_boot": {
            name: {"used": row["boot_used"], "degenerate": row["boot_degenerate"]} for name, row in table.items()
        },
        "r2_coeffs": {name: row["coeffs"] for name, row in table.items()},
        "n_points": len(points),
        "runs": stats.finished_runs,
        "unfinished_runs": stats.unfinished_runs,
        "in_progress": [_progress_json(p) for p in in_progress],
        "domains": sorted({p.domain for p in points}),
        "methods": {method: _method_json(method_summary) for method, method_summary in methods.items()},
        "frontier_comparison": {
            "levels": comparison.levels,
            "values": comparison.values,
            "sentence": comparison.sentence,
            "matched_models": _matched_json(matched),
        },
        "pooled": pooled,
        "forecast": forecast,
        **extra,
    }
    summary_path.write_text(json.dumps(_json_safe(summary), indent=2) + "\n", encoding="utf-8")
    return ReportResult(
        markdown_path=markdown_path,
        html_path=html_path,
        summary_path=summary_path,
        r2={name: row["r2"] for name, row in table.items()},
        runs=stats.finished_runs,
        points=len(points),
    )


# ----------------------------------------------------------------------------------------------
# Numbers


def _summarize_method(points: list[Point]) -> MethodSummary:
    new = np.array([p.new_task for p in points])
    prior = np.array([p.prior_mean for p in points])
    kept = near_frontier(new, prior, tol=FRONTIER_TOL)
    frontier = pareto_frontier(new, prior)  # sorted by new-task performance: the last is the best
    return MethodSummary(
        runs=len({p.run for p in points}),
        points=len(points),
        near_frontier=int(kept.sum()),
        best_new_task=float(np.nanmax(new)) if np.isfinite(new).any() else math.nan,
        retention_at_best_new_task=float(prior[frontier[-1]]) if frontier.size else math.nan,
        frontier_range=((float(new[kept].min()), float(new[kept].max())) if kept.any() else (math.nan, math.nan)),
        exp_fit=fit_exponential(new[kept], prior[kept]),
    )


def _compare_frontiers(methods: dict[str, MethodSummary]) -> FrontierComparison:
    """Fitted frontier values at levels inside every method's near-frontier new-task range."""
    methods = {
        method: summary
        for method, summary in methods.items()
        if math.isfinite(summary.frontier_range[0]) and math.isfinite(summary.exp_fit.a)
    }
    if len(methods) < 2:
        only = ", ".join(methods)
        return FrontierComparison([], {}, f"Only one method ({only}); no other frontier to compare against.")
    low = max(summary.frontier_range[0] for summary in methods.values())
    high = min(summary.frontier_range[1] for summary in methods.values())
    if low > high:
        ranges = "; ".join(
            f"{method}: {summary.frontier_range[0]:.3f}-{summary.frontier_range[1]:.3f}"
            for method, summary in methods.items()
        )
        return FrontierComparison(
            [],
            {},
            "The methods' near-frontier points cover no common new-task range "
            f"({ranges}), so the frontiers cannot be compared at matched "
            "new-task performance.",
        )
    levels = [low] if low == high else [float(v) for v in np.linspace(low, high, N_COMPARISON_LEVELS)]
    values = {
        method: [float(value) for value in summary.exp_fit(np.array(levels))] for method, summary in methods.items()
    }
    means = {method: float(np.mean(vals)) for method, vals in values.items()}
    ranked = sorted(means, key=lambda method: -means[method])
    level_text = ", ".join(f"{level:.3f}" for level in levels)
    where = f"At new-task performance {level_text} (inside every method's near-frontier range)"
    if len(methods) == 2:
        upper, lower = ranked
        above = sum(hi > lo for hi, lo in zip(values[upper], values[lower]))
        sentence = (
            f"{where}, the fitted frontier of {upper} lies above that of {lower} at {above} of "
            f"{len(levels)} levels (mean prior-task performance {means[upper]:.3f} vs "
            f"{means[lower]:.3f}, gap {means[upper] - means[lower]:+.3f})."
        )
    else:
        highest = [max(values, key=lambda method: values[method][i]) for i in range(len(levels))]
        counts = ", ".join(f"{method} at {highest.count(method)}" for method in ranked if method in highest)
        order = ", ".join(f"{method} {means[method]:.3f}" for method in ranked)
        sentence = (
            f"{where}, the highest fitted frontier is {counts} of {len(levels)} levels; mean fitted "
            f"prior-task performance: {order}."
        )
    return FrontierComparison(levels, values, sentence)


def _matched_models(groups: dict[str, list[Point]], levels: list[float]) -> MatchedModels:
    """Each method's model on its own Pareto frontier (final and mid-training points) whose new-task performance is
    nearest each level (ties: the higher retention); with two methods, the difference of their retentions."""
    models: dict[str, list[Point]] = {}
    for method, group in groups.items():
        new = np.array([p.new_task for p in group])
        prior = np.array([p.prior_mean for p in group])
        frontier = [group[i] for i in pareto_frontier(new, prior)]
        if frontier and levels:
            models[method] = [min(frontier, key=lambda p: (abs(p.new_task - lv), -p.prior_mean)) for lv in levels]
    pair = tuple(models)[:2] if len(models) == 2 else None
    differences = (
        [_retention_difference(models[pair[0]][i], models[pair[1]][i]) for i in range(len(levels))] if pair else []
    )
    new_task_differences = (
        [_new_task_difference(models[pair[0]][i], models[pair[1]][i]) for i in range(len(levels))] if pair else []
    )
    return MatchedModels(list(levels) if models else [], models, pair, differences, new_task_differences)


def _new_task_difference(a: Point, b: Point) -> Interval | None:
    """a's new-task success minus b's, paired over the same episodes / examples when both kept them for the same set,
    else unpaired; None without per-example results. Its interval says whether the two models are matched at all:
    the nearest frontier model of each method may sit far from the level (a method with no model near it)."""
    if not a.new_task_examples or not b.new_task_examples:
        return None
    return _difference_of(a, b)(a.new_task_examples, b.new_task_examples)


def _difference_of(a: Point, b: Point) -> Callable[[Sequence[float], Sequence[float]], Interval]:
    """Paired over the same episodes / examples when the two kept them for the same set (robot: the same
    `episode_set`; others: document order), else unpaired."""
    paired = a.episode_set == b.episode_set or a.episode_set is None or b.episode_set is None
    return paired_difference if paired else unpaired_difference


def _not_matched(d: Interval | None) -> bool:
    """The two models' new-task success differs beyond its 95 % interval (0 outside it)."""
    return d is not None and math.isfinite(d.low) and math.isfinite(d.high) and not d.low <= 0.0 <= d.high


def _retention_interval(p: Point) -> Interval | None:
    """A model's retention (mean over probes of its scores) with the 95 % interval from its per-example results:
    each probe's Wilson interval, combined as independent, clipped to [0, 1] (where a mean of success rates lies);
    None without per-example results of every probe."""
    if not p.prior or any(not p.prior_examples.get(n) for n in p.prior):
        return None
    mean = mean_of_probes([score_interval(p.prior_examples[n]) for n in p.prior])
    return replace(mean, low=max(0.0, mean.low), high=min(1.0, mean.high))


def _retention_difference(a: Point, b: Point) -> Interval | None:
    """a's retention minus b's, over the probes both scored: paired over the same examples / episodes
    (intervals.paired_difference) when both kept them for the same set (robot: the same `episode_set`; others:
    document order), else unpaired; probes combined as independent. None without per-example results."""
    shared = [n for n in a.prior if n in b.prior]
    if not shared or any(not a.prior_examples.get(n) or not b.prior_examples.get(n) for n in shared):
        return None
    difference = _difference_of(a, b)
    parts = [difference(a.prior_examples[n], b.prior_examples[n]) for n in shared]
    methods = " / ".join(sorted({part.method for part in parts}))  # e.g. "paired Bonett-Price" for 0 / 1 episodes
    return replace(mean_of_probes(parts), method=f"{methods}, mean of probes")


def _matched_json(matched: MatchedModels) -> dict[str, Any]:
    def model(p: Point) -> dict[str, Any]:
        retention = _retention_interval(p)
        return {
            "run": p.run,
            "step": p.step,
            "new_task": p.new_task,
            "new_task_interval": score_interval(p.new_task_examples).to_json() if p.new_task_examples else None,
            "retention": p.prior_mean,
            "retention_interval": retention.to_json() if retention else None,
        }

    return {
        "levels": matched.levels,
        "models": {method: [model(p) for p in chosen] for method, chosen in matched.models.items()},
        "difference": list(matched.difference) if matched.difference else None,
        "differences": [d.to_json() if d else None for d in matched.differences],
        "new_task_differences": [d.to_json() if d else None for d in matched.new_task_differences],
        "not_matched": [_not_matched(d) for d in matched.new_task_differences],
    }


def _pooled_sentence(points: list[Point], stats: LoadStats) -> str:
    finals = sum(p.final for p in points)
    mids = len(points) - finals
    methods = ", ".join(sorted({p.method for p in points}))
    return (
        f"R^2 pools all {len(points)} points of the {stats.finished_runs} finished runs, across every "
        f"method ({methods}): {finals} final checkpoints (summary.json) plus {mids} mid-training "
        f"checkpoints (points.jsonl); each predictor's fit uses the points that report it (column n); "
        f"{stats.unfinished_runs} unfinished runs (no summary.json) were ignored."
    )


def _method_json(summary: MethodSummary) -> dict[str, Any]:
    fit = summary.exp_fit
    return {
        "runs": summary.runs,
        "points": summary.points,
        "near_frontier": summary.near_frontier,
        "best_new_task": summary.best_new_task,
        "retention_at_best_new_task": summary.retention_at_best_new_task,
        "frontier_new_task_range": list(summary.frontier_range),
        "exp_fit": {"a": fit.a, "b": fit.b, "c": fit.c},
        "exp_fit_method": fit.method,
    }


def _json_safe(value: Any) -> Any:
    """Plain JSON: NaN / inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _safe_file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# Document: a list of blocks rendered to Markdown and to HTML, so both carry the same content.
# Block kinds: ("h1", text), ("h2", text), ("p", text), ("table", headers, rows), ("img", file, alt).

Block = tuple


MAX_MODEL_ROWS = 40


def _with_interval(value: float | None, interval: Interval | None, digits: int = 3, sign: str = "") -> str:
    """ "0.512 [0.481, 0.543]": a value and its 95 % interval (n/a without per-example results)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if interval is None or not math.isfinite(interval.half_width):
        return f"{value:{sign}.{digits}f} [n/a]"
    return f"{value:{sign}.{digits}f} [{interval.low:{sign}.{digits}f}, {interval.high:{sign}.{digits}f}]"


def _unit(points: list[Point]) -> str:
    """What one per-example result is: a robot evaluation's are episodes, every other domain's examples."""
    return "episodes" if points and all(p.domain == "robot" for p in points) else "examples"


def _intervals_note(unit: str) -> str:
    singular = unit[:-1]
    return (
        f"Brackets: 95 % intervals. A score's (a probe's, or the new task's where its per-{singular} results were "
        f"kept) is Wilson's score interval over its n {unit} (normal on the per-{singular} scores where they are not "
        f"0 / 1); forgetting's (base minus model) is paired over the same {unit} (Bonett and Price's adjusted "
        f"interval for paired 0 / 1 results, which stays honest when the two models agree on every {singular}; "
        f"normal on the per-{singular} differences otherwise), the mean over probes combining the probes' standard errors as independent. n/a: the run's "
        f"files hold no per-{singular} results (made before they were kept), or too few (under 2) for a spread."
    )


def _model_blocks(points: list[Point]) -> list[Block]:
    """A table of the base and every run's final model: new task, each probe, forgetting, forward KL, with 95 %
    intervals where per-example scores were kept; forgetting per probe (paired intervals); which probes were
    scored with the chat template."""
    finals = sorted((p for p in points if p.final), key=lambda p: (p.method, -p.new_task, p.run))
    if not finals:
        return []
    probes = sorted({name for p in finals for name in p.prior})
    unit = _unit(points)
    new_task_kept = any(p.new_task_examples or p.base_new_task_examples for p in finals)

    def new_task_cell(value: float | None, examples: list[float]) -> str:
        if not new_task_kept:  # a domain that keeps none (the LLM's accuracy): the value alone, as before
            return _fmt(value)
        return _with_interval(value, score_interval(examples) if examples else None)

    rows = []
    bases = [p for p in finals if p.base_new_task is not None]
    base = next((p for p in bases if p.base_prior_examples), bases[0] if bases else None)  # one with examples
    if base is not None:
        base_intervals = probe_intervals(base.base_prior_examples)
        rows.append(
            ["base", "-", new_task_cell(base.base_new_task, base.base_new_task_examples)]
            + [_with_interval(base.base_prior.get(n), base_intervals.get(n)) for n in probes]
            + ["0", "0"]
        )
    forgetting_rows = []
    for p in finals[:MAX_MODEL_ROWS]:
        scores = probe_intervals(p.prior_examples)
        forgetting = forgetting_intervals(p.base_prior_examples, p.prior_examples)
        rows.append(
            [p.run, p.method, new_task_cell(p.new_task, p.new_task_examples)]
            + [_with_interval(p.prior.get(n), scores.get(n)) for n in probes]
            + [_with_interval(p.forgetting, forgetting.get("mean"), sign="+"), _fmt(p.predictors.get(KEY_PREDICTOR), 4)]
        )
        per_probe = {n: p.base_prior[n] - p.prior[n] for n in probes if n in p.base_prior and n in p.prior}
        forgetting_rows.append(
            [p.run, p.method]
            + [_with_interval(per_probe.get(n), forgetting.get(n), sign="+") for n in probes]
            + [_with_interval(p.forgetting, forgetting.get("mean"), sign="+")]
        )
    note = f" (first {MAX_MODEL_ROWS} of {len(finals)})" if len(finals) > MAX_MODEL_ROWS else ""
    sizes = {n: i.n for p in finals for n, i in probe_intervals(p.prior_examples).items()}
    size_text = ", ".join(f"{n} {sizes[n]}" for n in probes if n in sizes)
    templated = sorted({n for p in finals for n, used in p.chat_template.items() if used})
    plain = [n for n in probes if n not in templated]
    text = _intervals_note(unit) + (f" {unit.capitalize()} per probe: {size_text}." if size_text else "")
    new_task_sizes = sorted({len(p.new_task_examples) for p in finals if p.new_task_examples})
    if new_task_sizes:
        text += f" {unit.capitalize()} of the new task: {' / '.join(map(str, new_task_sizes))}."
    if any(p.chat_template for p in finals):
        text += (
            f" Scored with the model's chat template (as instruct models are used): {', '.join(templated) or 'none'};"
            f" on plain text: {', '.join(plain) or 'none'}."
        )
    return [
        ("h2", "Models" + note),
        ("p", text),
        ("table", ["model", "method", "new task"] + probes + ["forgetting", KEY_PREDICTOR], rows),
        ("h2", "Forgetting per probe (base minus model, paired 95 % intervals)" + note),
        ("table", ["model", "method"] + probes + ["mean"], forgetting_rows),
    ]


def _progress_blocks(in_progress: list[Point]) -> list[Block]:
    """Unfinished runs' latest mid-training evaluations, so that a report made while a sweep runs (or after a run
    was cut) shows how far each has come; none of them enters a fit, a frontier or a comparison."""
    if not in_progress:
        return []
    probes = sorted({name for p in in_progress for name in p.prior})
    rows = [
        [p.run, p.method, str(p.step), _fmt(p.new_task)]
        + [_fmt(p.prior.get(n)) for n in probes]
        + [_fmt(p.forgetting), _fmt(p.predictors.get(KEY_PREDICTOR), 4)]
        for p in in_progress
    ]
    text = (
        f"{len(in_progress)} unfinished runs (no summary.json) have mid-training evaluations; each one's latest is "
        "below. They are left out of every fit, frontier and comparison in this report until they finish."
    )
    return [
        ("h2", "Runs in progress (not in the analysis)"),
        ("p", text),
        ("table", ["run", "method", "step", "new task"] + probes + ["forgetting", KEY_PREDICTOR], rows),
    ]


def _progress_json(p: Point) -> dict[str, Any]:
    return {
        "run": p.run,
        "method": p.method,
        "step": p.step,
        "new_task": p.new_task,
        "prior": p.prior,
        "forgetting": p.forgetting,
        "predictors": p.predictors,
    }


def _matched_blocks(matched: MatchedModels, unit: str) -> list[Block]:
    """The measured models behind the fitted frontiers at the matched levels, with their 95 % intervals."""
    singular = unit[:-1]
    pair = matched.difference
    text = (
        "Measured models at the matched levels: at each level, each method's model on its own Pareto frontier "
        "(final or mid-training checkpoint) whose new-task performance is nearest the level, with 95 % intervals: "
        f"its new-task performance's Wilson interval over its {unit} (where kept), and its retention (mean over probes) "
        "combining each probe's Wilson interval as independent (clipped to [0, 1])."
    )
    if pair:
        text += (
            f" {pair[0]} minus {pair[1]}: the difference of the two models' retentions, paired over the same {unit} "
            f"(as forgetting's above, probes combined as independent) when both kept per-"
            f"{singular} results of the same {unit}, else unpaired (marked)."
        )
    text += (
        f" The intervals cover the sampling of the {unit} the chosen models were measured on, and nothing else: "
        "not the choice of the frontier model among many (which favours a lucky evaluation), not the variation "
        "between training seeds, and not the gap between a model's new-task performance and the level. n/a: no "
        f"per-{singular} results kept."
    )
    headers = ["new-task level"]
    for method in matched.models:
        headers += [f"{method} model", f"{method} new task", f"{method} retention"]
    if pair:
        headers += [f"{pair[0]} minus {pair[1]} new task", f"{pair[0]} minus {pair[1]} retention"]
    kept = any(p.new_task_examples for chosen in matched.models.values() for p in chosen)
    rows = []
    for i, level in enumerate(matched.levels):
        row = [_fmt(level)]
        for chosen in matched.models.values():
            p = chosen[i]
            new_task = score_interval(p.new_task_examples) if p.new_task_examples else None
            row += [
                f"{p.run} @ {p.step}",
                _with_interval(p.new_task, new_task) if kept else _fmt(p.new_task),  # kept by none: the value
                _with_interval(p.prior_mean, _retention_interval(p)),
            ]
        if pair:
            a, b = matched.models[pair[0]][i], matched.models[pair[1]][i]
            gap = matched.new_task_differences[i]
            cell = _with_interval(a.new_task - b.new_task, gap, sign="+")
            row.append(cell + (" (not matched)" if _not_matched(gap) else ""))
            d = matched.differences[i]
            cell = _with_interval(a.prior_mean - b.prior_mean, d, sign="+")
            row.append(cell + (" (unpaired)" if d is not None and d.method.startswith("unpaired") else ""))
        rows.append(row)
    blocks: list[Block] = [("p", text), ("table", headers, rows)]
    if pair and matched.new_task_differences:
        tested = [d for d in matched.new_task_differences if d is not None and math.isfinite(d.low)]
        apart = sum(_not_matched(d) for d in tested)
        levels = "every level" if len(tested) == len(matched.levels) else f"the {len(tested)} levels with them"
        if not tested:
            verdict = f"The chosen models kept no per-{singular} new-task results (n/a), so the match cannot be tested."
        elif apart:
            verdict = (
                f"At {apart} of {len(tested)} levels it lies beyond its 95 % interval (marked not matched): there the "
                "retention difference compares models of different new-task success, and part of it may be that "
                "difference rather than the method."
            )
        else:
            verdict = (
                f"At {levels} 0 lies inside its 95 % interval: the models are matched within the noise of their {unit}."
            )
        blocks.append(
            (
                "p",
                f"{pair[0]} minus {pair[1]} new task: the two chosen models' new-task difference (paired where they "
                f"share {unit}), the test of the match itself. {verdict}",
            )
        )
    return blocks


def _forecast(points: list[Point]) -> dict[str, Any] | None:
    """The retention forecast from forward KL and its error on held-out runs (None with fewer than 2 runs)."""
    try:
        return {**asdict(fit_forecast(points)), **holdout_error(points)}
    except ValueError:
        return None


def _forecast_blocks(forecast: dict[str, Any] | None) -> list[Block]:
    if forecast is None:
        return []
    c2, c1, c0 = forecast["coeffs"]
    return [
        ("h2", "Forecast: retention from forward KL"),
        (
            "p",
            f"retention = {c0:.4g} {c1:+.4g} KL {c2:+.4g} KL^2, fitted on every point of {forecast['runs']} runs "
            f"(R^2 {_fmt(forecast['r2'])} over {forecast['points']} points, forward KL {forecast['kl_range'][0]:.3g} to "
            f"{forecast['kl_range'][1]:.3g}). Forecasting runs it was not fitted on ({forecast['folds']} folds of "
            f"runs, each predicted by the fit on the others, at each of their points): mean absolute error "
            f"{_fmt(forecast['holdout_mae'])} ({_fmt(forecast['holdout_mae_final'])} on final models), against "
            f"{_fmt(forecast['baseline_mae'])} for predicting the mean retention. `vla-razor forecast RUNS_DIR` "
            "writes this fit as forecast.json; a run given it logs the retention it predicts from its KL.",
        ),
    ]


def _report_blocks(
    title: str,
    points: list[Point],
    stats: LoadStats,
    pooled: str,
    table: dict[str, dict],
    methods: dict[str, MethodSummary],
    comparison: FrontierComparison,
    forgetting_plots: dict[str, str],
    extra: dict,
    forecast: dict[str, Any] | None = None,
    matched: MatchedModels | None = None,
    in_progress: list[Point] | None = None,
) -> list[Block]:
    domains = ", ".join(sorted({p.domain for p in points}))
    blocks: list[Block] = [
        ("h1", title),
        (
            "p",
            f"Domain: {domains}. {stats.finished_runs} finished runs, {len(points)} points, "
            f"{stats.unfinished_runs} unfinished runs left out of the analysis.",
        ),
    ]
    blocks += _progress_blocks(in_progress or [])
    blocks += _model_blocks(points)
    blocks += [
        ("h2", "What was pooled"),
        ("p", pooled),
        ("h2", "Which variable predicts forgetting (paper's Table 1)"),
        (
            "p",
            "R^2 of a 2nd-degree polynomial fit of forgetting (mean over prior-task probes of base minus "
            "fine-tuned performance) on each variable, pooled over all methods; +- is the standard "
            "deviation of R^2 over bootstrap resamples of runs (a run's points together; resamples with too "
            "few distinct values to leave a residual are skipped and counted). Leave-one-run-out R^2 predicts "
            "each run's points from the fit on the other runs. The paper's column is ParityMNIST.",
        ),
    ]
    rows = []
    for name, row in table.items():
        paper = PAPER_TABLE1_R2.get(name)
        rows.append(
            [
                name,
                f"{_fmt(row['r2'])} +- {_fmt(row['r2_std'])}",
                _fmt(row["r2_loro"]),
                str(row["n_runs"]),
                str(row["n"]),
                f"{row['boot_used']} / {row['boot_degenerate']}",
                f"{paper:.2f}" if paper is not None else "-",
            ]
        )
    if rows:
        blocks.append(
            (
                "table",
                [
                    "predictor",
                    "R^2 +- std",
                    "leave-one-run-out R^2",
                    "runs",
                    "points",
                    "resamples used / skipped",
                    "paper R^2",
                ],
                rows,
            )
        )
    else:
        blocks.append(("p", "No point reports any predictor."))

    blocks.append(("h2", "Methods"))
    blocks.append(
        (
            "p",
            f"Near frontier: within {FRONTIER_TOL:g} (2 accuracy points) of the method's own "
            "Pareto frontier of new-task vs prior-task performance (Appendix B.1). Retention: "
            "prior-task performance (mean over probes) of the frontier model with the best "
            "new-task performance. Frontier fit: prior = a - b exp(c new) on the near-frontier "
            "points, or a straight line where they are under 3 or a line fits them as well.",
        )
    )
    method_rows = []
    for method, summary in methods.items():
        method_rows.append(
            [
                method,
                str(summary.runs),
                str(summary.points),
                str(summary.near_frontier),
                _fmt(summary.best_new_task),
                _fmt(summary.retention_at_best_new_task),
                summary.exp_fit.describe(),
            ]
        )
    blocks.append(
        (
            "table",
            [
                "method",
                "runs",
                "points",
                "near frontier",
                "best new-task",
                "retention at best new-task",
                "frontier fit",
            ],
            method_rows,
        )
    )

    blocks.append(("h2", "Frontiers at matched new-task performance"))
    blocks.append(("p", comparison.sentence))
    if comparison.levels:
        level_rows = [
            [_fmt(level)] + [_fmt(comparison.values[method][i]) for method in comparison.values]
            for i, level in enumerate(comparison.levels)
        ]
        blocks.append(
            ("table", ["new-task performance"] + [f"{m} fitted prior" for m in comparison.values], level_rows)
        )
    if matched is not None and matched.models:
        blocks += _matched_blocks(matched, _unit(points))

    blocks += _forecast_blocks(forecast)

    if extra:
        blocks.append(("h2", "Run facts"))
        fact_rows = [
            [str(key), value if isinstance(value, str) else json.dumps(_json_safe(value))]
            for key, value in extra.items()
        ]
        blocks.append(("table", ["fact", "value"], fact_rows))

    blocks.append(("h2", "Plots"))
    blocks.append(("img", "tradeoff.png", "new-task vs prior-task performance, frontier fits per method"))
    blocks.append(("img", forgetting_plots[KEY_PREDICTOR], f"forgetting vs {KEY_PREDICTOR}, pooled quadratic fit"))
    blocks.append(("img", f"new_task_vs_{KEY_PREDICTOR}.png", f"new-task performance vs {KEY_PREDICTOR}"))
    for name, file_name in forgetting_plots.items():
        if name != KEY_PREDICTOR:
            blocks.append(("img", file_name, f"forgetting vs {name}, pooled quadratic fit"))
    return blocks


def _render_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
""".strip()


def _render_html(title: str, blocks: list[Block]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{esc(block[1])}</p>")
        elif kind == "table":
            headers, rows = block[1], block[2]
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in headers) + "</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{esc(str(cell))}</td>" for cell in row) + "</tr>")
            parts.append("</table>")
        elif kind == "img":
            parts.append(
                f'<figure><img src="{esc(block[1])}" alt="{esc(block[2])}">'
                f"<figcaption>{esc(block[2])}</figcaption></figure>"
            )
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
