"""The trainers' wiring of the core objectives on a tiny random Llama: micro-batching, weights, directions."""

from __future__ import annotations

import copy

import pytest
import torch

from vla_razor.core import grpo_loss, sft_loss, simpo_loss, token_logprobs
from vla_razor.llm.config import LLMConfig
from vla_razor.llm.sampling import TeacherForcing
from vla_razor.llm.tasks import ArithmeticTask
from vla_razor.llm.train import GRPO, Sequences, sft_micro_losses

SEQS = Sequences(
    prompts=[[10, 11, 12], [13, 14], [15, 16, 17, 18], [19]],
    completions=[[40, 41, 258], [42], [43, 44, 45, 46], [47, 48]],
)


def _grads(model, losses) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    for loss in losses:
        loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grads


def _full_batch(pad_id):
    return TeacherForcing.pack(SEQS.prompts, SEQS.completions, pad_id)


def test_sft_micro_batches_sum_to_the_full_batch_token_mean(tiny_loaded):
    tokenizer, model = tiny_loaded
    model = copy.deepcopy(model).train()
    full = _full_batch(tokenizer.pad_token_id)
    expected = sft_loss(full.logits(model), full.targets, full.target_mask)
    parts = list(sft_micro_losses(model, SEQS, micro=3, pad_id=tokenizer.pad_token_id, device=torch.device("cpu")))
    assert len(parts) == 2
    assert float(sum(parts)) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(
        _grads(model, parts), _grads(model, [sft_loss(full.logits(model), full.targets, full.target_mask)]), atol=1e-6
    )


def _grpo(model, tokenizer, **grpo) -> GRPO:
    cfg = LLMConfig()
    cfg.sampling.max_new_tokens = 8
    for key, value in grpo.items():
        setattr(cfg.grpo, key, value)
    cfg.grpo.optim.micro_batch_size = 3
    task = ArithmeticTask(1, 2, 4, 4, 0)
    return GRPO(cfg, task, tokenizer, model, model, torch.device("cpu"))


@pytest.mark.parametrize("loss_type", ["dr_grpo", "grpo", "bnpo"])
def test_grpo_micro_batches_give_the_full_batch_loss(tiny_loaded, loss_type):
    tokenizer, model = tiny_loaded
    model = copy.deepcopy(model).train()
    trainer = _grpo(model, tokenizer, loss_type=loss_type)
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0])
    tokens_total = sum(len(c) for c in SEQS.completions)
    parts = list(trainer.micro_losses(SEQS, adv, None, n_total=4, tokens_total=tokens_total))
    full = _full_batch(tokenizer.pad_token_id)
    expected = grpo_loss(full.logits(model), full.targets, full.target_mask, adv, loss_type=loss_type, max_tokens=8)
    assert float(sum(parts)) == pytest.approx(float(expected), abs=1e-6)
    assert torch.allclose(_grads(model, parts), _grads(model, [expected]), atol=1e-6)


def test_grpo_at_a_temperature_scores_samples_with_tempered_log_probs(tiny_loaded):
    """Rollouts drawn at sampling.temperature T come from softmax(logits / T): the loss, its gradient and the old
    log-probs of the clipping ratio are those of that distribution (at T = 1 nothing changes)."""
    tokenizer, model = tiny_loaded
    model = copy.deepcopy(model).train()
    cfg = _grpo(model, tokenizer, mu=2).cfg
    cfg.sampling.temperature = 0.5
    cfg.grpo.optim.micro_batch_size = 4  # one micro batch: the full batch's layout
    trainer = GRPO(cfg, ArithmeticTask(1, 2, 4, 4, 0), tokenizer, model, model, torch.device("cpu"))
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0])
    full = _full_batch(tokenizer.pad_token_id)
    with torch.no_grad():
        tempered_old = token_logprobs(full.logits(model) / 0.5, full.targets, mask=full.target_mask)
    [old] = trainer.old_logprobs(SEQS)
    assert torch.allclose(old[full.target_mask], tempered_old[full.target_mask], atol=1e-5)
    shifted = old + 0.3 * full.target_mask  # the policy moved since the rollout: ratios != 1, clipping in play
    parts = list(trainer.micro_losses(SEQS, adv, [shifted], n_total=4, tokens_total=11))
    expected = grpo_loss(
        full.logits(model) / 0.5, full.targets, full.target_mask, adv, shifted, loss_type="dr_grpo", max_tokens=8
    )
    untempered = grpo_loss(
        full.logits(model), full.targets, full.target_mask, adv, shifted, loss_type="dr_grpo", max_tokens=8
    )
    assert float(sum(parts)) == pytest.approx(float(expected), abs=1e-6)
    assert abs(float(expected) - float(untempered)) > 1e-3, "the test needs the temperature to matter"
    assert torch.allclose(_grads(model, parts), _grads(model, [expected]), atol=1e-6)


