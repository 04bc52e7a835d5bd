import math

import pytest
import torch

from vla_razor.core.objectives import (
    grpo_loss,
    kl_penalty,
    normalized_advantages,
    one_zero_advantages,
    one_zero_reinforce_loss,
    reinforce_loss,
    sft_loss,
    simpo_loss,
)

LN3 = math.log(3.0)
LN9 = math.log(9.0)
LOG_75 = math.log(0.75)
LOG_25 = math.log(0.25)


def _single_token_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two one-token answers over a 2-token vocabulary, both with probs [0.25, 0.75]."""
    logits = torch.tensor([[[0.0, LN3]], [[0.0, LN3]]], requires_grad=True)
    tokens = torch.tensor([[1], [0]])
    mask = torch.ones(2, 1)
    return logits, tokens, mask


# ---------------------------------------------------------------- SFT


def test_sft_loss_is_mean_nll_over_valid_tokens() -> None:
    logits = torch.tensor([[[0.0, LN3]] * 2] * 2)
    tokens = torch.tensor([[1, 0], [1, -100]])
    mask = torch.tensor([[1, 1], [1, 0]])
    expected = -(LOG_75 + LOG_25 + LOG_75) / 3
    assert sft_loss(logits, tokens, mask).item() == pytest.approx(expected, rel=1e-6)


def test_sft_loss_restricted_vocab() -> None:
    # ids [2, 0] of a 3-token vocabulary carry logits [ln 3, 0]: restricted probs [0.75, 0.25]
    logits = torch.tensor([[[0.0, 100.0, LN3]]])
    loss = sft_loss(logits, torch.tensor([[0]]), torch.ones(1, 1), vocab_ids=torch.tensor([2, 0]))
    assert loss.item() == pytest.approx(-LOG_25, rel=1e-6)


# ---------------------------------------------------------------- advantages


def test_normalized_advantages_whole_batch_uses_population_std() -> None:
    # mean 0.75, population std sqrt(0.1875)
    advantages = normalized_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]))
    std = math.sqrt(0.1875)
    expected = torch.tensor([0.25, -0.75, 0.25, 0.25]) / (std + 1e-6)
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert advantages[0].item() == pytest.approx(1 / math.sqrt(3), rel=1e-5)


def test_normalized_advantages_groups_singletons_and_ties() -> None:
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 5.0])
    group_ids = torch.tensor([7, 7, 3, 3, 9])
    advantages = normalized_advantages(rewards, group_ids)
    # group 7: centered [0.5, -0.5], std 0.5; group 3: all equal -> 0; group 9: size 1 -> 0
    expected = torch.tensor([0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6), 0.0, 0.0, 0.0])
    assert torch.allclose(advantages, expected, atol=1e-7)
    assert not torch.isnan(advantages).any()


def test_normalized_advantages_without_std_scaling_is_centered_reward() -> None:
    rewards = torch.tensor([3.0, 1.0, 10.0])
    advantages = normalized_advantages(rewards, torch.tensor([0, 0, 1]), scale_by_std=False)
    assert torch.allclose(advantages, torch.tensor([1.0, -1.0, 0.0]))


def test_normalized_advantages_accepts_integer_rewards() -> None:
    advantages = normalized_advantages(torch.tensor([1, 0]), scale_by_std=False)
    assert torch.allclose(advantages, torch.tensor([0.5, -0.5]))


# ---------------------------------------------------------------- REINFORCE


def test_reinforce_loss_per_sequence_advantages() -> None:
    logits, tokens, mask = _single_token_batch()
    advantages = torch.tensor([1.0, -1.0], requires_grad=True)
    loss = reinforce_loss(logits, tokens, mask, advantages)
    assert loss.item() == pytest.approx(-(LOG_75 - LOG_25) / 2, rel=1e-6)
    loss.backward()
    # d/dz of -A/B * log softmax(z)[y] = -A/B * (onehot(y) - p), p = [0.25, 0.75]
    expected = torch.tensor([[[-0.5 * (0 - 0.25), -0.5 * (1 - 0.75)]], [[0.5 * (1 - 0.25), 0.5 * (0 - 0.75)]]])
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert advantages.grad is None


def test_reinforce_loss_sums_log_probs_over_valid_tokens() -> None:
    logits = torch.tensor([[[0.0, LN3]] * 3])
    tokens = torch.tensor([[1, 1, 0]])
    mask = torch.tensor([[1, 1, 0]])
    loss = reinforce_loss(logits, tokens, mask, torch.tensor([2.0]))
    assert loss.item() == pytest.approx(-2 * 2 * LOG_75, rel=1e-6)


def test_reinforce_loss_per_token_advantages() -> None:
    logits = torch.tensor([[[0.0, LN3]] * 2] * 2)
    tokens = torch.tensor([[1, 0], [0, 0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    advantages = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    loss = reinforce_loss(logits, tokens, mask, advantages)
    expected = -(1 * LOG_75 + 2 * LOG_25 + 3 * LOG_25) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_reinforce_loss_rejects_wrong_advantage_shape() -> None:
    logits, tokens, mask = _single_token_batch()
    with pytest.raises(ValueError, match="advantages shape"):
        reinforce_loss(logits, tokens, mask, torch.ones(3))


def test_one_zero_reinforce_keeps_only_rewarded_samples() -> None:
    logits = torch.tensor([[[0.0, LN3]]] * 3)
    tokens = torch.tensor([[1], [0], [0]])
    loss = one_zero_reinforce_loss(logits, tokens, torch.ones(3, 1), torch.tensor([2.0, 0.0, -1.0]))
    assert loss.item() == pytest.approx(-LOG_75 / 3, rel=1e-6)


def test_one_zero_advantages_are_one_for_a_reward_and_zero_otherwise() -> None:
    """The one definition the robot's RL and the LLM's 1-0 Reinforce both use: no baseline, nothing negative."""
    rewards = torch.tensor([2.0, 0.0, -1.0, 1.0], requires_grad=True)
    advantages = one_zero_advantages(rewards)
    assert advantages.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert advantages.dtype == torch.float32 and not advantages.requires_grad


# ---------------------------------------------------------------- GRPO


def test_grpo_on_single_token_reduces_to_reinforce_with_group_baseline() -> None:
    """DESIGN.md section 7: one token, one update per batch -> no ratio, no clipping."""
    generator = torch.Generator().manual_seed(0)
    base_logits = torch.randn(6, 1, 5, generator=generator)
    tokens = torch.randint(0, 5, (6, 1), generator=generator)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    advantages = normalized_advantages(rewards, torch.tensor([0, 0, 0, 1, 1, 1]))
    mask = torch.ones(6, 1)

    grpo_logits = base_logits.clone().requires_grad_(True)
    grpo = grpo_loss(grpo_logits, tokens, mask, advantages)
    grpo.backward()
    reinforce_logits = base_logits.clone().requires_grad_(True)
    reinforce = reinforce_loss(reinforce_logits, tokens, mask, advantages)
    reinforce.backward()

    assert grpo.item() == pytest.approx(-advantages.mean().item(), abs=1e-7)
    assert torch.allclose(grpo_logits.grad, reinforce_logits.grad, atol=1e-7)
    assert grpo_logits.grad.abs().sum().item() > 0.1


def test_grpo_clipping_with_old_logprobs() -> None:
    # log p = ln 0.75, old = ln 0.5 -> r = 1.5
    logits = torch.tensor([[[0.0, LN3]], [[0.0, LN3]]], requires_grad=True)
    tokens = torch.tensor([[1], [1]])
    old = torch.full((2, 1), math.log(0.5))
    loss = grpo_loss(logits, tokens, torch.ones(2, 1), torch.tensor([1.0, -1.0]), old_logprobs=old)
    # A = +1: min(1.5, 1.2) = 1.2 (clipped); A = -1: min(-1.5, -1.2) = -1.5 (unclipped)
    assert loss.item() == pytest.approx(-(1.2 - 1.5) / 2, rel=1e-6)
    loss.backward()
    # clipped sample has no gradient; unclipped: d/dz [0.5 * r] = 0.5 * r * (onehot - p)
    assert torch.allclose(logits.grad[0], torch.zeros(1, 2))
    assert torch.allclose(logits.grad[1], torch.tensor([[0.5 * 1.5 * -0.25, 0.5 * 1.5 * 0.25]]), atol=1e-6)


def _variable_length_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.zeros(2, 3, 4)
    tokens = torch.tensor([[1, 2, 3], [0, -100, -100]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([1.0, 2.0])
    return logits, tokens, mask, advantages


def test_grpo_loss_types_aggregate_differently() -> None:
    logits, tokens, mask, advantages = _variable_length_batch()
    # on-policy r = 1: per-token objective = A. Valid tokens: 3 with A = 1, 1 with A = 2
    assert grpo_loss(logits, tokens, mask, advantages, loss_type="grpo").item() == pytest.approx(-1.5)
    assert grpo_loss(logits, tokens, mask, advantages, loss_type="dr_grpo").item() == pytest.approx(-5 / 6)
    dr_long = grpo_loss(logits, tokens, mask, advantages, loss_type="dr_grpo", max_tokens=10)
    assert dr_long.item() == pytest.approx(-5 / 20)
    assert grpo_loss(logits, tokens, mask, advantages, loss_type="bnpo").item() == pytest.approx(-5 / 4)


def test_grpo_accepts_per_token_advantages() -> None:
    logits, tokens, mask, _ = _variable_length_batch()
    advantages = torch.tensor([[1.0, 2.0, 3.0], [4.0, 50.0, 60.0]])
    assert grpo_loss(logits, tokens, mask, advantages, loss_type="bnpo").item() == pytest.approx(-10 / 4)


def test_grpo_unknown_loss_type_lists_valid_names() -> None:
    logits, tokens, mask, advantages = _variable_length_batch()
    with pytest.raises(ValueError, match="grpo, dr_grpo, bnpo"):
        grpo_loss(logits, tokens, mask, advantages, loss_type="ppo")


# ---------------------------------------------------------------- SimPO


def test_simpo_loss_paper_form() -> None:
    winner = torch.tensor([[[0.0, LN3]]])  # log pi(y_w) = ln 0.75
    loser = torch.tensor([[[0.0, LN3]]])  # log pi(y_l) = ln 0.25
    ones = torch.ones(1, 1)
    loss = simpo_loss(winner, torch.tensor([[1]]), ones, loser, torch.tensor([[0]]), ones)
    # -log sigmoid(ln 3 - 1) = log(1 + e / 3)
    assert loss.item() == pytest.approx(math.log(1 + math.e / 3), rel=1e-6)
    scaled = simpo_loss(winner, torch.tensor([[1]]), ones, loser, torch.tensor([[0]]), ones, margin=0.5, beta=2.0)
    assert scaled.item() == pytest.approx(math.log(1 + math.exp(-(2 * LN3 - 0.5))), rel=1e-6)


def test_simpo_loss_length_normalized() -> None:
    winner = torch.tensor([[[0.0, LN3]] * 2])  # two tokens, each log p = ln 0.75
    loser = torch.tensor([[[0.0, LN3]] * 2])  # one valid token with log p = ln 0.25
    tokens_w = torch.tensor([[1, 1]])
    tokens_l = torch.tensor([[0, 0]])
    mask_l = torch.tensor([[1, 0]])
    summed = simpo_loss(winner, tokens_w, torch.ones(1, 2), loser, tokens_l, mask_l, margin=0.0)
    assert summed.item() == pytest.approx(math.log(1 + math.exp(-(2 * LOG_75 - LOG_25))), rel=1e-6)
    normalized = simpo_loss(
        winner, tokens_w, torch.ones(1, 2), loser, tokens_l, mask_l, margin=0.0, length_normalize=True
    )
    assert normalized.item() == pytest.approx(math.log(1 + math.exp(-(LOG_75 - LOG_25))), rel=1e-6)


# ---------------------------------------------------------------- KL penalty

REVERSE = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # KL([0.9, 0.1] || [0.5, 0.5])


def test_kl_penalty_exact_is_policy_to_reference_kl_over_valid_tokens() -> None:
    logits = torch.tensor([[[LN9, 0.0], [0.0, 0.0]]], requires_grad=True)
    ref_logits = torch.zeros(1, 2, 2, requires_grad=True)
    tokens = torch.zeros(1, 2, dtype=torch.long)
    penalty = kl_penalty(logits, ref_logits, tokens, torch.ones(1, 2), kind="exact")
    assert penalty.item() == pytest.approx(REVERSE / 2, rel=1e-5)
    masked = kl_penalty(logits, ref_logits, tokens, torch.tensor([[1, 0]]), kind="exact")
    assert masked.item() == pytest.approx(REVERSE, rel=1e-5)
    masked.backward()
    assert ref_logits.grad is None
    assert logits.grad.abs().sum().item() > 0


def test_kl_penalty_k3_at_sampled_token_and_its_expectation() -> None:
    logits = torch.tensor([[[LN9, 0.0]]])
    ref_logits = torch.zeros(1, 1, 2)
    mask = torch.ones(1, 1)
    k3_token0 = kl_penalty(logits, ref_logits, torch.tensor([[0]]), mask, kind="k3").item()
    k3_token1 = kl_penalty(logits, ref_logits, torch.tensor([[1]]), mask, kind="k3").item()
    assert k3_token0 == pytest.approx(5 / 9 - math.log(5 / 9) - 1, rel=1e-5)
    assert k3_token1 == pytest.approx(5 - math.log(5) - 1, rel=1e-5)
    # unbiased: E_{y ~ pi}[k3] = KL(pi || ref)
    assert 0.9 * k3_token0 + 0.1 * k3_token1 == pytest.approx(REVERSE, rel=1e-5)


def test_kl_penalty_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="exact, k3"):
        tokens = torch.zeros(1, 1, dtype=torch.long)
        kl_penalty(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), tokens, None, kind="k2")
