"""Parallel action decoding (config.action_decoding = "parallel", OpenVLA-OFT's with discrete tokens): all D action
tokens from one forward pass over the prompt and D query ids, each dimension independent given the context."""

from __future__ import annotations

import json

import pytest
import torch

from tests.policies.conftest import tiny_config
from vla_razor.policies.openvla import OpenVLAConfig, chain_rule_kl_terms
from vla_razor.policies.openvla.export import ExportError, check_exportable
from vla_razor.policies.openvla.policy import OpenVLAPolicy


@pytest.fixture(scope="module")
def parallel_policy() -> OpenVLAPolicy:
    torch.set_num_threads(1)
    return OpenVLAPolicy.from_config(tiny_config(action_decoding="parallel"), seed=0)


def test_logits_depend_on_the_context_only_and_sampling_agrees_with_them(parallel_policy, contexts) -> None:
    policy = parallel_policy
    batch = policy.encode(*contexts)
    greedy = policy.sample(batch, temperature=0)
    with torch.no_grad():
        forced = policy.action_logits(batch, greedy.tokens)
        shuffled = policy.action_logits(batch, greedy.tokens.flip(1))
        logp = policy.token_logprobs(batch, greedy.tokens)
    assert torch.equal(forced, shuffled), "a dimension's logits must not depend on the other dimensions' tokens"
    torch.testing.assert_close(forced, greedy.logits)
    assert torch.equal(policy.bin_index(greedy.tokens), forced.argmax(dim=-1))
    torch.testing.assert_close(logp, greedy.logprobs)
    assert not torch.equal(forced[:, 0], forced[:, 1]), "each dimension has its own query, so its own logits"
    # the queries' tokens are never action tokens or text: the pad rows after the pad id
    queries = policy.action_query_ids(policy.action_dim)
    assert queries.tolist() == list(range(513, 520)) and not set(queries.tolist()) & set(policy.vocab_ids.tolist())


def test_left_padded_rows_and_row_noise_give_each_row_what_it_gets_alone(parallel_policy, contexts) -> None:
    policy = parallel_policy
    images, instructions = contexts
    batch = policy.encode(images, instructions)
    assert not batch["attention_mask"][:, 0].all(), "the test needs rows of different lengths"
    noise = torch.rand((3, policy.action_dim, 256), generator=torch.Generator().manual_seed(3))
    together = policy.sample(batch, temperature=1.0, uniform_noise=noise)
    for i in range(3):
        alone = policy.sample(
            policy.encode([images[i]], [instructions[i]]), temperature=1.0, uniform_noise=noise[i : i + 1]
        )
        assert torch.equal(alone.tokens[0], together.tokens[i])
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="uniform_noise has shape"):
        policy.sample(batch, temperature=1.0, uniform_noise=noise[:, :3])
    seeded = [policy.sample(batch, 1.0, generator=torch.Generator().manual_seed(5)).tokens for _ in range(2)]
    assert torch.equal(*seeded)


def test_the_chain_rule_kl_is_the_same_along_any_prefix(contexts) -> None:
    """Independent dimensions: KL of the whole action = sum of the per-dimension KLs, whatever prefix the
    teacher forcing uses (for an autoregressive policy it depends on it: tests/policies/test_kl.py)."""
    p = OpenVLAPolicy.from_config(tiny_config(action_decoding="parallel"), seed=0)
    q = OpenVLAPolicy.from_config(tiny_config(action_decoding="parallel"), seed=1)
    batch = p.encode(*contexts)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        kls = [
            chain_rule_kl_terms(p.action_logits(batch, t), q.action_logits(batch, t))
            for t in (p.vocab_ids[torch.randint(0, 256, (3, 7), generator=g)] for _ in range(2))
        ]
    torch.testing.assert_close(kls[0], kls[1])
    assert bool((kls[0] > 0).all())


def test_supervised_updates_teach_every_dimension_its_own_target(contexts) -> None:
    """The queries train: a few updates on one context make greedy decoding give a different target per
    dimension (the one forward pass must tell the dimensions apart)."""
    torch.manual_seed(0)
    policy = OpenVLAPolicy.from_config(tiny_config(action_decoding="parallel"), seed=0)
    images, instructions = contexts
    batch = policy.encode(images[:1], instructions[:1])
    targets = policy.vocab_ids[torch.tensor([[3, 250, 17, 128, 64, 200, 9]])]
    bins = policy.bin_index(targets)
    optim = torch.optim.AdamW(policy.model.parameters(), lr=3e-3)
    before = policy.sample(batch, temperature=0).tokens
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(policy.action_logits(batch, targets)[0], bins[0])
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert not torch.equal(before, targets)
    assert torch.equal(policy.sample(batch, temperature=0).tokens, targets)