def test_a_grpo_update_moves_probability_towards_rewarded_samples(tiny_loaded):
    tokenizer, model = tiny_loaded
    model = copy.deepcopy(model).train()
    trainer = _grpo(model, tokenizer, mu=2)
    full = _full_batch(tokenizer.pad_token_id)

    def seq_logp() -> torch.Tensor:
        with torch.no_grad():
            return token_logprobs(full.logits(model), full.targets, mask=full.target_mask).sum(-1)

    before = seq_logp()
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    old = trainer.old_logprobs(SEQS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    from vla_razor.llm.train import take_update

    for _ in range(2):  # mu = 2: the second pass is clipped against the same old log-probs
        take_update(model, optimizer, trainer.micro_losses(SEQS, adv, old, 4, 11), max_grad_norm=1.0)
    change = seq_logp() - before
    assert bool((change[adv > 0] > 0).all()) and bool((change[adv < 0] < 0).all())


def test_one_zero_advantages_have_no_negatives_and_grpo_normalizes_per_group(tiny_loaded):
    tokenizer, model = tiny_loaded
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    one_zero = _grpo(model, tokenizer)
    one_zero.one_zero = True
    assert one_zero.advantages(rewards, groups).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    adv = _grpo(model, tokenizer).advantages(rewards, groups)
    assert adv[0] > 0 > adv[1] and adv[3] < 0 < adv[4]
    assert float(adv[:3].sum()) == pytest.approx(0.0, abs=1e-5) and float(adv[:3].std(unbiased=False)) == pytest.approx(
        1.0, abs=1e-4
    )


def test_simpo_loss_of_the_pair_batches(tiny_loaded):
    """SimPO's micro-batched loss over pairs equals the core loss on the whole batch of pairs."""
    from vla_razor.llm.sampling import prompt_ids, target_ids
    from vla_razor.llm.tasks import Example
    from vla_razor.llm.train import SimPO

    tokenizer, model = tiny_loaded
    model = copy.deepcopy(model).train()
    cfg = LLMConfig()
    cfg.simpo.optim.micro_batch_size = 2
    examples = [Example(f"e{i}", f"Compute {i} + 1.", str(i + 1), f"The answer is {i + 1}.") for i in range(3)]
    pairs = [(ex, tokenizer("The answer is 0.", add_special_tokens=False).input_ids) for ex in examples]
    trainer = SimPO(cfg, ArithmeticTask(1, 2, 1, 1, 0), tokenizer, model, model, torch.device("cpu"), pairs=pairs)
    parts = list(trainer.micro_losses(pairs))
    prompts = [prompt_ids(tokenizer, ex.prompt) for ex in examples]
    win = TeacherForcing.pack(prompts, [target_ids(tokenizer, ex.solution) for ex in examples], tokenizer.pad_token_id)
    lose = TeacherForcing.pack(prompts, [p[1] for p in pairs], tokenizer.pad_token_id)
    expected = simpo_loss(
        win.logits(model),
        win.targets,
        win.target_mask,
        lose.logits(model),
        lose.targets,
        lose.target_mask,
        margin=1.0,
        beta=1.0,
    )
    assert float(sum(parts)) == pytest.approx(float(expected), rel=1e-5)
