"""The paper's alternative candidate predictors of forgetting (section 6, Table 1, Appendix B.4).

Weight-level (L1, Fisher-weighted L2, spectral norm, sparsity, rank of the update), representation-level
(activation drift, CKA / CKNNA) measures; the distribution-level ones live in `divergences`. Parameters
are state_dict-like mappings name -> Tensor with the same keys and shapes in base and tuned. Weight
deltas are computed in float64, so bf16 weights that did not change give an exact 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

PREDICTORS_DOC: dict[str, str] = {
    "forward_kl": "E_x~new task KL(pi0 || pi), exact over the (action) vocabulary: the paper's predictor",
    "reverse_kl": "E_x~new task KL(pi || pi0)",
    "tv": "E_x~new task total variation 0.5 * sum |pi - pi0|",
    "dist_l2": "E_x~new task Euclidean distance ||pi - pi0||_2 between output distributions",
    "weight_l1": "sum over all parameters of |theta - theta0|",
    "fisher_l2": "sum F * (theta - theta0)^2, F the exact Fisher diagonal of the base on prior-task inputs",
    "spectral": "sum over weight matrices of the largest singular value of the update",
    "sparsity": "fraction of parameter entries left unchanged by fine-tuning (|delta| <= atol)",
    "rank": "numerical rank of each weight matrix's update divided by its largest possible rank",
    "activation_l1": "mean over inputs of the L1 distance between base and tuned hidden activations",
    "activation_l2": "mean over inputs of the L2 distance between base and tuned hidden activations",
    "cknna": "CKNNA (mutual k-NN masked CKA) between base and tuned representations (Huh et al. 2024)",
}


def _check_same_names(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> None:
    if set(base) != set(tuned):
        only_base = sorted(set(base) - set(tuned))
        only_tuned = sorted(set(tuned) - set(base))
        raise ValueError(f"parameter names differ: only in base {only_base}, only in tuned {only_tuned}")


def _deltas(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> Iterator[tuple[str, Tensor]]:
    """(name, tuned - base) in float64 for every parameter; the key sets and shapes must agree."""
    _check_same_names(base, tuned)
    for name in base:
        if base[name].shape != tuned[name].shape:
            raise ValueError(f"shape of {name} differs: {tuple(base[name].shape)} vs {tuple(tuned[name].shape)}")
        yield name, tuned[name].detach().double() - base[name].detach().double().to(tuned[name].device)


def _stacked_deltas(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> Iterator[tuple[str, Tensor]]:
    """(name, tuned - base) in float64 with a leading model axis: tuned[name] is [M, *base[name].shape]."""
    _check_same_names(base, tuned)
    for name in base:
        if tuned[name].shape[1:] != base[name].shape:
            raise ValueError(
                f"stacked {name} has shape {tuple(tuned[name].shape)}, expected [M, {', '.join(map(str, base[name].shape))}]"
            )
        yield name, tuned[name].detach().double() - base[name].detach().double().to(tuned[name].device)


def _one(tuned: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A single model as a stack of one."""
    return {name: value.unsqueeze(0) for name, value in tuned.items()}


