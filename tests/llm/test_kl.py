from __future__ import annotations

import copy

import pytest
import torch

from vla_razor.core import forward_kl
from vla_razor.llm.kl import KLResponses, kl_to_base
from vla_razor.llm.sampling import TeacherForcing, generate, prompt_ids


@pytest.fixture(scope="module")
def pair(tiny_loaded):
    tokenizer, base = tiny_loaded
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = [prompt_ids(tokenizer, t) for t in ("one", "two two", "three three three")]
    torch.manual_seed(0)
    completions = generate(base, tokenizer, prompts, max_new_tokens=7)
    return tokenizer, base, other, KLResponses(prompts, completions, {})


def test_chunked_kl_equals_the_kl_of_the_full_logits(pair):
    tokenizer, base, other, responses = pair
    batch = TeacherForcing.pack(responses.prompts, responses.completions, tokenizer.pad_token_id)
    with torch.no_grad():
        per_position = forward_kl(batch.logits(base), batch.logits(other), batch.target_mask, reduction="none")
    expected_per_seq = float(per_position.sum() / len(responses.prompts))
    expected_per_token = float(per_position.sum() / batch.target_mask.sum())
    for chunk, batch_size in ((1, 1), (3, 2), (512, 16)):
        got = kl_to_base(base, other, responses, tokenizer.pad_token_id, batch_size=batch_size, chunk_tokens=chunk)
        assert got["forward_kl"] == pytest.approx(expected_per_seq, rel=1e-4)
        assert got["forward_kl_per_token"] == pytest.approx(expected_per_token, rel=1e-4)
    assert got["forward_kl"] > 0 and got["reverse_kl_on_base_responses"] > 0 and 0 < got["tv_per_token"] < 1


def test_kl_of_the_base_to_itself_is_zero_and_responses_round_trip(pair, tmp_path):
    tokenizer, base, _other, responses = pair
    got = kl_to_base(base, base, responses, tokenizer.pad_token_id)
    assert got["forward_kl"] == pytest.approx(0.0, abs=1e-6)
    responses.save(tmp_path / "r.json")
    assert KLResponses.load(tmp_path / "r.json") == responses
