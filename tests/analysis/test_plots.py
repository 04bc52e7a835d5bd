from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_razor.analysis.plots import (
    METHOD_COLORS,
    fit_label,
    method_color,
    plot_forgetting_vs,
    plot_new_task_vs,
    plot_tradeoff,
)
from vla_razor.analysis.runs import load_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_plots_write_pngs(planted_runs: Path, tmp_path: Path) -> None:
    points, _ = load_points(planted_runs)
    out = tmp_path / "plots"
    assert _is_png(plot_tradeoff(points, out / "tradeoff.png"))
    assert _is_png(plot_forgetting_vs(points, "forward_kl", out / "forgetting.png"))
    assert _is_png(plot_new_task_vs(points, "forward_kl", out / "new_task.png"))
    # A predictor nobody reports still gives a (labelled, empty) figure rather than an error.
    assert _is_png(plot_forgetting_vs(points, "spectral", out / "none.png"))


def test_method_colors_are_fixed() -> None:
    assert method_color("sft") == METHOD_COLORS["sft"] != method_color("rl")
    assert method_color("my_new_method") == method_color("my_new_method")


def test_runs_stopped_at_a_kl_budget_are_marked_on_the_tradeoff(planted_runs: Path, tmp_path: Path) -> None:
    points, _ = load_points(planted_runs)
    plain = plot_tradeoff(points, tmp_path / "plain.png").read_bytes()
    final = next(p for p in points if p.final)
    final.hparams = {**final.hparams, "kl_budget": 0.1}
    marked = plot_tradeoff(points, tmp_path / "marked.png").read_bytes()
    assert plain != marked, "the budgeted run's ring (and its legend entry) changes the figure"


def test_the_fit_label_gives_runs_points_and_the_leave_one_run_out_r2() -> None:
    """The forgetting plot's R^2 never stands alone: in-sample and held-out runs' R^2, with runs and points."""
    x = np.linspace(0.0, 2.0, 12)
    y = 0.3 * x**2 + np.random.default_rng(1).normal(0, 0.3, x.size)
    runs = list(np.repeat(["a", "b", "c", "d"], 3))
    from vla_razor.analysis.fits import leave_one_run_out_r2, poly_fit

    label = fit_label(x, y, runs)
    assert f"R$^2$ = {poly_fit(x, y).r2:.3f}" in label and "4 runs, 12 points" in label
    assert f"leave-one-run-out {leave_one_run_out_r2(x, y, runs):.3f}" in label
    assert "leave-one-run-out n/a; 1 runs, 12 points" in fit_label(x, y, ["one"] * 12)
