from __future__ import annotations

import torch

from vla_razor.llm.sampling import TeacherForcing, generate, prompt_ids, target_ids


def test_pack_aligns_targets_with_the_completion_tokens():
    batch = TeacherForcing.pack([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 1, 2], [8, 3, 4, 9, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    scored = [row[mask].tolist() for row, mask in zip(batch.targets, batch.target_mask)]
    assert scored == [[1, 2], [3, 4, 9]]


def test_chat_prompt_and_targets_end_with_the_stop_token(tiny_loaded):
    tokenizer, _model = tiny_loaded
    ids = prompt_ids(tokenizer, "Compute 1 + 2.")
    assert tokenizer.decode(ids) == "<|im_start|>user\nCompute 1 + 2.<|im_end|>\n<|im_start|>assistant\n"
    target = target_ids(tokenizer, "3")
    assert target[-1] == tokenizer.eos_token_id and tokenizer.decode(target[:-1]) == "3"


def test_batched_greedy_generation_is_the_argmax_under_teacher_forcing(tiny_loaded):
    """Left-padded batched generate and right-padded scoring must see the same contexts."""
    tokenizer, model = tiny_loaded
    prompts = [prompt_ids(tokenizer, text) for text in ("a", "a longer prompt here", "mid size")]
    completions = generate(model, tokenizer, prompts, max_new_tokens=6, greedy=True, batch_size=3)
    assert all(1 <= len(c) <= 6 for c in completions)
    batch = TeacherForcing.pack(prompts, completions, tokenizer.pad_token_id)
    with torch.no_grad():
        predicted = batch.logits(model).argmax(-1)
    assert torch.equal(predicted[batch.target_mask], batch.targets[batch.target_mask])
    alone = generate(model, tokenizer, prompts[1:2], max_new_tokens=6, greedy=True, batch_size=1)
    assert alone[0] == completions[1]


def test_sampling_is_reproducible_from_the_seed_and_varies_without_it(tiny_loaded):
    tokenizer, model = tiny_loaded
    prompts = [prompt_ids(tokenizer, "x")] * 4
    torch.manual_seed(1)
    first = generate(model, tokenizer, prompts, max_new_tokens=8, temperature=1.0)
    torch.manual_seed(1)
    assert generate(model, tokenizer, prompts, max_new_tokens=8, temperature=1.0) == first
    assert len({tuple(c) for c in first}) > 1  # a random model's samples differ within a group
