"""The KL to the base on an experiment's fixed frames: the base's logits are computed once and stored."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.kl import action_token_kl
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.robot.evaluate import KLObservations, kl_to_base


@pytest.fixture(scope="module")
def policies():
    torch.manual_seed(0)
    cfg = OpenVLAConfig.tiny()
    cfg.image_sizes = [32, 32] if len(cfg.image_sizes) == 2 else [32]
    base = OpenVLAPolicy.from_config(cfg, seed=0)
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return base, other


def _observations(base, n: int = 5) -> KLObservations:
    rng = np.random.default_rng(0)
    size = base.config.image_sizes[0]
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    instructions = ["pick coke can"] * n
    with torch.no_grad():
        tokens = base.sample(base.encode(list(images), instructions), temperature=0.0).tokens.cpu().numpy()
    return KLObservations(images, instructions, tokens)


def test_kl_with_stored_base_logits_equals_recomputing_them(policies, tmp_path):
    base, other = policies
    obs = _observations(base)
    with torch.no_grad():
        batch = base.encode(list(obs.images), obs.instructions)
        tokens = torch.as_tensor(obs.tokens)
        expected = action_token_kl(base.action_logits(batch, tokens), other.action_logits(batch, tokens))
    got = kl_to_base(base, other, obs, batch_size=2)
    assert obs.base_logits is not None and obs.base_logits.shape == (5, 7, base.config.n_action_bins)
    for name in ("forward_kl", "reverse_kl", "tv"):
        assert got[name] == pytest.approx(float(expected[name]), rel=1e-5)
    assert got["forward_kl"] > 0
    obs.save(tmp_path / "obs.npz")
    again = kl_to_base(None, other, KLObservations.load(tmp_path / "obs.npz"))  # the base is no longer needed
    assert again == pytest.approx(got)
    assert kl_to_base(base, base, obs)["forward_kl"] == pytest.approx(0.0, abs=1e-6)
