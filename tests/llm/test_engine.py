"""Our rollout engine (vla_razor/llm/engine.py) against transformers' generate on tiny random Llama and Qwen2 models.

Tokens must be equal: greedy ones, and sampled ones drawn with the same seed (both engines draw one
torch.multinomial per row and step from softmax(logits / T) in float32; the logits agree to ~1e-6 in float32, far
below what would move a draw). Log-probs of the produced tokens must equal a teacher-forced forward within 1e-5
(float32). Stops are chosen among the tokens the models actually produce, so rows finish at different steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vla_razor.config import ConfigError
from vla_razor.core import token_logprobs
from vla_razor.llm.engine import check_static_supported, static_generate
from vla_razor.llm.models import load_causal_lm, load_tokenizer
from vla_razor.llm.sampling import TeacherForcing, generate, prompt_ids, stop_token_ids

TEXTS = ("a", "a longer prompt here", "mid size", "x", "what is 7 + 5?", "ok")


@pytest.fixture(scope="module", params=["llama", "qwen2-tied", "qwen2-untied"])
def family_model(request: pytest.FixtureRequest, tiny_llm: Path, tmp_path_factory: pytest.TempPathFactory):
    """(tokenizer, model) of the tiny Llama, and of tiny Qwen2s (q / k / v biases) with tied and untied embeddings."""
    from vla_razor.llm.models import make_tiny_llm

    path = tiny_llm
    if request.param != "llama":
        path = make_tiny_llm(
            tmp_path_factory.mktemp(request.param) / "model",
            family="qwen2",
            tie_embeddings=request.param == "qwen2-tied",
        )
    return load_tokenizer(path), _spread(load_causal_lm(path, torch.device("cpu")))


def _spread(model: torch.nn.Module) -> torch.nn.Module:
    """Adds N(0, 0.3) to every matrix: at its initialization (std 0.02) a tiny model repeats one token greedily, and
    varied completions are what the comparisons need."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    return model


def _stops_at_different_steps(completions: list[list[int]]) -> list[int]:
    """Row k's token at step 2 + k (where it is new to that row): as stops they end the rows at different steps."""
    stops = []
    for k, c in enumerate(completions):
        step = 2 + k % 10
        if step < len(c) - 1 and c[step] not in c[:step]:
            stops.append(c[step])
    return stops


def _cut(completion: list[int], stops: list[int]) -> list[int]:
    first = next((k for k, t in enumerate(completion) if t in stops), len(completion) - 1)
    return completion[: first + 1]


def _both(model, tokenizer, prompts, greedy: bool, seed: int = 3, **kwargs) -> dict[str, list[list[int]]]:
    out = {}
    for engine in ("transformers", "static"):
        torch.manual_seed(seed)
        out[engine] = generate(model, tokenizer, prompts, 16, greedy=greedy, engine=engine, **kwargs)
    return out


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_tokens_equal_transformers_generate_with_rows_stopping_at_different_steps(family_model, greedy):
    tokenizer, model = family_model
    prompts = [prompt_ids(tokenizer, text) for text in TEXTS for _ in range(2)]
    free = _both(model, tokenizer, prompts, greedy, extra_stop_ids=())
    assert free["static"] == free["transformers"]
    stops = _stops_at_different_steps(free["static"])
    cut = _both(model, tokenizer, prompts, greedy, extra_stop_ids=stops)
    assert cut["static"] == cut["transformers"]
    # a stop changes nothing before it (the same draws), and each row ends at its first stop
    assert cut["static"] == [_cut(c, stops) for c in free["static"]]
    assert len({len(c) for c in cut["static"]}) > 3  # rows finished at different steps


def test_sampling_at_a_temperature_equals_transformers(family_model):
    tokenizer, model = family_model
    prompts = [prompt_ids(tokenizer, "x")] * 6
    out = _both(model, tokenizer, prompts, greedy=False, temperature=0.7)
    assert out["static"] == out["transformers"]
    assert len({tuple(c) for c in out["static"]}) > 1


