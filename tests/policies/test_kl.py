import math

import torch

from vla_razor.policies.openvla import action_token_kl, policy_action_kl


def test_kl_of_a_policy_with_itself_is_zero(policy, contexts):
    batch = policy.encode(*contexts)
    tokens = policy.sample(batch, temperature=0).tokens
    values = policy_action_kl(policy, policy, batch, tokens)
    for name, value in values.items():
        assert abs(value.item()) < 1e-6, name


def test_hand_computed_two_policies():
    # 2 bins; dimension 0: p0 = (1/4, 3/4), p = (1/2, 1/2); dimension 1: identical distributions
    base = torch.tensor([[[0.0, math.log(3.0)], [1.0, 2.0]]])
    tuned = torch.tensor([[[5.0, 5.0], [1.0, 2.0]]])
    values = action_token_kl(base, tuned)
    forward = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert values["forward_kl"].item() == torch.tensor(forward).item() or abs(values["forward_kl"].item() - forward) < 1e-6
    assert abs(values["reverse_kl"].item() - reverse) < 1e-6
    assert abs(values["tv"].item() - 0.25) < 1e-6
    # summed over dimensions, averaged over the batch: a second identical row changes nothing
    doubled = action_token_kl(base.repeat(2, 1, 1), tuned.repeat(2, 1, 1))
    assert abs(doubled["forward_kl"].item() - forward) < 1e-6
    # two differing dimensions add up
    both = action_token_kl(base[:, [0, 0]], tuned[:, [0, 0]])
    assert abs(both["forward_kl"].item() - 2 * forward) < 1e-6


def test_full_vocabulary_logits_with_vocab_ids():
    base = torch.randn(2, 7, 40)
    tuned = torch.randn(2, 7, 40)
    ids = torch.arange(30, 40)
    restricted = action_token_kl(base[..., 30:], tuned[..., 30:])
    full = action_token_kl(base, tuned, vocab_ids=ids)
    for name in restricted:
        torch.testing.assert_close(full[name], restricted[name])
