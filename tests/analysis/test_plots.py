from __future__ import annotations

from pathlib import Path

from vla_razor.analysis.plots import (METHOD_COLORS, method_color, plot_forgetting_vs, plot_new_task_vs,
                                     plot_tradeoff)
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
