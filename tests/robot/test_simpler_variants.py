"""Choosing SimplerEnv variants to run (vla_razor/robot/simpler_variants.py); the runs themselves need SimplerEnv
(docs/results/simpler/README.md records them)."""

from __future__ import annotations

import pytest

from vla_razor.config import ConfigError
from vla_razor.robot.simpler_variants import failure_reason, run_variants, selected_variants
from vla_razor.robot.stages import load_robot_config


def test_only_selects_by_name_parts():
    assert len(selected_variants("open_drawer", "variant_aggregation", [])) == 21
    top = selected_variants("open_drawer", "variant_aggregation", ["open/top/"])
    assert [v.name.split("/")[-1] for v in top] == [
        "base",
        "background_bedroom",
        "background_office",
        "lighting_brighter",
        "lighting_darker",
        "cabinet_station2",
        "cabinet_station3",
    ]
    lit = selected_variants("pick_can", "variant_aggregation", ["lighting", "/base"])
    assert len(lit) == 3 * 3


def test_protocols_need_the_simpler_backend():
    cfg = load_robot_config(None, {"backend": "embedded", "simpler_variants": {"protocol": "visual_matching"}})
    assert cfg.simpler_variants.episodes_per_variant == 0
    with pytest.raises(ConfigError, match="backend: simpler"):
        run_variants(cfg)


def test_failure_reason_is_the_innermost_error_line():
    err = RuntimeError(
        'worker 0 failed during reset: Traceback (most recent call last):\n  File "x.py", line 3, in f\n'
        "    raise ValueError('outer')\nValueError: outer\n\nDuring handling...\nAssertionError: Image overlay "
        "requires segment info in the observation!\n All simulator workers were stopped; the next run starts new ones."
    )
    assert failure_reason(err) == "AssertionError: Image overlay requires segment info in the observation!"
    assert failure_reason(RuntimeError("plain")) == "plain"
