import pytest
import torch

from tests.policies.conftest import tiny_config
from vla_razor.policies.openvla import LoraOptions

pytest.importorskip("peft")


def test_lora_on_tiny_model(contexts):
    from vla_razor.lora import apply_lora, merge_lora
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    policy = OpenVLAPolicy.from_config(tiny_config(), seed=1)
    batch = policy.encode(*contexts)
    tokens = policy.vocab_ids[torch.arange(7).repeat(3, 1)]
    with torch.no_grad():
        before = policy.action_logits(batch, tokens)
    apply_lora(policy.model, LoraOptions(enabled=True, r=4, alpha=8))
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("featurizer" in n for n in trainable) and any("language_model" in n for n in trainable)
    with torch.no_grad():
        torch.testing.assert_close(policy.action_logits(batch, tokens), before)  # lora_B starts at zero
    optimizer = torch.optim.SGD([p for p in policy.model.parameters() if p.requires_grad], lr=0.5)
    loss = -policy.token_logprobs(batch, tokens).sum()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = policy.action_logits(batch, tokens)
    assert (after - before).abs().max() > 1e-4
    merge_lora(policy.model)
    assert not any("lora_" in n for n, _ in policy.model.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(policy.action_logits(batch, tokens), after, atol=1e-5, rtol=1e-5)