def test_logprobs_equal_a_teacher_forced_forward(family_model):
    tokenizer, model = family_model
    prompts = [prompt_ids(tokenizer, text) for text in TEXTS]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    stops = stop_token_ids(model, tokenizer, extra=[ord("e") % 200, 17, 42, 99])
    made = static_generate(
        model, ids, mask, 12, stops, tokenizer.pad_token_id, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    completions = made.completions()
    batch = TeacherForcing.pack(prompts, completions, tokenizer.pad_token_id)
    with torch.no_grad():
        forced = token_logprobs(batch.logits(model), batch.targets, mask=batch.target_mask)
    for row, c in enumerate(completions):
        expected = forced[row][batch.target_mask[row]]
        torch.testing.assert_close(made.logprobs[row, : len(c)], expected, atol=1e-5, rtol=1e-5)
        assert not made.logprobs[row, len(c) :].any()
        assert (made.tokens[row, len(c) :] == tokenizer.pad_token_id).all()


def test_a_row_alone_gets_what_it_gets_in_a_batch(family_model):
    tokenizer, model = family_model
    prompts = [prompt_ids(tokenizer, text) for text in TEXTS]
    batched = generate(model, tokenizer, prompts, 10, greedy=True, engine="static")
    for prompt, completion in zip(prompts, batched):
        assert generate(model, tokenizer, [prompt], 10, greedy=True, engine="static") == [completion]


def test_the_engine_follows_in_place_weight_updates_and_lora(tiny_llm: Path):
    """GRPO trains between rollouts (in place) and may wrap layers with LoRA: the cached decoder sees both."""
    from vla_razor.lora import LoraOptions, apply_lora

    tokenizer, model = load_tokenizer(tiny_llm), _spread(load_causal_lm(tiny_llm, torch.device("cpu")))
    prompts = [prompt_ids(tokenizer, text) for text in TEXTS]
    before = generate(model, tokenizer, prompts, 10, greedy=True, engine="static")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    after = _both(model, tokenizer, prompts, greedy=True)
    assert after["static"] == after["transformers"] != before
    apply_lora(model, LoraOptions(enabled=True, r=4, target_modules="q_proj|v_proj|down_proj"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    adapted = _both(model, tokenizer, prompts, greedy=True)
    assert adapted["static"] == adapted["transformers"] != after["static"]


def test_stop_tokens_are_the_tokenizers_the_models_and_the_configured_ones(tiny_qwen2: Path):
    tokenizer, model = load_tokenizer(tiny_qwen2), _spread(load_causal_lm(tiny_qwen2, torch.device("cpu")))
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert stop_token_ids(model, tokenizer) == sorted({tokenizer.eos_token_id, endoftext})
    assert stop_token_ids(model, tokenizer, [5, 5]) == sorted({tokenizer.eos_token_id, endoftext, 5})
    prompts = [prompt_ids(tokenizer, "a longer prompt here")]
    free = generate(model, tokenizer, prompts, 12, greedy=True, engine="transformers", extra_stop_ids=())[0]
    stop = free[3]
    want = free[: free.index(stop) + 1]
    for engine in ("transformers", "static"):  # the fix: generate honoured only the tokenizer's eos before
        assert generate(model, tokenizer, prompts, 12, greedy=True, engine=engine, extra_stop_ids=[stop])[0] == want


def test_an_unsupported_architecture_names_the_setting():
    from vla_razor.hf_imports import import_transformers

    transformers = import_transformers()
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(ConfigError, match="sampling.engine"):
        check_static_supported(gpt2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph path needs a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graphs_match_teacher_forcing(tiny_llm: Path, dtype: torch.dtype):
    """On a GPU each decode step is a graph replay; bfloat16 log-probs agree with a bf16 forward to 0.05."""
    tokenizer, model = load_tokenizer(tiny_llm), _spread(load_causal_lm(tiny_llm, torch.device("cpu")))
    model.to("cuda", dtype)
    prompts = [prompt_ids(tokenizer, text) for text in TEXTS]
    greedy = _both(model, tokenizer, prompts, greedy=True)
    if dtype == torch.float32:
        assert greedy["static"] == greedy["transformers"]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts], device="cuda")
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device="cuda")
    made = static_generate(model, ids, mask, 12, stop_token_ids(model, tokenizer), tokenizer.pad_token_id)
    completions = made.completions()
    batch = TeacherForcing.pack(prompts, completions, tokenizer.pad_token_id, "cuda")
    with torch.no_grad():
        forced = token_logprobs(batch.logits(model), batch.targets, mask=batch.target_mask)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    for row, c in enumerate(completions):
        torch.testing.assert_close(
            made.logprobs[row, : len(c)], forced[row][batch.target_mask[row]], atol=tol, rtol=tol
        )
