import math

import pytest
import torch
from torch import nn

from vla_razor.core.predictors import (
    PREDICTORS_DOC,
    activation_change,
    cka,
    cknna,
    fisher_diagonal,
    fisher_weighted_l2,
    module_weight_change_l1,
    spectral_norm_change,
    update_rank,
    update_sparsity,
    weight_change_l1,
)

# ---------------------------------------------------------------- weight-level


def test_weight_change_l1_sums_absolute_deltas() -> None:
    base = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.0, 0.0])}
    tuned = {"w": torch.tensor([[1.0, 0.0], [3.0, 5.0]]), "b": torch.tensor([0.5, -0.5])}
    assert weight_change_l1(base, tuned) == pytest.approx(4.0)
    assert weight_change_l1(base, base) == 0.0


def test_mismatched_parameter_names_raise() -> None:
    with pytest.raises(ValueError, match="only in base"):
        weight_change_l1({"a": torch.zeros(1)}, {"b": torch.zeros(1)})


def test_weight_change_of_live_models_counts_unmerged_lora_as_its_merged_weights() -> None:
    """The evaluators' weight_l1 between the base and a model in training: plain parameters as the state-dict
    version computes them; a LoRA-adapted model (peft, unmerged, adapters on one of two layers, bf16 weights) scores
    as the same model merged, in float64; names that do not match are refused."""
    import copy

    from vla_razor.lora import LoraOptions, apply_lora, merge_lora

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(torch.bfloat16)
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        tuned[2].bias.add_(0.25)
    expected = weight_change_l1(base.state_dict(), tuned.state_dict())
    assert expected == pytest.approx(0.75)
    assert module_weight_change_l1(base, tuned) == pytest.approx(expected)
    assert module_weight_change_l1(base, base) == 0.0

    adapted = apply_lora(copy.deepcopy(tuned), LoraOptions(enabled=True, r=2, alpha=4, target_modules="^0$"))
    assert module_weight_change_l1(base, adapted) == pytest.approx(expected)  # B = 0 at the start: no update yet
    with torch.no_grad():
        adapted[0].lora_B["default"].weight.normal_()
    merged = merge_lora(copy.deepcopy(adapted)).float()
    lora_update = (adapted[0].lora_B["default"].weight.double() @ adapted[0].lora_A["default"].weight.double()) * 2
    assert lora_update.abs().sum() > 0.1
    plain = {k: v.double() for k, v in base.state_dict().items()}
    exact = weight_change_l1(
        plain,
        {**{k: v.double() for k, v in tuned.state_dict().items()}, "0.weight": tuned[0].weight.double() + lora_update},
    )
    assert module_weight_change_l1(base, adapted) == pytest.approx(exact, rel=1e-9)
    assert module_weight_change_l1(base, merged) == pytest.approx(exact, rel=1e-2)  # merging rounds to bf16

    with pytest.raises(ValueError, match="not in the base"):
        module_weight_change_l1(nn.Sequential(nn.Linear(6, 5)), tuned)


def test_fisher_weighted_l2_uses_only_fisher_entries() -> None:
    base = {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.0])}
    tuned = {"w": torch.tensor([3.0, 1.0]), "b": torch.tensor([100.0])}
    fisher = {"w": torch.tensor([1.0, 2.0])}
    assert fisher_weighted_l2(fisher, base, tuned) == pytest.approx(3.0**2 * 1 + 1.0**2 * 2)


def test_spectral_norm_change_sums_largest_singular_values_of_matrices() -> None:
    base = {"a": torch.zeros(2, 2), "b": torch.ones(2, 2), "bias": torch.zeros(3)}
    tuned = {
        "a": torch.diag(torch.tensor([3.0, -1.0])),  # singular values 3, 1
        "b": torch.ones(2, 2) + torch.ones(2, 2),  # delta = all-ones 2x2: singular values 2, 0
        "bias": torch.tensor([50.0, 0.0, 0.0]),  # not a matrix: ignored
    }
    assert spectral_norm_change(base, tuned) == pytest.approx(3.0 + 2.0)


