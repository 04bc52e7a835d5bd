"""A second model family: a tiny random Qwen2 (Qwen2.5's architecture, tokenizer class and chat template) through
`llm train` (SFT, GRPO), the forward KL and `llm eval`, with tied embeddings (as Qwen2.5-3B) and untied (as 7B),
under configs/llm_paper.yaml (the Qwen2.5-3B path: bfloat16, gradient checkpointing) at a tiny size on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from tests.conftest import REPO
from tests.llm.conftest import llm_flags
from vla_razor.cli.main import main
from vla_razor.llm.models import QWEN2_SYSTEM, load_causal_lm, load_tokenizer
from vla_razor.llm.sampling import generate, prompt_ids, target_ids


def test_qwen2_prompts_and_targets_follow_its_chat_template(tiny_qwen2):
    tokenizer = load_tokenizer(tiny_qwen2)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.decode(prompt_ids(tokenizer, "Compute 3 + 4.")) == (
        f"<|im_start|>system\n{QWEN2_SYSTEM}<|im_end|>\n<|im_start|>user\nCompute 3 + 4.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert target_ids(tokenizer, "7")[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")  # a reply ends a turn
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.bos_token is None


def test_qwen2_samples_past_its_tokenizer_decode(tiny_qwen2):
    """Qwen2.5's embedding has rows no token names (151,936 for 151,665 tokens); a random model samples them, and
    their completions still decode (to the text of the named tokens) for the rewards."""
    tokenizer, model = load_tokenizer(tiny_qwen2), load_causal_lm(tiny_qwen2, torch.device("cpu"))
    assert model.config.vocab_size > len(tokenizer)
    torch.manual_seed(0)
    completions = generate(model, tokenizer, [prompt_ids(tokenizer, "Compute 3 + 4.")] * 8, max_new_tokens=12)
    assert any(i >= len(tokenizer) for c in completions for i in c)
    named = [[i for i in c if i < len(tokenizer)] for c in completions]  # the unnamed rows decode to nothing
    assert tokenizer.batch_decode(completions, skip_special_tokens=True) == tokenizer.batch_decode(
        named, skip_special_tokens=True
    )


def test_qwen2_trains_saves_and_evaluates(tiny_qwen2, tmp_path):
    flags = [
        "--config",
        str(REPO / "configs" / "llm_paper.yaml"),
        "--device",
        "cpu",
        "--task.name",
        "arithmetic",
        *llm_flags(tiny_qwen2, tmp_path, "qwen2", sft_epochs=2),
    ]
    for method in ("sft", "grpo"):
        assert main(["llm", "train", *flags, "--method", method]) == 0
    runs = tmp_path / "qwen2" / "runs"
    grpo = [json.loads(line) for line in (runs / "grpo_lr0.003_mu2_g4" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in grpo if m["name"] == "reward"] == [0, 1, 2, 3]
    assert (runs / "grpo_lr0.003_mu2_g4" / "model" / "config.json").is_file()
    run = runs / "sft_lr0.003_bs4_ep2"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["predictors"]["forward_kl"] > 0.01  # SFT at lr 3e-3 moves the model off the base

    base, tuned = (load_causal_lm(path, torch.device("cpu"), "bfloat16") for path in (tiny_qwen2, run / "model"))
    assert type(tuned).__name__ == "Qwen2ForCausalLM" and tuned.dtype == torch.bfloat16
    tied = base.config.tie_word_embeddings
    assert tuned.config.tie_word_embeddings == tied
    with safe_open(str(run / "model" / "model.safetensors"), framework="pt") as f:
        assert ("lm_head.weight" in f.keys()) == (not tied)
    head, embed = tuned.get_output_embeddings().weight, tuned.get_input_embeddings().weight
    assert torch.equal(head, embed) == tied
    assert not torch.equal(head, base.get_output_embeddings().weight)
    q_bias = [m.model.layers[0].self_attn.q_proj.bias for m in (base, tuned)]
    assert not torch.equal(*q_bias)  # the q / k / v biases train and are saved

    out = tmp_path / "eval.json"
    assert main(["llm", "eval", *flags, "--model-dir", str(run / "model"), "--out", str(out)]) == 0
    reloaded = json.loads(out.read_text())["model"]
    assert reloaded["forward_kl"] == pytest.approx(summary["predictors"]["forward_kl"], rel=1e-4)
    assert reloaded["new_task"] == pytest.approx(summary["new_task"])
