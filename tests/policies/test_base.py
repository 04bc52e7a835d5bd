"""The policy interface: OpenVLA is a token policy; a continuous-action policy is a Policy but not a TokenPolicy, and
the KL's check refuses it saying what it would need."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from vla_razor.config import ConfigError
from vla_razor.policies.base import ActionSample, Policy, TokenPolicy, require_token_policy
from vla_razor.policies.openvla import ActionStats
from vla_razor.policies.openvla.policy import OpenVLAPolicy


class GaussianActionPolicy:
    """A minimal continuous-action policy: a Gaussian over raw actions whose mean is linear in the image's mean
    colour (no tokens, no logits over a finite action vocabulary)."""

    def __init__(self, action_dim: int = 7) -> None:
        self.model = nn.Linear(3, action_dim)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.action_dim = action_dim
        self.stats = ActionStats(-np.ones(action_dim), np.ones(action_dim), np.ones(action_dim, bool))

    @classmethod
    def from_pretrained(
        cls, directory: Path | str, device: str = "cpu", dataset: str | None = None, dtype: str | None = None
    ) -> Any:
        policy = cls()
        policy.model.load_state_dict(torch.load(Path(directory) / "model.pt"))
        return policy

    @classmethod
    def from_config_file(cls, path: Path | str, device: str = "cpu", seed: int | None = 0) -> Any:
        torch.manual_seed(seed or 0)
        return cls()

    def save_pretrained(self, directory: Path | str) -> None:
        torch.save(self.model.state_dict(), Path(directory) / "model.pt")

    @property
    def device(self) -> torch.device:
        return self.model.weight.device

    @property
    def gripper(self) -> str:
        return "absolute"

    def set_action_statistics(self, norm_stats: dict[str, Any], dataset: str) -> None:
        self.stats = ActionStats.from_dict(norm_stats[dataset]["action"], dataset)

    def encode(self, images: list[Any], instructions: list[str]) -> dict[str, Tensor]:
        return {"colour": torch.tensor(np.stack([np.asarray(i, np.float32).mean((0, 1)) / 255 for i in images]))}

    def sample(self, batch, temperature=1.0, generator=None, uniform_noise=None) -> ActionSample:
        mean = self.model(batch["colour"])
        noise = torch.randn(mean.shape, generator=generator) if temperature > 0 else torch.zeros_like(mean)
        normalized = (mean + temperature * self.log_std.exp() * noise).clamp(-1, 1).detach().numpy()
        return ActionSample(self.stats.unnormalize(normalized), normalized, None, None, None)

    def add_adapters(self, options: Any) -> None:
        raise NotImplementedError("no LoRA for a linear head")

    def merge_adapters(self) -> None:
        pass

    def with_weights(self, state: dict[str, Tensor]) -> Any:
        other = copy.deepcopy(self)
        other.model.load_state_dict(state)
        return other


def test_openvla_is_a_token_policy(policy) -> None:
    assert isinstance(policy, Policy) and isinstance(policy, TokenPolicy)
    require_token_policy(policy, "the KL")


def test_a_continuous_action_policy_is_a_policy_and_is_refused_by_the_kl_check(contexts) -> None:
    continuous = GaussianActionPolicy()
    images, instructions = contexts
    sample = continuous.sample(continuous.encode(images, instructions), generator=torch.Generator().manual_seed(0))
    assert sample.actions.shape == (3, 7) and sample.tokens is None
    assert isinstance(continuous, Policy) and not isinstance(continuous, TokenPolicy)
    with pytest.raises(ConfigError, match="the KL to the base: the policy GaussianActionPolicy has continuous actions"):
        require_token_policy(continuous, "the KL to the base")


def test_with_weights_saves_the_state_it_carries(policy, contexts, tmp_path) -> None:
    """What distributed.save_sharded_policy saves: the gathered state (float32 master weights) on a fresh model in
    the config's dtype; the saved folder loads as the policy whose weights those are."""
    images, instructions = contexts
    state = {k: v.float() * 1.5 if v.is_floating_point() else v for k, v in policy.model.state_dict().items()}
    copy_ = policy.with_weights(state)
    assert copy_.model is not policy.model and copy_.dataset == policy.dataset
    for name, value in copy_.model.state_dict().items():
        assert value.dtype == policy.model.state_dict()[name].dtype
        torch.testing.assert_close(value, state[name].to(value.dtype))
    policy.with_weights(dict(policy.model.state_dict())).save_pretrained(tmp_path / "saved")
    loaded = OpenVLAPolicy.from_pretrained(tmp_path / "saved", dataset=policy.dataset)
    with torch.no_grad():
        batch = policy.encode(images, instructions)
        tokens = policy.sample(batch, temperature=0.0).tokens
        torch.testing.assert_close(loaded.action_logits(batch, tokens), policy.action_logits(batch, tokens))
