"""The LLM experiment end to end: the base's results, each method's run, the summary and the report.

    vla-razor llm pipeline --config configs/llm_quick.yaml

`<experiment>/summary.json` lists every finished run (new-task accuracy, each probe, forward KL; 95 % intervals of
each probe score and paired ones of forgetting, where the runs kept per-example scores), and
`<experiment>/report/` is the report of #7 over the same run folders. Finished runs are not redone, so
running again with other settings adds runs to the comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_razor.analysis.intervals import interval_summary
from vla_razor.analysis.runs import experiment_table
from vla_razor.config import ConfigError, load_config, to_dict
from vla_razor.llm.config import LLMConfig
from vla_razor.llm.evaluate import LLMEvaluator
from vla_razor.llm.train import METHODS, load_experiment, train_method


@dataclass
class PipelineResult:
    rows: list[dict[str, Any]]
    report_dir: Path
    summary_path: Path
    seconds: float


def load_llm_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> LLMConfig:
    cfg = load_config(LLMConfig, path, overrides)
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"methods: unknown {unknown}; valid: {', '.join(METHODS)}")
    return cfg


def experiment_rows(experiment_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every finished LLM run of the experiment as a row, and the base results they were measured against."""

    def columns(s: dict[str, Any]) -> dict[str, Any]:
        intervals = interval_summary(
            s["base"].get("prior_examples", {}), s.get("prior_examples", {}), (), s.get("new_task_examples", [])
        )
        return {
            "new_task": s["new_task"],
            "new_task_interval": intervals.get("new_task"),  # None for runs made before per-example rewards were kept
            "probes": s["prior"],
            "forgetting": s["forgetting"],
            **s["predictors"],
            "seconds": s.get("seconds"),
            "probe_intervals": intervals["prior"],  # {} for runs made before per-example scores were kept
            "forgetting_intervals": intervals["forgetting"],
            "chat_template": s.get("chat_template", {}),
        }

    return experiment_table(Path(experiment_dir), "llm", METHODS, columns)


def summarize_experiment(cfg: LLMConfig, extra: dict[str, str] | None = None) -> PipelineResult:
    from vla_razor.analysis.report import write_experiment_summary  # matplotlib: only when a report is written

    started = time.perf_counter()
    rows, base = experiment_rows(cfg.experiment_dir)
    summary_path, report = write_experiment_summary(
        cfg.experiment_dir,
        {
            "task": cfg.task.name,
            "model": cfg.model,
            "runs": rows,
            "base": {
                "new_task": base["new_task"],
                "probes": base["prior"],
                "probe_intervals": interval_summary(base.get("prior_examples", {}), {})["base_prior"],
                "new_task_interval": interval_summary({}, {}, base.get("new_task_examples", [])).get("base_new_task"),
            },
            "config": to_dict(cfg),
        },
        title=f"RL's Razor, LLM ({cfg.task.name}, {cfg.model}): {cfg.experiment}",
        extra=extra or {},
    )
    return PipelineResult(rows, report.html_path.parent, summary_path, time.perf_counter() - started)


def run_pipeline(cfg: LLMConfig) -> PipelineResult:
    started = time.perf_counter()
    shared = load_experiment(cfg)
    tokenizer, base, task, _device, _path = shared
    LLMEvaluator(cfg, base, tokenizer, task, str(cfg.model)).base_results()
    for method in cfg.methods:
        train_method(cfg, method, shared)
    result = summarize_experiment(cfg, {"pipeline seconds": f"{time.perf_counter() - started:.0f}"})
    result.seconds = time.perf_counter() - started
    return result
