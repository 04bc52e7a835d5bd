import numpy as np
import pytest
import torch

from vla_razor.policies.openvla.processor_openvla import build_prompt


def test_prompt():
    assert build_prompt("pick coke can") == "In: What action should the robot take to pick coke can?\nOut:"


def test_left_padding_and_pixels(policy, contexts):
    batch = policy.encode(*contexts)
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and not mask[:, 0].all()  # left padded: ragged on the left
    assert batch["pixel_values"].shape == (3, 6, 28, 28)  # two ViTs, stacked on channels


def test_batched_generation_equals_per_example(policy, contexts):
    images, instructions = contexts
    batched = policy.sample(policy.encode(images, instructions), temperature=0)
    for i in range(len(images)):
        alone = policy.sample(policy.encode([images[i]], [instructions[i]]), temperature=0)
        assert torch.equal(alone.tokens[0], batched.tokens[i])
        torch.testing.assert_close(alone.logits[0], batched.logits[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(alone.logprobs[0], batched.logprobs[i], atol=1e-4, rtol=1e-4)
    assert batched.actions.shape == (3, 7)
    assert np.all(np.abs(batched.normalized) <= 1)


def test_generation_logits_equal_teacher_forcing(policy, contexts):
    batch = policy.encode(*contexts)
    gen = torch.Generator().manual_seed(0)
    sample = policy.sample(batch, temperature=1.0, generator=gen)
    ids = set(policy.vocab_ids.tolist())
    assert all(t in ids for t in sample.tokens.flatten().tolist())
    with torch.no_grad():
        forced = policy.action_logits(batch, sample.tokens)
        logp = policy.token_logprobs(batch, sample.tokens)
    torch.testing.assert_close(forced, sample.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logp, sample.logprobs, atol=1e-4, rtol=1e-4)
    again = policy.sample(batch, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, sample.tokens)


def test_teacher_forced_logits_have_gradients(policy, contexts):
    batch = policy.encode(*contexts)
    tokens = policy.vocab_ids[torch.randint(0, 256, (3, 7), generator=torch.Generator().manual_seed(1))]
    logits = policy.action_logits(batch, tokens)
    assert logits.shape == (3, 7, 256) and logits.requires_grad


def test_yaml_configs_are_the_presets():
    from pathlib import Path

    from vla_razor.config import load_config
    from vla_razor.policies.openvla import OpenVLAConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    assert load_config(OpenVLAConfig, root / "policy_tiny.yaml") == OpenVLAConfig.tiny()
    assert load_config(OpenVLAConfig, root / "policy_openvla_7b.yaml") == OpenVLAConfig.openvla_7b()
    lora = load_config(OpenVLAConfig, root / "policy_tiny.yaml", {"lora.enabled": True, "lora.r": 8})
    assert lora.lora.enabled and lora.lora.r == 8


def test_row_noise_sampling_ignores_the_rest_of_the_batch(policy, contexts):
    """With per-row uniform noise, a row samples the same tokens alone as in any batch (what parallel rollouts,
    whose batches depend on worker timing, need to be reproducible)."""
    batch = policy.encode(*contexts)
    noise = torch.rand((3, policy.action_dim, 256), generator=torch.Generator().manual_seed(3))
    together = policy.sample(batch, temperature=1.0, uniform_noise=noise).tokens
    images, instructions = contexts
    for i in range(3):
        alone = policy.sample(policy.encode([images[i]], [instructions[i]]), temperature=1.0, uniform_noise=noise[i : i + 1])
        assert torch.equal(alone.tokens[0], together[i])
    swapped = policy.sample(policy.encode(images[::-1], instructions[::-1]), temperature=1.0, uniform_noise=noise.flip(0))
    assert torch.equal(swapped.tokens.flip(0), together)
    with pytest.raises(ValueError, match="uniform_noise has shape"):
        policy.sample(batch, temperature=1.0, uniform_noise=noise[:, :3])


def test_row_noise_sampling_follows_the_policy_distribution(policy, contexts):
    """Gumbel-max over the bins: the first action token's frequencies over 2,000 draws match softmax(logits / T)
    (T = 0.1 makes this random policy's distribution peaked, far from uniform), compared over its 10 likeliest
    bins and the rest (per-bin frequencies of its 130-bin tail are too noisy for 2,000 draws)."""
    images, instructions = contexts
    n, temperature = 2000, 0.1
    batch = policy.encode([images[0]] * n, [instructions[0]] * n)
    noise = torch.rand((n, policy.action_dim, 256), generator=torch.Generator().manual_seed(4))
    sample = policy.sample(batch, temperature=temperature, uniform_noise=noise)
    probs = torch.softmax(sample.logits[0, 0] / temperature, dim=-1)
    freqs = torch.bincount(policy.tokenizer.bin_index(sample.tokens[:, 0]), minlength=256).float() / n
    assert 0.5 * float((probs - 1 / 256).abs().sum()) > 0.5, "the test needs a distribution far from uniform"
    top = probs.argsort(descending=True)[:10]

    def groups(p: torch.Tensor) -> torch.Tensor:
        return torch.cat([p[top], (1 - p[top].sum()).reshape(1)])

    assert 0.5 * float((groups(freqs) - groups(probs)).abs().sum()) < 0.06  # total variation; ~0.02 expected