def weight_change_l1_per_model(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> Tensor:
    """[M]: weight_change_l1 for each of M models stacked on a leading axis (one sweep group)."""
    return sum(delta.abs().flatten(1).sum(1) for _, delta in _stacked_deltas(base, tuned))


def weight_change_l1(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> float:
    """sum over all parameter entries of |tuned - base|."""
    return float(weight_change_l1_per_model(base, _one(tuned))[0])


def _lora_delta(layer: nn.Module) -> Tensor | None:
    """float64 update a peft LoRA layer adds to its base weight (B A x scaling per active adapter); None when it adds
    none (merged into the weight already, or disabled)."""
    if getattr(layer, "merged", False) or getattr(layer, "disable_adapters", False):
        return None
    delta = None
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A:
            continue
        a, b = layer.lora_A[adapter].weight.detach().double(), layer.lora_B[adapter].weight.detach().double()
        product = (b @ a) * layer.scaling[adapter]
        if getattr(layer, "fan_in_fan_out", False):
            product = product.T
        delta = product if delta is None else delta + product
    return delta


def _effective_parameters(model: nn.Module) -> Iterator[tuple[str, Tensor, Tensor | None]]:
    """(name, parameter, LoRA update or None) of every parameter as the model computes with it: a peft LoRA layer's
    weight under its own name (not `base_layer`'s) with its adapters' update; the adapter tensors themselves left
    out. Lazily, one tensor at a time, so a 7B model is never copied."""
    lora_layers = {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}
    for name, param in model.named_parameters():
        if ".lora_" in name:
            continue
        owner, sep, leaf = name.rpartition(".base_layer.")
        if sep and owner in lora_layers:
            yield f"{owner}.{leaf}", param, _lora_delta(lora_layers[owner]) if leaf == "weight" else None
        else:
            yield name, param, None


def module_weight_change_l1(base: nn.Module, tuned: nn.Module) -> float:
    """weight_l1 (sum of |theta - theta0| over every parameter entry; the paper's Table 1 "weight change, L1") between
    two live models of one architecture, tensor by tensor in float64: `tuned` as it computes, so a LoRA-adapted model
    counts its unmerged adapters' update B A x scaling, and scores as it would merged. Names and shapes must agree."""
    reference = {name: param for name, param, _ in _effective_parameters(base)}
    total, seen = 0.0, set()
    for name, param, lora in _effective_parameters(tuned):
        if name not in reference:
            raise ValueError(f"weight change: the tuned model's parameter {name} is not in the base")
        ref = reference[name]
        if ref.shape != param.shape:
            raise ValueError(f"weight change: shape of {name} differs: {tuple(ref.shape)} vs {tuple(param.shape)}")
        delta = param.detach().double() - ref.detach().to(param.device).double()
        if lora is not None:
            delta = delta + lora.to(param.device)
        total += float(delta.abs().sum())
        seen.add(name)
    if missing := sorted(set(reference) - seen):
        raise ValueError(f"weight change: the base's parameters {missing[:3]} are not in the tuned model")
    return total


class _ForwardWrapper(nn.Module):
    """Lets functional_call run a custom forward(model, inputs) with substituted parameters."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.forward_fn = forward

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forward_fn(self.model, inputs)


def fisher_diagonal(
    model: nn.Module,
    inputs: Tensor,
    batch_size: int = 256,
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Diagonal of the true Fisher at the model's current parameters, over prior-task `inputs`.

    F = E_x sum_y p(y|x) (d log p(y|x) / d theta)^2, with the sum over output classes done exactly (no
    sampled labels, no empirical Fisher). `forward(model, inputs [N, ...]) -> logits [N, V]` defaults to
    `model(inputs)`. Only parameters with requires_grad get an entry. Put the model in eval mode first
    (dropout is random and vmap refuses it). Cost: V per-sample-gradient passes per chunk of
    `batch_size` inputs; memory ~ batch_size x number of parameters.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    wrapper = _ForwardWrapper(model, forward if forward is not None else (lambda module, x: module(x)))
    trainable = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    constants = {f"model.{name}": p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    constants.update({f"model.{name}": b for name, b in model.named_buffers()})

    def logits_of(params: dict[str, Tensor], x: Tensor) -> Tensor:
        prefixed = {f"model.{name}": value for name, value in params.items()}
        return functional_call(wrapper, (prefixed, constants), (x,))

    def log_prob_of_class(params: dict[str, Tensor], x: Tensor, y: int) -> Tensor:
        return torch.log_softmax(logits_of(params, x.unsqueeze(0)), dim=-1)[0, y]

    per_sample_grads = vmap(grad(log_prob_of_class), in_dims=(None, 0, None))
    fisher = {name: torch.zeros_like(p) for name, p in trainable.items()}
    n_inputs = inputs.shape[0]
    for start in range(0, n_inputs, batch_size):
        chunk = inputs[start : start + batch_size]
        with torch.no_grad():
            probs = torch.softmax(logits_of(trainable, chunk), dim=-1)
        for y in range(probs.shape[-1]):
            grads = per_sample_grads(trainable, chunk, y)
            for name, g in grads.items():
                weight = probs[:, y].reshape(-1, *([1] * (g.dim() - 1)))
                fisher[name] += (weight * g.square()).sum(dim=0)
    return {name: value / max(n_inputs, 1) for name, value in fisher.items()}


def fisher_weighted_l2_per_model(
    fisher: Mapping[str, Tensor], base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]
) -> Tensor:
    """[M]: fisher_weighted_l2 for each of M stacked models."""
    deltas = dict(_stacked_deltas(base, tuned))
    total = torch.zeros(next(iter(tuned.values())).shape[0], dtype=torch.float64)
    for name, weight in fisher.items():
        if name not in deltas:
            raise KeyError(f"Fisher entry {name} is not a parameter of base/tuned")
        delta = deltas[name]
        total += (weight.detach().double().to(delta.device) * delta.square()).flatten(1).sum(1).cpu()
    return total


def fisher_weighted_l2(fisher: Mapping[str, Tensor], base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> float:
    """sum F * (tuned - base)^2 over the parameters that have a Fisher entry (EWC's penalty)."""
    return float(fisher_weighted_l2_per_model(fisher, base, _one(tuned))[0])


def spectral_norm_change_per_model(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> Tensor:
    """[M]: spectral_norm_change for each of M stacked models.

    The largest singular value is taken as sqrt of the largest eigenvalue of the smaller Gram matrix of
    the update, in float64: as exact as an SVD and robust where LAPACK's SVD crawls on rank-deficient
    updates (dead input pixels leave whole columns of the first layer unchanged).
    """
    total = None
    for _, delta in _stacked_deltas(base, tuned):
        if delta.dim() != 3:
            continue
        gram = delta @ delta.transpose(1, 2) if delta.shape[1] <= delta.shape[2] else delta.transpose(1, 2) @ delta
        sigma = torch.linalg.eigvalsh(gram)[:, -1].clamp(min=0).sqrt()
        total = sigma if total is None else total + sigma
    if total is None:
        return torch.zeros(next(iter(tuned.values())).shape[0], dtype=torch.float64)
    return total


def spectral_norm_change(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor]) -> float:
    """Sum over weight matrices (2-D params only) of the largest singular value of tuned - base."""
    return float(spectral_norm_change_per_model(base, _one(tuned))[0])


def update_sparsity(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor], atol: float = 0.0) -> float:
    """Fraction of parameter entries with |tuned - base| <= atol.

    The paper found RL's apparent sparsity came from bf16: updates below the mantissa resolution vanish.
    """
    unchanged = 0
    total = 0
    for _, delta in _deltas(base, tuned):
        unchanged += int((delta.abs() <= atol).sum().item())
        total += delta.numel()
    return unchanged / total if total else 0.0


def update_rank(base: Mapping[str, Tensor], tuned: Mapping[str, Tensor], rtol: float | None = None) -> dict[str, float]:
    """For each weight matrix: numerical rank of tuned - base divided by min(shape) (1.0 = full rank)."""
    ranks: dict[str, float] = {}
    for name, delta in _deltas(base, tuned):
        if delta.dim() != 2:
            continue
        rank = int(torch.linalg.matrix_rank(delta, rtol=rtol).item())
        ranks[name] = rank / min(delta.shape)
    return ranks


def activation_change_per_model(base_acts: Tensor, acts: Tensor, p: int = 1) -> Tensor:
    """[M]: activation_change for M models' activations [M, N, ...] against the base's [N, ...]."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if acts.shape[1:] != base_acts.shape:
        raise ValueError(f"activation shapes differ: {tuple(base_acts.shape)} vs {tuple(acts.shape[1:])}")
    diff = (acts.detach().double() - base_acts.detach().double()).reshape(acts.shape[0], acts.shape[1], -1)
    return torch.linalg.vector_norm(diff, ord=p, dim=-1).mean(dim=1)


def activation_change(base_acts: Tensor, acts: Tensor, p: int = 1) -> float:
    """Mean over samples of ||acts - base_acts||_p (p in {1, 2}); per-sample features are flattened."""
    if p in (1, 2) and base_acts.shape != acts.shape:
        raise ValueError(f"activation shapes differ: {tuple(base_acts.shape)} vs {tuple(acts.shape)}")
    return float(activation_change_per_model(base_acts, acts.unsqueeze(0), p)[0])


def _centered_kernel(features: Tensor) -> Tensor:
    """H K H for the linear kernel K = X X^T, H = I - 11^T / n, computed as (HX)(HX)^T in float64."""
    x = features.detach().double().reshape(features.shape[0], -1)
    centered = x - x.mean(dim=0, keepdim=True)
    return centered @ centered.T


def _is_constant(features: Tensor) -> bool:
    """True when every sample has the same representation: its centered kernel is 0, CKA undefined."""
    flat = features.reshape(features.shape[0], -1)
    return bool((flat == flat[:1]).all())


def cka(X: Tensor, Y: Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019, Appendix B.4): <HKH, HLH>_F / (||HKH||_F ||HLH||_F).

    Returns NaN when a representation is constant over the samples (its centered kernel is 0).
    """
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y need the same number of samples: {X.shape[0]} vs {Y.shape[0]}")
    if _is_constant(X) or _is_constant(Y):
        return math.nan
    k_centered = _centered_kernel(X)
    l_centered = _centered_kernel(Y)
    denominator = torch.linalg.matrix_norm(k_centered) * torch.linalg.matrix_norm(l_centered)
    return float(((k_centered * l_centered).sum() / denominator).item())


def _knn_mask(kernel: Tensor, k: int) -> Tensor:
    """mask[i, j] = True iff j != i is among the k largest kernel[i, :] entries (nearest by similarity)."""
    without_self = kernel.clone()
    without_self.fill_diagonal_(-math.inf)
    neighbours = torch.topk(without_self, k, dim=1).indices
    mask = torch.zeros_like(kernel, dtype=torch.bool)
    return mask.scatter_(1, neighbours, True)


def cknna(X: Tensor, Y: Tensor, k: int = 10) -> float:
    """CKNNA (Huh et al. 2024; Appendix B.4): CKA restricted to pairs that are k-NN in both spaces.

    alpha(i, j) = 1 iff j != i is among the k nearest neighbours of i under X's linear kernel AND under
    Y's (nearest = largest inner product). Following the paper's formula, the mask is applied to the
    fully centered kernels HKH, HLH and used in all three inner products:
    <K~, L~>_alpha / sqrt(<K~, K~>_alpha <L~, L~>_alpha). (Huh et al.'s code instead masks the raw
    kernels before an unbiased HSIC.) With k = n - 1 it is CKA with the diagonal excluded. NaN when no
    pair is masked in, or a representation is constant over the samples.
    """
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"X and Y need the same number of samples: {n} vs {Y.shape[0]}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, n - 1] = [1, {n - 1}], got {k}")
    if _is_constant(X) or _is_constant(Y):
        return math.nan
    x = X.detach().double().reshape(n, -1)
    y = Y.detach().double().reshape(n, -1)
    alpha = (_knn_mask(x @ x.T, k) & _knn_mask(y @ y.T, k)).double()
    k_centered = _centered_kernel(x)
    l_centered = _centered_kernel(y)
    cross = (alpha * k_centered * l_centered).sum()
    denominator = ((alpha * k_centered.square()).sum() * (alpha * l_centered.square()).sum()).sqrt()
    if denominator.item() == 0.0:
        return math.nan
    return float((cross / denominator).item())
