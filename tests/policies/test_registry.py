"""policy.type -> the policy's class: OpenVLA by default, unknown names refused naming the field, the value and the
known types; loading and building go through the class."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vla_razor.config import ConfigError, load_config
from vla_razor.policies import registry
from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.policies.registry import POLICY_TYPES, PolicyConfig, load_policy, new_policy, policy_class

REPO = Path(__file__).resolve().parents[2]


def test_openvla_is_the_default_type() -> None:
    assert PolicyConfig().type == "openvla" == registry.DEFAULT_POLICY
    assert policy_class("openvla") is OpenVLAPolicy


def test_an_unknown_type_is_refused_naming_the_field_the_value_and_the_known_types() -> None:
    with pytest.raises(ConfigError, match=r"policy\.type: unknown policy type 'octo'; known types: openvla"):
        policy_class("octo")
    cfg = load_config(PolicyConfig, None, {"type": "octo"})  # the config holds any name; the lookup refuses it
    with pytest.raises(ConfigError, match=r"policy\.type: unknown policy type 'octo'"):
        policy_class(cfg.type)


def test_a_registered_type_is_found_and_a_name_is_registered_once() -> None:
    class Renamed(OpenVLAPolicy):
        pass

    registry.register_policy("renamed_openvla", lambda: Renamed)
    try:
        assert policy_class("renamed_openvla") is Renamed
        with pytest.raises(ValueError, match="registered already"):
            registry.register_policy("renamed_openvla", lambda: Renamed)
        with pytest.raises(ConfigError, match="known types: openvla, renamed_openvla"):
            policy_class("nope")
    finally:
        del POLICY_TYPES["renamed_openvla"]


def test_load_and_new_go_through_the_type(policy, contexts, tmp_path) -> None:
    """load_policy is the class's from_pretrained (same logits as the saved policy); new_policy its fresh model from
    a config file (the weights from_config makes with the seed)."""
    policy.save_pretrained(tmp_path / "saved")
    loaded = load_policy("openvla", tmp_path / "saved", dataset=policy.dataset)
    assert type(loaded) is OpenVLAPolicy
    images, instructions = contexts
    with torch.no_grad():
        batch = policy.encode(images, instructions)
        tokens = policy.sample(batch, temperature=0.0).tokens
        torch.testing.assert_close(loaded.action_logits(batch, tokens), policy.action_logits(batch, tokens))
    path = REPO / "configs" / "policy_tiny.yaml"
    fresh = new_policy("openvla", path, seed=3)
    expected = OpenVLAPolicy.from_config(load_config(OpenVLAConfig, path), seed=3)
    for name, value in fresh.model.state_dict().items():
        torch.testing.assert_close(value, expected.model.state_dict()[name])
