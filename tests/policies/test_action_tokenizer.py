import numpy as np
import pytest
import torch

from vla_razor.policies.openvla.action_tokenizer import (
    EMBEDDED,
    FRACTAL,
    FRACTAL_ACTION_STATS,
    ActionStats,
    ActionTokenizer,
    action_stats,
)

TOK = ActionTokenizer(vocab_end=32000, n_bins=256)


def test_token_ids_are_the_256_below_vocab_end_in_bin_order():
    assert TOK.token_ids[0].item() == 31999 and TOK.token_ids[-1].item() == 31744
    assert TOK.first_id == 31744
    assert torch.equal(TOK.bin_index(TOK.token_ids), torch.arange(256))


def test_edges():
    # np.digitize(-1, linspace(-1, 1, 256)) = 1 -> id 31999; digitize(1) = 256 -> id 31744
    assert TOK.encode(np.array([-1.0, 1.0])).tolist() == [31999, 31744]
    just_below_one = np.nextafter(1.0, 0.0)
    assert TOK.encode(np.array([just_below_one])).item() == 31745
    # ids 31744 and 31745 (b = 256 and 255) both decode to the last of the 255 bin centres
    centres = TOK.decode(torch.tensor([31744, 31745, 31999]))
    assert centres[0] == centres[1] == pytest.approx((TOK.bins[-2] + TOK.bins[-1]) / 2)
    assert centres[2] == pytest.approx((TOK.bins[0] + TOK.bins[1]) / 2)


def test_round_trip_within_one_bin_and_ids_stable():
    values = np.linspace(-1, 1, 2001)
    tokens = TOK.encode(values)
    decoded = TOK.decode(tokens)
    assert np.abs(decoded - values).max() <= 2 / 255 + 1e-12
    # decoding then encoding a token gives it back (except id 31744, which shares the last centre)
    ids = TOK.token_ids[:-1]
    assert torch.equal(TOK.encode(TOK.decode(ids)), ids)


def test_clipping():
    assert TOK.encode(np.array([5.0, -3.0, 1.0000001])).tolist() == [31744, 31999, 31744]


def test_non_action_token_is_rejected():
    with pytest.raises(ValueError, match="31743 is not an action token"):
        TOK.decode(torch.tensor([31743]))


def test_norm_stats_with_gripper_mask():
    stats = action_stats({FRACTAL: {"action": FRACTAL_ACTION_STATS}}, None)
    q01, q99 = np.array(FRACTAL_ACTION_STATS["q01"]), np.array(FRACTAL_ACTION_STATS["q99"])
    assert np.allclose(stats.normalize(q01)[:6], -1) and np.allclose(stats.normalize(q99)[:6], 1)
    raw = np.array([0.01, -0.02, 0.03, 0.1, -0.1, 0.2, 1.0])
    norm = stats.normalize(raw)
    assert norm[6] == 1.0  # gripper left raw (only clipped)
    assert np.allclose(stats.unnormalize(norm), raw)
    # hand-computed first dim: 2 (0.01 - q01) / (q99 - q01) - 1
    assert norm[0] == pytest.approx(2 * (0.01 - q01[0]) / (q99[0] - q01[0]) - 1)
    # out-of-range raw actions clip to the edge bins
    assert np.allclose(stats.normalize(q99 + 1)[:6], 1)
    # a full raw -> tokens -> raw trip is within one bin of the clipped action
    tokens = TOK.encode_actions(raw[None], stats)
    back = TOK.decode_actions(tokens, stats)[0]
    assert np.all(np.abs(back - raw)[:6] <= (q99 - q01)[:6] / 255 + 1e-12)


def test_stats_lookup_errors():
    both = {FRACTAL: {"action": FRACTAL_ACTION_STATS}, EMBEDDED: {"action": FRACTAL_ACTION_STATS}}
    with pytest.raises(KeyError, match="several datasets"):
        action_stats(both, None)
    with pytest.raises(KeyError, match="bridge_orig"):
        action_stats(both, "bridge_orig")
    with pytest.raises(ValueError, match="q99 must exceed q01"):
        ActionStats.from_dict({"q01": [1.0], "q99": [0.0]})
