import math

import pytest
import torch

from vla_razor.core.divergences import (
    DIVERGENCES,
    forward_kl,
    l2_distance,
    reverse_kl,
    total_variation,
)

LN9 = math.log(9.0)
# base p = [0.5, 0.5], tuned q = [0.9, 0.1]
BASE = torch.tensor([[0.0, 0.0]])
TUNED = torch.tensor([[LN9, 0.0]])
FORWARD = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
REVERSE = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
TV = 0.5 * (0.4 + 0.4)
L2 = math.sqrt(0.4**2 + 0.4**2)


def test_two_distribution_closed_forms() -> None:
    assert forward_kl(BASE, TUNED).item() == pytest.approx(FORWARD, rel=1e-5)
    assert reverse_kl(BASE, TUNED).item() == pytest.approx(REVERSE, rel=1e-5)
    assert total_variation(BASE, TUNED).item() == pytest.approx(TV, rel=1e-5)
    assert l2_distance(BASE, TUNED).item() == pytest.approx(L2, rel=1e-5)
    assert FORWARD == pytest.approx(0.5108256, rel=1e-6)
    assert REVERSE == pytest.approx(0.3680642, rel=1e-6)


def test_forward_and_reverse_are_swapped_arguments() -> None:
    assert forward_kl(TUNED, BASE).item() == pytest.approx(REVERSE, rel=1e-5)
    assert reverse_kl(TUNED, BASE).item() == pytest.approx(FORWARD, rel=1e-5)


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "tv", "dist_l2"])
def test_divergence_of_distribution_with_itself_is_zero(name: str) -> None:
    logits = torch.tensor([[[1.0, -2.0, 0.5], [3.0, 3.0, -1.0]]])
    assert DIVERGENCES[name](logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_divergences_registry_names() -> None:
    assert DIVERGENCES == {
        "forward_kl": forward_kl,
        "reverse_kl": reverse_kl,
        "tv": total_variation,
        "dist_l2": l2_distance,
    }


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "tv", "dist_l2"])
def test_vocab_restriction_equals_sliced_logits(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(2, 3, 6, generator=generator)
    tuned = torch.randn(2, 3, 6, generator=generator)
    vocab_ids = torch.tensor([4, 1, 5])
    restricted = DIVERGENCES[name](base, tuned, vocab_ids=vocab_ids)
    sliced = DIVERGENCES[name](base[..., [4, 1, 5]], tuned[..., [4, 1, 5]])
    assert restricted.item() == pytest.approx(sliced.item(), rel=1e-6)
    # the restriction matters: the full-vocabulary value differs
    assert DIVERGENCES[name](base, tuned).item() != pytest.approx(sliced.item(), rel=1e-3)


def test_restricted_kl_closed_form_ignores_other_ids() -> None:
    # ids 0 and 3 carry huge logits that would dominate a full softmax; restricted to [1, 2] it is p vs q
    base = torch.tensor([[50.0, 0.0, 0.0, 60.0]])
    tuned = torch.tensor([[-50.0, LN9, 0.0, 10.0]])
    value = forward_kl(base, tuned, vocab_ids=torch.tensor([1, 2]))
    assert value.item() == pytest.approx(FORWARD, rel=1e-5)


def _two_position_batch() -> tuple[torch.Tensor, torch.Tensor]:
    # positions: [identical, p-vs-q] for batch row 0, [p-vs-q, p-vs-q] for row 1
    base = torch.zeros(2, 2, 2)
    tuned = torch.tensor([[[0.0, 0.0], [LN9, 0.0]], [[LN9, 0.0], [LN9, 0.0]]])
    return base, tuned


def test_reduction_none_mean_sum_sequence() -> None:
    base, tuned = _two_position_batch()
    none = forward_kl(base, tuned, reduction="none")
    assert torch.allclose(none, torch.tensor([[0.0, FORWARD], [FORWARD, FORWARD]]), atol=1e-6)
    assert forward_kl(base, tuned, reduction="sum").item() == pytest.approx(3 * FORWARD, rel=1e-5)
    assert forward_kl(base, tuned, reduction="mean").item() == pytest.approx(0.75 * FORWARD, rel=1e-5)
    # per sequence sums: [F, 2F]; mean over the batch: 1.5 F
    assert forward_kl(base, tuned, reduction="sequence").item() == pytest.approx(1.5 * FORWARD, rel=1e-5)


def test_masking_excludes_positions() -> None:
    base, tuned = _two_position_batch()
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert forward_kl(base, tuned, mask, reduction="mean").item() == pytest.approx(2 * FORWARD / 3, rel=1e-5)
    assert forward_kl(base, tuned, mask, reduction="sum").item() == pytest.approx(2 * FORWARD, rel=1e-5)
    assert forward_kl(base, tuned, mask, reduction="sequence").item() == pytest.approx(FORWARD, rel=1e-5)
    none = forward_kl(base, tuned, mask.bool(), reduction="none")
    assert torch.allclose(none, torch.tensor([[0.0, FORWARD], [FORWARD, 0.0]]), atol=1e-6)


def test_unknown_reduction_raises() -> None:
    with pytest.raises(ValueError, match="sequence"):
        forward_kl(BASE, TUNED, reduction="max")


def test_flat_n_by_v_input_with_sequence_reduction_sums_over_n() -> None:
    base = torch.zeros(2, 2)
    tuned = torch.tensor([[LN9, 0.0], [LN9, 0.0]])
    assert forward_kl(base, tuned, reduction="sequence").item() == pytest.approx(2 * FORWARD, rel=1e-5)


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "tv", "dist_l2"])
@pytest.mark.parametrize("floor", [-1e9, -math.inf])
def test_underflowing_probabilities_give_no_nan(name: str, floor: float) -> None:
    # both put (near) zero mass on id 2; 0 * log 0 must count as 0
    base = torch.tensor([[0.0, 0.0, floor]], requires_grad=True)
    tuned = torch.tensor([[LN9, 0.0, floor]], requires_grad=True)
    value = DIVERGENCES[name](base, tuned)
    expected = {"forward_kl": FORWARD, "reverse_kl": REVERSE, "tv": TV, "dist_l2": L2}[name]
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(base.grad).all() and torch.isfinite(tuned.grad).all()


def test_forward_kl_gradient_is_softmax_minus_base() -> None:
    # d KL(p_base || softmax(z)) / dz = softmax(z) - p_base = [0.9, 0.1] - [0.5, 0.5]
    tuned = TUNED.clone().requires_grad_(True)
    forward_kl(BASE, tuned).backward()
    assert torch.allclose(tuned.grad, torch.tensor([[0.4, -0.4]]), atol=1e-6)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        forward_kl(torch.zeros(1, 2), torch.zeros(1, 3))
