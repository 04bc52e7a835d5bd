"""The evaluator's cached base measurements (vla_razor/llm/evaluate.py): what makes them the same base."""

from __future__ import annotations

from vla_razor.llm.evaluate import LLMEvaluator
from vla_razor.llm.pipeline import load_llm_config
from vla_razor.llm.tasks import make_task


def test_base_settings_leave_out_when_runs_are_evaluated(tmp_path):
    # a sweep evaluates SFT runs every 158 updates and GRPO runs every 75: one base_eval.json serves both
    settings = []
    for every in (0, 75, 158):
        cfg = load_llm_config(None, {"runs_dir": str(tmp_path), "eval.every": every})
        settings.append(LLMEvaluator(cfg, None, None, make_task(cfg.task), "base").settings)
    assert settings[0] == settings[1] == settings[2]
    assert "every" not in settings[0]["eval"] and "probes" in settings[0]["eval"]
    other = load_llm_config(None, {"runs_dir": str(tmp_path), "eval.probe_limit": 7})  # what it measures still counts
    assert LLMEvaluator(other, None, None, make_task(other.task), "base").settings != settings[0]
