"""The LLM config's probe fields: sizes per probe and chat-template probes are checked, and an error names the field."""

from __future__ import annotations

import pytest

from vla_razor.config import ConfigError, load_config
from vla_razor.llm.config import LLMConfig


def test_probe_size_defaults_and_overrides():
    cfg = load_config(LLMConfig)
    assert cfg.eval.probe_limit is None and cfg.eval.probe_sizes == {}, "full offline size by default"
    assert cfg.eval.chat_template_probes == ["ifeval"]
    cfg = load_config(LLMConfig, None, {"eval.probe_sizes": {"hellaswag": 2000}, "eval.probe_limit": 300})
    assert cfg.eval.probe_sizes == {"hellaswag": 2000} and cfg.eval.probe_limit == 300


@pytest.mark.parametrize(
    "override, field",
    [
        ({"eval.probe_sizes": {"hellaswag": 0}}, r"eval\.probe_sizes\.hellaswag: expected an integer >= 1"),
        ({"eval.probe_sizes": {"gsm9k": 100}}, r"eval\.probe_sizes\.gsm9k: unknown probe"),
        ({"eval.probe_sizes": {"mmlu": "all"}}, r"eval\.probe_sizes\.mmlu: expected an integer"),
        ({"eval.chat_template_probes": ["ifevel"]}, r"eval\.chat_template_probes: unknown probe 'ifevel'"),
        ({"eval.probe_limit": 0}, r"eval\.probe_limit"),
    ],
)
def test_bad_probe_settings_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_config(LLMConfig, None, override)