def test_update_sparsity_counts_unchanged_entries_and_bf16_rounding() -> None:
    base = {"w": torch.ones(4, dtype=torch.bfloat16)}
    # bf16 spacing at 1.0 is 2^-7: an update of 1e-4 rounds away, 0.5 survives
    tuned = {"w": (torch.ones(4) + torch.tensor([1e-4, -1e-4, 0.5, 0.0])).to(torch.bfloat16)}
    assert update_sparsity(base, tuned) == pytest.approx(3 / 4)
    fp32_base = {"w": torch.ones(4)}
    fp32_tuned = {"w": torch.ones(4) + torch.tensor([1e-4, -1e-4, 0.5, 0.0])}
    assert update_sparsity(fp32_base, fp32_tuned) == pytest.approx(1 / 4)
    assert update_sparsity(fp32_base, fp32_tuned, atol=1e-3) == pytest.approx(3 / 4)


def test_update_rank_is_relative_rank_of_each_matrix_delta() -> None:
    u = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    base = {"low": torch.zeros(3, 4), "full": torch.zeros(3, 3), "same": torch.ones(2, 2), "bias": torch.zeros(3)}
    tuned = {"low": u @ v, "full": torch.eye(3), "same": torch.ones(2, 2), "bias": torch.ones(3)}
    assert update_rank(base, tuned) == {"low": pytest.approx(1 / 3), "full": 1.0, "same": 0.0}
    # a large rtol drops the small singular value of diag(1, 1e-3)
    small = {"m": torch.diag(torch.tensor([1.0, 1e-3]))}
    assert update_rank({"m": torch.zeros(2, 2)}, small, rtol=1e-2) == {"m": 0.5}


def _linear_fisher_closed_form(weight: torch.Tensor, bias: torch.Tensor, inputs: torch.Tensor):
    """Softmax regression: F_W[c, j] = E_x p_c (1 - p_c) x_j^2, F_b[c] = E_x p_c (1 - p_c)."""
    probs = torch.softmax(inputs @ weight.T + bias, dim=-1)
    variance = probs * (1 - probs)
    return (variance.unsqueeze(-1) * inputs.square().unsqueeze(1)).mean(0), variance.mean(0)


def test_fisher_diagonal_uniform_softmax_regression_closed_form() -> None:
    model = nn.Linear(3, 2)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    inputs = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, -1.0]])
    fisher = fisher_diagonal(model, inputs)
    # p = [0.5, 0.5] -> p (1 - p) = 0.25; mean x^2 = [5, 2, 0.5]
    assert torch.allclose(fisher["weight"], 0.25 * torch.tensor([[5.0, 2.0, 0.5], [5.0, 2.0, 0.5]]))
    assert torch.allclose(fisher["bias"], torch.tensor([0.25, 0.25]))


def test_fisher_diagonal_matches_closed_form_and_is_chunk_independent() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    inputs = torch.randn(7, 4)
    expected_weight, expected_bias = _linear_fisher_closed_form(model.weight.detach(), model.bias.detach(), inputs)
    for batch_size in (256, 3):
        fisher = fisher_diagonal(model, inputs, batch_size=batch_size)
        assert torch.allclose(fisher["weight"], expected_weight, atol=1e-6)
        assert torch.allclose(fisher["bias"], expected_bias, atol=1e-6)


