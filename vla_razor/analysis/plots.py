"""The paper's Figure 2 / Figure 3 panels, drawn from run-folder points (PNG, matplotlib Agg).

Every plot colours a method the same way (``method_color``), so a reader can match SFT and RL across
the trade-off, forgetting-vs-KL and new-task-vs-KL panels.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from vla_razor.analysis.fits import leave_one_run_out_r2, poly_fit  # noqa: E402
from vla_razor.analysis.pareto import fit_exponential, near_frontier  # noqa: E402
from vla_razor.analysis.runs import Point, by_method  # noqa: E402

# Fixed colours for the methods the project trains; RL-like methods in blues/greens, SFT-like in warm
# colours, as in the paper's figures.
METHOD_COLORS: dict[str, str] = {
    "rl": "#1f77b4",
    "grpo": "#17becf",
    "dr_grpo": "#aec7e8",
    "reinforce": "#2ca02c",
    "reinforce_10": "#98df8a",
    "sft": "#ff7f0e",
    "sft_oracle": "#9467bd",
    "oracle_sft": "#9467bd",
    "sft_distill": "#8c564b",
    "distill_sft": "#8c564b",
    "simpo": "#d62728",
}
# Other methods get one of these, chosen by a hash of the name so it never changes between plots.
FALLBACK_COLORS: tuple[str, ...] = (
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#ffbb78",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)
DPI = 110
FIGSIZE = (5.6, 4.2)


def method_color(method: str) -> str:
    """The colour every plot uses for ``method``."""
    key = method.lower()
    if key in METHOD_COLORS:
        return METHOD_COLORS[key]
    return FALLBACK_COLORS[zlib.crc32(key.encode("utf-8")) % len(FALLBACK_COLORS)]


def plot_tradeoff(points: list[Point], path: Path, tol: float = 0.02) -> Path:
    """Figure 2 / Figure 3-left: new-task (x) vs prior-task performance (y, mean over probes).

    All points are drawn faint; each method's points within ``tol`` of its own Pareto frontier are
    drawn bold, with the exponential fit to them (Appendix B.1) over their new-task range. The base
    model is a black star; the final models of runs trained to a KL budget (hparams ``kl_budget``) are ringed.
    """
    figure, axes = plt.subplots(figsize=FIGSIZE)
    budgeted = [p for p in points if p.final and p.hparams.get("kl_budget") is not None]
    if budgeted:
        axes.scatter(
            [p.new_task for p in budgeted],
            [p.prior_mean for p in budgeted],
            s=90,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            label=f"stopped at a KL budget ({len(budgeted)} runs)",
            zorder=3,
        )
    for method, method_points in by_method(points).items():
        color = method_color(method)
        new = np.array([p.new_task for p in method_points])
        prior = np.array([p.prior_mean for p in method_points])
        kept = near_frontier(new, prior, tol=tol)
        axes.scatter(new, prior, s=14, color=color, alpha=0.25, linewidths=0)
        axes.scatter(
            new[kept],
            prior[kept],
            s=30,
            color=color,
            edgecolors="black",
            linewidths=0.6,
            label=f"{method} ({int(kept.sum())} near frontier)",
        )
        if kept.any():
            fit = fit_exponential(new[kept], prior[kept])
            grid = np.linspace(new[kept].min(), new[kept].max(), 200)
            if grid[0] < grid[-1]:
                axes.plot(grid, fit(grid), color=color, linewidth=2)
    _draw_base(axes, points)
    axes.set_xlabel("new-task performance")
    axes.set_ylabel("prior-task performance (mean over probes)")
    axes.set_title(f"Learning-forgetting trade-off (bold: within {tol:g} of frontier)", fontsize=10)
    _finish(figure, axes, path, empty=not points)
    return Path(path)


def fit_label(x: np.ndarray, y: np.ndarray, runs: list[str], degree: int = 2) -> str:
    """In-sample and leave-one-run-out R^2 of the pooled fit with the runs and points they rest on (an R^2 over a
    handful of runs says little, so it is never shown without them)."""

    def fmt(value: float) -> str:
        return f"{value:.3f}" if math.isfinite(value) else "n/a"

    fit = poly_fit(x, y, degree)
    loro = leave_one_run_out_r2(x, y, runs, degree)
    return f"R$^2$ = {fmt(fit.r2)}, leave-one-run-out {fmt(loro)}; {len(set(runs))} runs, {fit.n} points"


def plot_forgetting_vs(points: list[Point], predictor: str, path: Path) -> Path:
    """Figure 3-middle: forgetting (y) vs ``predictor`` (x), one 2nd-degree fit pooled over methods.

    Uses every point that reports the predictor; the fitted curve and its R^2 are over all of them.
    """
    figure, axes = plt.subplots(figsize=FIGSIZE)
    usable = [p for p in points if predictor in p.predictors and math.isfinite(p.forgetting)]
    for method, method_points in by_method(usable).items():
        axes.scatter(
            [p.predictors[predictor] for p in method_points],
            [p.forgetting for p in method_points],
            s=18,
            color=method_color(method),
            alpha=0.8,
            linewidths=0,
            label=method,
        )
    title = f"Forgetting vs {predictor}"
    if usable:
        x = np.array([p.predictors[predictor] for p in usable])
        y = np.array([p.forgetting for p in usable])
        fit = poly_fit(x, y, degree=2)
        grid = np.linspace(x.min(), x.max(), 200)
        label = fit_label(x, y, [p.run for p in usable])
        axes.plot(grid, fit(grid), color="black", linewidth=1.8, label=f"quadratic fit, all methods ({label})")
        r2_text = f"{fit.r2:.3f}" if math.isfinite(fit.r2) else "n/a"
        title += f" (pooled R$^2$ = {r2_text}, {len(set(p.run for p in usable))} runs)"
    axes.set_xlabel(predictor)
    axes.set_ylabel("forgetting (base prior - prior, mean over probes)")
    axes.set_title(title, fontsize=10)
    _finish(figure, axes, path, empty=not usable, empty_text=f"no points report {predictor!r}")
    return Path(path)


def plot_new_task_vs(points: list[Point], predictor: str, path: Path) -> Path:
    """Figure 3-right: new-task performance (y) vs ``predictor`` (x, forward KL in the paper).

    Points are coloured by method; each run's checkpoints are joined in step order, so the plot shows
    how much divergence a method spends to reach a given new-task performance.
    """
    figure, axes = plt.subplots(figsize=FIGSIZE)
    usable = [p for p in points if predictor in p.predictors]
    for method, method_points in by_method(usable).items():
        color = method_color(method)
        runs: dict[str, list[Point]] = {}
        for p in method_points:
            runs.setdefault(p.run, []).append(p)
        for run_points in runs.values():
            if len(run_points) > 1:
                run_points = sorted(run_points, key=lambda p: p.step)
                axes.plot(
                    [p.predictors[predictor] for p in run_points],
                    [p.new_task for p in run_points],
                    color=color,
                    alpha=0.3,
                    linewidth=0.8,
                )
        axes.scatter(
            [p.predictors[predictor] for p in method_points],
            [p.new_task for p in method_points],
            s=18,
            color=color,
            alpha=0.85,
            linewidths=0,
            label=method,
        )
    base_new = sorted({p.base_new_task for p in points if p.base_new_task is not None})
    for value in base_new:
        axes.axhline(value, color="black", linestyle=":", linewidth=1)
    if base_new:
        axes.plot([], [], color="black", linestyle=":", linewidth=1, label="base model")
    axes.set_xlabel(predictor)
    axes.set_ylabel("new-task performance")
    axes.set_title(f"New-task performance vs {predictor}", fontsize=10)
    _finish(figure, axes, path, empty=not usable, empty_text=f"no points report {predictor!r}")
    return Path(path)


def _draw_base(axes: Axes, points: list[Point]) -> None:
    """Mark each distinct base model (usually one) with a black star."""
    bases = sorted(
        {
            (p.base_new_task, p.base_prior_mean)
            for p in points
            if p.base_new_task is not None and p.base_prior_mean is not None
        }
    )
    for index, (new, prior) in enumerate(bases):
        axes.scatter(
            [new], [prior], marker="*", s=220, color="black", zorder=5, label="base model" if index == 0 else None
        )


def _finish(figure: plt.Figure, axes: Axes, path: Path, empty: bool, empty_text: str = "no points") -> None:
    if empty:
        axes.text(0.5, 0.5, empty_text, ha="center", va="center", transform=axes.transAxes)
    elif axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
