"""The KL to the base on an experiment's fixed frames, by the chain rule over actions sampled from the base (whose
logits are computed once and stored)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.kl import chain_rule_kl_terms
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.robot.evaluate import KLObservations, _sample_prefixes, kl_to_base


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


def _observations(base, n: int = 5, samples: int = 3) -> KLObservations:
    rng = np.random.default_rng(0)
    size = base.config.image_sizes[0]
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    instructions = ["pick coke can"] * n
    tokens = _sample_prefixes(base, list(images), instructions, samples, seed=0)
    return KLObservations(images, instructions, tokens.numpy(), {"seed": 0})


def test_kl_is_the_chain_rule_over_actions_sampled_from_the_base(policies, tmp_path):
    """forward KL = mean over the base's sampled actions of the per-dimension KLs summed along each; the stored
    base logits give what recomputing them gives; reverse KL samples the evaluated policy; a policy is 0 from
    itself."""
    base, other = policies
    obs = _observations(base)
    assert obs.tokens.shape == (5, 3, 7) and len({tuple(t) for t in obs.tokens.reshape(-1, 7)}) > 5
    with torch.no_grad():
        batch = base.encode([im for im in obs.images for _ in range(3)], obs.instructions * 3)
        tokens = torch.as_tensor(obs.tokens).reshape(15, 7)
        terms = chain_rule_kl_terms(base.action_logits(batch, tokens), other.action_logits(batch, tokens))
    got = kl_to_base(base, other, obs, batch_size=4)
    assert obs.base_logits is not None and obs.base_logits.shape == (5, 3, 7, base.config.n_action_bins)
    per_frame = terms.view(5, 3).double().mean(1)
    assert got["forward_kl"] == pytest.approx(float(per_frame.mean()), rel=1e-4)
    assert got["forward_kl_se"] == pytest.approx(float(per_frame.std()) / 5 ** 0.5, rel=1e-3)
    assert got["forward_kl"] > 0 and got["reverse_kl"] > 0 and 0 < got["tv"] <= 1
    obs.save(tmp_path / "obs.npz")
    again = kl_to_base(None, other, KLObservations.load(tmp_path / "obs.npz"))  # the base is needed for reverse only
    assert again["forward_kl"] == pytest.approx(got["forward_kl"]) and "reverse_kl" not in again
    itself = kl_to_base(base, base, obs)
    for name in ("forward_kl", "reverse_kl", "tv"):
        assert itself[name] == pytest.approx(0.0, abs=1e-5)


def test_kl_frames_of_an_older_format_are_refused(tmp_path):
    path = tmp_path / "kl_observations.npz"
    np.savez(path, images=np.zeros((2, 8, 8, 3), np.uint8), instructions=np.asarray(["a", "b"]),
             tokens=np.zeros((2, 7), np.int64))
    with pytest.raises(ValueError, match="older version.*delete it"):
        KLObservations.load(path)


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