def test_saved_and_loaded_with_its_decoding_and_patch_size(tmp_path, contexts) -> None:
    config = OpenVLAConfig.tiny(vision_dim=32, vision_depth=2, hidden=64, layers=2, patch_size=28)
    config.action_decoding = "parallel"
    policy = OpenVLAPolicy.from_config(config, seed=0)
    assert policy.model.num_patches == 16  # 112 px / 28
    policy.save_pretrained(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["vla_razor"]["action_decoding"] == "parallel"
    assert saved["vla_razor"]["timm_kwargs"][0]["patch_size"] == 28
    loaded = OpenVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.parallel and loaded.model.num_patches == 16
    batch = policy.encode(*contexts)
    assert torch.equal(policy.sample(batch, 0).tokens, loaded.sample(loaded.encode(*contexts), 0).tokens)


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="action_decoding must be autoregressive or parallel"):
        tiny_config(action_decoding="chunked").validate()
    small = OpenVLAPolicy.from_config(tiny_config(action_decoding="parallel"), seed=0)
    with pytest.raises(ValueError, match="parallel decoding needs 70 embedding rows after pad_token_id 512"):
        small.action_query_ids(70)
    with pytest.raises(ExportError, match="action_decoding: parallel"):
        check_exportable(OpenVLAConfig.openvla_7b(action_decoding="parallel"))
    check_exportable(OpenVLAConfig.openvla_7b())


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_the_trimmed_forward_equals_transformers_full_forward(contexts, kv_heads) -> None:
    """parallel.query_logits computes the last layer at the query rows only: the logits equal those of
    transformers' whole forward at those positions, for left-padded rows and grouped-query attention."""
    from vla_razor.policies.openvla.parallel import query_logits

    config = tiny_config(action_decoding="parallel", hidden=128, layers=3)
    if kv_heads is not None:
        config.text_config["num_key_value_heads"] = kv_heads
    policy = OpenVLAPolicy.from_config(config, seed=0)
    batch = policy.encode(*contexts)
    queries = policy.action_query_ids(7).expand(3, 7)
    input_ids = torch.cat([batch["input_ids"], queries], dim=1)
    mask = torch.cat([batch["attention_mask"], torch.ones_like(queries)], dim=1)
    embeds, full_mask, positions = policy.model.multimodal_inputs(input_ids, mask, batch["pixel_values"])
    lm = policy.model.language_model
    reference = lm(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions).logits[:, -7:]
    ours = query_logits(lm, embeds, full_mask, positions, 7)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    images, instructions = contexts
    alone = policy.encode(images[:1], instructions[:1])  # unpadded: the early layers take the causal kernel
    ids = torch.cat([alone["input_ids"], queries[:1]], dim=1)
    e1, m1, p1 = policy.model.multimodal_inputs(ids, torch.ones_like(ids), alone["pixel_values"])
    reference = lm(inputs_embeds=e1, attention_mask=m1, position_ids=p1).logits[:, -7:]
    torch.testing.assert_close(query_logits(lm, e1, m1, p1, 7), reference, atol=1e-5, rtol=1e-5)


def test_the_prompt_is_the_policy_s_own_and_the_fast_config_is_its_preset(tmp_path) -> None:
    from pathlib import Path

    from vla_razor.config import load_config

    policy = OpenVLAPolicy.from_config(tiny_config(prompt_template="{instruction}"), seed=0)
    assert policy.processor.prompt_ids("pick coke can") == [1] + [3 + b for b in b"pick coke can"]
    policy.save_pretrained(tmp_path / "p")
    assert OpenVLAPolicy.from_pretrained(tmp_path / "p").processor.prompt_ids("close drawer")[1:] == [
        3 + b for b in b"close drawer"
    ]
    openvla = OpenVLAPolicy.from_config(tiny_config(), seed=0).processor.prompt_ids("pick coke can")
    assert len(openvla) == 61  # BOS + the 60 bytes of "In: What action should the robot take to pick coke can?\nOut:"
    with pytest.raises(ValueError, match="prompt_template must contain"):
        tiny_config(prompt_template="pick").validate()
    with pytest.raises(ExportError, match="prompt_template"):
        check_exportable(OpenVLAConfig.openvla_7b(prompt_template="{instruction}"))
    fast = load_config(OpenVLAConfig, Path(__file__).resolve().parents[2] / "configs" / "policy_tiny_fast.yaml")
    assert fast == OpenVLAConfig.tiny(
        hidden=128, layers=2, patch_size=28, action_decoding="parallel", prompt_template="{instruction}"
    )


SHARDED = """
import sys, numpy as np, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from vla_razor.distributed import shard_model
from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.parallel import is_sharded
from vla_razor.policies.openvla.policy import OpenVLAPolicy
dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{sys.argv[1]}")
config = OpenVLAConfig.tiny(vision_dim=32, vision_depth=2, hidden=64, layers=2, action_decoding="parallel")
policy = OpenVLAPolicy.from_config(config, seed=0)
rng = np.random.default_rng(0)
batch = policy.encode([rng.integers(0, 256, (36, 44, 3), dtype=np.uint8) for _ in range(2)], ["pick coke can", "x"])
tokens = policy.vocab_ids[:7].expand(2, 7)
with torch.no_grad():
    plain = policy.action_logits(batch, tokens)
shard_model(policy.model, init_device_mesh("cpu", (1,)))
assert is_sharded(policy.model.language_model)
with torch.no_grad():
    torch.testing.assert_close(policy.action_logits(batch, tokens), plain, atol=1e-5, rtol=1e-5)
dist.destroy_process_group()
print("same logits")
"""


def test_a_sharded_policy_decodes_in_parallel_through_transformers_forward() -> None:
    """Under FSDP2 (vla_razor/distributed.py's shard_model) a layer gathers its weights in its own forward, which the
    trimmed pass skips: the sharded policy takes transformers' forward and gives the unsharded logits (one rank,
    gloo, in its own process)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-c", SHARDED, str(port)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0 and "same logits" in result.stdout, result.stdout + result.stderr[-3000:]