def test_fisher_diagonal_skips_frozen_parameters_and_accepts_custom_forward() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    inputs = torch.randn(5, 2)
    fisher = fisher_diagonal(model, inputs)
    assert set(fisher) == {"2.weight", "2.bias"}
    # the last layer is softmax regression on the frozen features h
    features = torch.tanh(model[0](inputs)).detach()
    expected_weight, expected_bias = _linear_fisher_closed_form(
        model[2].weight.detach(), model[2].bias.detach(), features
    )
    assert torch.allclose(fisher["2.weight"], expected_weight, atol=1e-6)
    assert torch.allclose(fisher["2.bias"], expected_bias, atol=1e-6)
    # custom forward: inputs arrive as [N, 1, 2] and are flattened by the forward callable
    custom = fisher_diagonal(model, inputs.unsqueeze(1), forward=lambda module, x: module(x.flatten(1)))
    assert torch.allclose(custom["2.weight"], expected_weight, atol=1e-6)


def test_fisher_diagonal_hidden_layer_matches_per_sample_autograd() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    inputs = torch.randn(4, 2)
    fisher = fisher_diagonal(model, inputs, batch_size=3)
    reference = torch.zeros_like(model[0].weight)
    for x in inputs:
        log_probs = torch.log_softmax(model(x.unsqueeze(0)), dim=-1)[0]
        for y in range(2):
            (g,) = torch.autograd.grad(log_probs[y], model[0].weight, retain_graph=True)
            reference += log_probs[y].exp().detach() * g.square()
    assert torch.allclose(fisher["0.weight"], reference / 4, atol=1e-6)


# ---------------------------------------------------------------- activations and kernels


def test_activation_change_l1_and_l2() -> None:
    base = torch.zeros(2, 2)
    acts = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert activation_change(base, acts, p=1) == pytest.approx((7 + 1) / 2)
    assert activation_change(base, acts, p=2) == pytest.approx((5 + 1) / 2)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        activation_change(base, acts, p=3)


def _random_features(n: int = 12, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_invariances() -> None:
    x = _random_features()
    orthogonal, _ = torch.linalg.qr(_random_features(5, 5, seed=1))
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cka(x, x @ orthogonal) == pytest.approx(1.0, abs=1e-12)
    assert cka(x, 3 * x) == pytest.approx(1.0, abs=1e-12)
    assert cka(x, _random_features(seed=3)) < 0.9


def test_cka_hand_computed_one_dimensional_case() -> None:
    # centered x = [1, 0, -1], centered y = [2/3, -1/3, -1/3]; 1-D linear CKA = cos^2 = 1 / (2 * 2/3)
    x = torch.tensor([[1.0], [0.0], [-1.0]])
    y = torch.tensor([[1.0], [0.0], [0.0]])
    assert cka(x, y) == pytest.approx(0.75, rel=1e-12)


def test_cka_constant_representation_is_nan() -> None:
    varying = _random_features(3, 2)
    assert math.isnan(cka(torch.ones(3, 2), varying))
    assert math.isnan(cka(varying, torch.full((3, 2), 0.1)))


def test_cknna_with_all_neighbours_is_cka_without_diagonal() -> None:
    x = _random_features()
    y = x @ _random_features(5, 4, seed=1) + 0.5 * _random_features(12, 4, seed=2)
    n = x.shape[0]
    centering = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k_centered = centering @ x @ x.T @ centering
    l_centered = centering @ y @ y.T @ centering
    off_diagonal = 1.0 - torch.eye(n, dtype=torch.float64)
    reference = (off_diagonal * k_centered * l_centered).sum() / torch.sqrt(
        (off_diagonal * k_centered**2).sum() * (off_diagonal * l_centered**2).sum()
    )
    assert cknna(x, y, k=n - 1) == pytest.approx(reference.item(), rel=1e-10)
    assert cknna(x, y, k=n - 1) != pytest.approx(cka(x, y), rel=1e-3)


def test_cknna_of_representation_with_itself_is_one() -> None:
    x = _random_features()
    assert cknna(x, x, k=3) == pytest.approx(1.0, abs=1e-12)
    assert cknna(x, 2 * x, k=3) == pytest.approx(1.0, abs=1e-12)


def test_cknna_hand_listed_mutual_neighbours() -> None:
    # X = [1, 2, -1, -3], Y = [1, 2, 3, -1] (1-D). 2-NN by inner product, excluding self:
    # X: 0->{1,2}, 1->{0,2}, 2->{3,0}, 3->{2,0};  Y: 0->{2,1}, 1->{2,0}, 2->{1,0}, 3->{0,1}
    # alpha = 1 on (0,1), (0,2), (1,0), (1,2), (2,0), (3,0)
    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]])
    y = torch.tensor([[1.0], [2.0], [3.0], [-1.0]])
    x_centered = [1.25, 2.25, -0.75, -2.75]
    y_centered = [-0.25, 0.75, 1.75, -2.25]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (3, 0)]
    cross = sum(x_centered[i] * x_centered[j] * y_centered[i] * y_centered[j] for i, j in pairs)
    kk = sum((x_centered[i] * x_centered[j]) ** 2 for i, j in pairs)
    ll = sum((y_centered[i] * y_centered[j]) ** 2 for i, j in pairs)
    assert cross == pytest.approx(-4.3828125)
    assert cknna(x, y, k=2) == pytest.approx(cross / math.sqrt(kk * ll), rel=1e-12)
    assert cknna(x, y, k=2) == pytest.approx(-0.4889340524, rel=1e-9)


