"""The KL and TV of whole actions: the chain rule over prefixes sampled from the first policy, checked against
brute-force enumeration of every action of a small autoregressive policy (3 dimensions x 4 bins)."""

import itertools
import math

import pytest
import torch

from vla_razor.policies.openvla import action_tv_terms, chain_rule_kl_terms, mean_and_se

DIMS, BINS = 3, 4


def _table(seed: int) -> dict[tuple[int, ...], torch.Tensor]:
    """An autoregressive policy: the logits of dimension d depend on the whole prefix a_<d."""
    g = torch.Generator().manual_seed(seed)
    return {
        prefix: 2.0 * torch.randn(BINS, generator=g)
        for d in range(DIMS)
        for prefix in itertools.product(range(BINS), repeat=d)
    }


def _teacher_forced(table, actions: list[tuple[int, ...]]) -> torch.Tensor:
    """Logits [N, D, BINS] along each action's own prefix."""
    return torch.stack([torch.stack([table[a[:d]] for d in range(DIMS)]) for a in actions])


def _joint(table) -> dict[tuple[int, ...], float]:
    out = {}
    for a in itertools.product(range(BINS), repeat=DIMS):
        out[a] = math.prod(float(torch.softmax(table[a[:d]], 0)[a[d]]) for d in range(DIMS))
    return out


def _sample(table, n: int, seed: int) -> list[tuple[int, ...]]:
    g = torch.Generator().manual_seed(seed)
    actions = []
    for _ in range(n):
        a: tuple[int, ...] = ()
        for _ in range(DIMS):
            a += (int(torch.multinomial(torch.softmax(table[a], 0), 1, generator=g)),)
        actions.append(a)
    return actions


@pytest.fixture(scope="module")
def two_policies():
    p, q = _table(0), _table(1)
    jp, jq = _joint(p), _joint(q)
    exact = {"kl": sum(jp[a] * math.log(jp[a] / jq[a]) for a in jp), "tv": 0.5 * sum(abs(jp[a] - jq[a]) for a in jp)}
    return p, q, jp, exact


def test_chain_rule_terms_weighted_by_p_are_the_exact_action_kl_and_tv(two_policies):
    p, q, jp, exact = two_policies
    actions = list(jp)
    weights = torch.tensor([jp[a] for a in actions], dtype=torch.float64)
    p_logits, q_logits = _teacher_forced(p, actions), _teacher_forced(q, actions)
    kl = float((weights * chain_rule_kl_terms(p_logits, q_logits).double()).sum())
    tv = float((weights * action_tv_terms(p_logits, q_logits, torch.tensor(actions)).double()).sum())
    assert kl == pytest.approx(exact["kl"], rel=1e-5)
    assert tv == pytest.approx(exact["tv"], rel=1e-5)


def test_sampled_estimate_is_within_its_standard_error_and_the_greedy_prefix_is_not(two_policies):
    p, q, _, exact = two_policies
    frames, samples = 400, 10
    actions = _sample(p, frames * samples, seed=2)
    terms = chain_rule_kl_terms(_teacher_forced(p, actions), _teacher_forced(q, actions)).view(frames, samples)
    estimate, se = mean_and_se(terms)
    assert 0 < se < 0.1 * exact["kl"]
    assert abs(estimate - exact["kl"]) < 4 * se
    tv, tv_se = mean_and_se(
        action_tv_terms(_teacher_forced(p, actions), _teacher_forced(q, actions), torch.tensor(actions)).view(
            frames, samples
        )
    )
    assert abs(tv - exact["tv"]) < 4 * tv_se and 0 <= tv <= 1
    # the old figure: the per-dimension KLs summed along p's greedy prefix only
    greedy: tuple[int, ...] = ()
    for _ in range(DIMS):
        greedy += (int(p[greedy].argmax()),)
    along_greedy = float(chain_rule_kl_terms(_teacher_forced(p, [greedy]), _teacher_forced(q, [greedy]))[0])
    assert abs(along_greedy - exact["kl"]) > 10 * se


def test_identical_policies_and_hand_computed_single_dimension():
    logits = torch.randn(5, 7, 256)
    bins = torch.randint(0, 256, (5, 7))
    assert chain_rule_kl_terms(logits, logits).abs().max() < 1e-5
    assert action_tv_terms(logits, logits, bins).abs().max() < 1e-5
    # one dimension, 2 bins: p = (1/4, 3/4), q = (1/2, 1/2)
    p = torch.tensor([[[0.0, math.log(3.0)]]])
    q = torch.tensor([[[5.0, 5.0]]])
    forward = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(chain_rule_kl_terms(p, q)[0]) == pytest.approx(forward, abs=1e-6)
    # TV terms: bin 0 (p 1/4 < q 1/2) contributes 0, bin 1 contributes 1 - (1/2)/(3/4) = 1/3; weighted by p: 1/4
    tv = action_tv_terms(p.expand(2, 1, 2), q.expand(2, 1, 2), torch.tensor([[0], [1]]))
    assert float(0.25 * tv[0] + 0.75 * tv[1]) == pytest.approx(0.25, abs=1e-6)
    assert mean_and_se(torch.ones(1, 3)) == (1.0, 0.0)


def test_standard_error_clustered_by_rollout_does_not_count_a_rollout_s_frames_as_independent():
    """Frames of one rollout that carry the same value are one observation, not k: clustered by rollout, the error
    is the spread of the C rollouts' means / sqrt(C) (hand-computed), not the frames' std / sqrt(C k); each frame
    its own cluster gives the frames' std / sqrt(N)."""
    rollout_means = torch.tensor([0.2, 1.0, 0.5, 0.9], dtype=torch.float64)
    k = 5
    terms = rollout_means.repeat_interleave(k).unsqueeze(1).expand(-1, 3)  # [20 frames, 3 samples]
    clusters = torch.arange(4).repeat_interleave(k)
    mean, se = mean_and_se(terms, clusters)
    assert mean == pytest.approx(float(rollout_means.mean()))
    assert se == pytest.approx(float(rollout_means.std()) / 2.0, rel=1e-9)
    _, naive = mean_and_se(terms)
    assert naive == pytest.approx(float(terms[:, 0].std()) / math.sqrt(20), rel=1e-9) and naive < 0.6 * se
    # frames of one rollout spread around its mean: the cluster-robust formula by hand
    rng = torch.Generator().manual_seed(0)
    noisy = terms + 0.1 * torch.randn(terms.shape, generator=rng, dtype=torch.float64)
    per_frame = noisy.mean(1)
    sums = torch.stack([(per_frame[clusters == c] - per_frame.mean()).sum() for c in range(4)])
    assert mean_and_se(noisy, clusters)[1] == pytest.approx(math.sqrt(4 / 3 * float((sums**2).sum())) / 20)
    assert mean_and_se(noisy, torch.zeros(20))[1] == 0.0  # one rollout: no spread over x to estimate
