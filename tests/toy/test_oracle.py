import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from vla_razor.toy.train import oracle_distribution, sft_labels
from vla_razor.toy.data import parity_correct


def kl(q: np.ndarray, p: np.ndarray) -> float:
    support = q > 0
    return float(np.sum(q[support] * np.log(q[support] / p[support])))


def test_oracle_is_base_renormalized_on_correct_labels():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    correct = parity_correct(torch.tensor([2])).float()  # even labels are correct
    q = oracle_distribution(p, correct)
    torch.testing.assert_close(q[0, :4], torch.tensor([0.25, 0.0, 0.75, 0.0]))
    assert q.sum().item() == pytest.approx(1.0)
    assert (q * correct).sum().item() == pytest.approx(1.0)  # q^T R = 1


def test_oracle_minimizes_kl_among_perfectly_accurate_distributions():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10))
    correct = np.arange(10) % 2 == 1
    q_star = oracle_distribution(torch.tensor(p)[None], torch.tensor(correct, dtype=torch.float64)[None])[0].numpy()
    best = kl(q_star, p)
    # Closed form of the minimum: -log of the base's mass on correct labels.
    assert best == pytest.approx(-np.log(p[correct].sum()))
    # Any other feasible q is farther (random ones, and a numerical optimum).
    for _ in range(200):
        q = np.zeros(10)
        q[correct] = rng.dirichlet(np.ones(correct.sum()))
        assert kl(q, p) >= best - 1e-12

    def kl_of_logits(z: np.ndarray) -> float:
        q = np.zeros(10)
        q[correct] = np.exp(z) / np.exp(z).sum()
        return kl(q, p)

    res = minimize(
        kl_of_logits,
        np.zeros(correct.sum()),
        method="Nelder-Mead",
        options={"maxiter": 20000, "xatol": 1e-10, "fatol": 1e-12},
    )
    assert res.fun == pytest.approx(best, abs=1e-6)


def test_sft_labels_follow_each_recipe():
    digits = torch.arange(10).repeat(50)
    base = torch.softmax(torch.randn(len(digits), 10, generator=torch.Generator().manual_seed(1)), -1)
    sft1 = sft_labels("sft1", digits, base, 0)
    assert torch.equal(sft1, digits % 2)
    sft2 = sft_labels("sft2", digits, base, 0)
    assert set(sft2[digits % 2 == 0].tolist()) == {0, 4} and set(sft2[digits % 2 == 1].tolist()) == {1, 5}
    oracle = sft_labels("sft_oracle", digits, base, 0)
    assert torch.equal(oracle % 2, digits % 2)
    assert torch.equal(oracle, sft_labels("sft_oracle", digits, base, 0))  # a fixed dataset
    # Labels the base likes more are drawn more often.
    probs = oracle_distribution(base, parity_correct(digits).float())
    chosen = probs.gather(1, oracle[:, None]).mean()
    assert chosen > (probs * (probs > 0)).sum(1).div((probs > 0).sum(1)).mean()
    with pytest.raises(ValueError, match="not an SFT method"):
        sft_labels("grpo", digits, base, 0)