def test_cknna_without_mutual_neighbours_is_nan_and_k_is_checked() -> None:
    # with k = 1 the nearest neighbours never agree (see the hand-listed case above)
    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0]])
    y = torch.tensor([[1.0], [2.0], [3.0], [-1.0]])
    assert math.isnan(cknna(x, y, k=1))
    with pytest.raises(ValueError, match="k must be in"):
        cknna(x, y, k=4)


def test_predictors_doc_covers_every_reported_name() -> None:
    assert set(PREDICTORS_DOC) == {
        "forward_kl",
        "reverse_kl",
        "tv",
        "dist_l2",
        "weight_l1",
        "fisher_l2",
        "spectral",
        "sparsity",
        "rank",
        "activation_l1",
        "activation_l2",
        "cknna",
    }
    assert all(isinstance(text, str) and text for text in PREDICTORS_DOC.values())


def test_per_model_predictors_match_one_model_at_a_time():
    from vla_razor.core import predictors as P

    g = torch.Generator().manual_seed(3)
    base = {"w": torch.randn(6, 4, generator=g), "b": torch.randn(6, generator=g)}
    stacked = {k: v.unsqueeze(0) + 0.1 * torch.randn(3, *v.shape, generator=g) for k, v in base.items()}
    fisher = {k: torch.rand(v.shape, generator=g) for k, v in base.items()}
    for m in range(3):
        one = {k: v[m] for k, v in stacked.items()}
        assert P.weight_change_l1_per_model(base, stacked)[m].item() == pytest.approx(P.weight_change_l1(base, one))
        assert P.fisher_weighted_l2_per_model(fisher, base, stacked)[m].item() == pytest.approx(
            P.fisher_weighted_l2(fisher, base, one)
        )
        # The Gram-eigenvalue route equals the SVD's largest singular value.
        svd = torch.linalg.matrix_norm((one["w"] - base["w"]).double(), ord=2).item()
        assert P.spectral_norm_change_per_model(base, stacked)[m].item() == pytest.approx(svd, rel=1e-9)
    acts_base = torch.randn(5, 7, generator=g)
    acts = acts_base + torch.randn(3, 5, 7, generator=g)
    for p in (1, 2):
        per_model = P.activation_change_per_model(acts_base, acts, p=p)
        assert per_model[1].item() == pytest.approx(P.activation_change(acts_base, acts[1], p=p))
    with pytest.raises(ValueError, match=r"expected \[M, 6, 4\]"):
        P.weight_change_l1_per_model(base, {"w": torch.zeros(2, 4, 6), "b": torch.zeros(2, 6)})
