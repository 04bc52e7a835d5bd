import math

import pytest
import torch

from vla_razor.core.logprobs import (
    restrict_logits,
    sequence_logprobs,
    token_logprobs,
    tokens_to_restricted,
)

LN3 = math.log(3.0)


def test_restrict_logits_selects_ids_and_none_is_identity() -> None:
    logits = torch.tensor([[10.0, 11.0, 12.0, 13.0], [20.0, 21.0, 22.0, 23.0]])
    restricted = restrict_logits(logits, torch.tensor([3, 1]))
    assert torch.equal(restricted, torch.tensor([[13.0, 11.0], [23.0, 21.0]]))
    assert restrict_logits(logits, None) is logits


def test_tokens_to_restricted_maps_ids_to_positions() -> None:
    vocab_ids = torch.tensor([31999, 31744, 31800])
    tokens = torch.tensor([[31744, 31800], [31999, 31744]])
    assert torch.equal(tokens_to_restricted(tokens, vocab_ids), torch.tensor([[1, 2], [0, 1]]))


def test_tokens_to_restricted_names_offending_id() -> None:
    with pytest.raises(ValueError, match="token id 5 "):
        tokens_to_restricted(torch.tensor([[7, 5]]), torch.tensor([7, 8]))


def test_tokens_to_restricted_ignores_masked_positions() -> None:
    tokens = torch.tensor([[8, -100, 12345]])
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.equal(tokens_to_restricted(tokens, torch.tensor([7, 8]), mask), torch.tensor([[1, 0, 0]]))


def test_tokens_to_restricted_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        tokens_to_restricted(torch.tensor([1]), torch.tensor([1, 1]))


def test_token_logprobs_full_vocab() -> None:
    # softmax([0, ln 3]) = [0.25, 0.75]
    logits = torch.tensor([[[0.0, LN3], [0.0, LN3]]])
    tokens = torch.tensor([[1, 0]])
    out = token_logprobs(logits, tokens)
    assert torch.allclose(out, torch.tensor([[math.log(0.75), math.log(0.25)]]))


def test_token_logprobs_restricted_vocab_uses_sub_softmax() -> None:
    # full vocab of 4; restricting to ids [1, 3] leaves logits [0, ln 3] -> probs [0.25, 0.75]
    logits = torch.tensor([[[5.0, 0.0, 7.0, LN3]]])
    out = token_logprobs(logits, torch.tensor([[3]]), vocab_ids=torch.tensor([1, 3]))
    assert out.item() == pytest.approx(math.log(0.75))


def test_token_logprobs_masked_positions_are_zero_even_with_pad_ids() -> None:
    logits = torch.tensor([[[0.0, LN3], [0.0, LN3]]])
    tokens = torch.tensor([[0, -100]])
    out = token_logprobs(logits, tokens, mask=torch.tensor([[True, False]]))
    assert torch.allclose(out, torch.tensor([[math.log(0.25), 0.0]]))


def test_sequence_logprobs_sum_and_length_normalized() -> None:
    logits = torch.tensor([[[0.0, LN3]] * 3, [[0.0, LN3]] * 3])
    tokens = torch.tensor([[1, 0, 1], [0, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    total = sequence_logprobs(logits, tokens, mask)
    expected_first = 2 * math.log(0.75) + math.log(0.25)
    assert torch.allclose(total, torch.tensor([expected_first, math.log(0.25)]))
    mean = sequence_logprobs(logits, tokens, mask, length_normalize=True)
    assert torch.allclose(mean, torch.tensor([expected_first / 3, math.log(0.25)]))


def test_sequence_logprobs_empty_sequence_is_zero_when_normalized() -> None:
    logits = torch.zeros(1, 2, 2)
    tokens = torch.zeros(1, 2, dtype=torch.long)
    out = sequence_logprobs(logits, tokens, torch.zeros(1, 2), length_normalize=True)
    assert out.item() == 0.0


def test_token_logprobs_gradient_is_onehot_minus_softmax() -> None:
    logits = torch.tensor([[[0.0, LN3]]], requires_grad=True)
    token_logprobs(logits, torch.tensor([[1]])).sum().backward()
    assert torch.allclose(logits.grad, torch.tensor([[[-0.25, 0.25]]]))
