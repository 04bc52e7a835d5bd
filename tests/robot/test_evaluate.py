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


def test_evaluation_samples_reproducibly_at_a_temperature(policies):
    """eval.temperature > 0: each row's action is drawn from its own (seed, episode, step) noise, so an evaluation
    is repeatable and a row's action does not depend on its batch; temperature 0 is the greedy action."""
    from envs.rollout import ObsBatch
    from vla_razor.robot.evaluate import EvalSpec, evaluation_actor

    base, _ = policies
    size = base.config.image_sizes[0]
    images = np.random.default_rng(1).integers(0, 256, (4, size, size, 3), dtype=np.uint8)

    def batch(rows: list[int]) -> ObsBatch:
        return ObsBatch(images=images[rows], proprio=np.zeros((len(rows), 16), np.float32),
                        instructions=["pick coke can"] * len(rows), steps=np.array(rows) % 2,
                        episodes=np.array(rows), specs=[None] * len(rows))

    sampled = evaluation_actor(base, EvalSpec(temperature=1.0))(batch([0, 1, 2, 3]))
    np.testing.assert_array_equal(sampled, evaluation_actor(base, EvalSpec(temperature=1.0))(batch([0, 1, 2, 3])))
    np.testing.assert_array_equal(sampled[2:], evaluation_actor(base, EvalSpec(temperature=1.0))(batch([2, 3])))
    greedy = evaluation_actor(base, EvalSpec())(batch([0, 1, 2, 3]))
    with torch.no_grad():
        expected = base.sample(base.encode(list(images), ["pick coke can"] * 4), temperature=0.0).actions
    np.testing.assert_allclose(greedy, expected, rtol=1e-6)
    assert not np.allclose(sampled, greedy)  # a random tiny model's bins are far from one-hot
    other_seed = evaluation_actor(base, EvalSpec(temperature=1.0, seed=7))(batch([0, 1, 2, 3]))
    assert not np.allclose(sampled, other_seed)
