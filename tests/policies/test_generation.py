import numpy as np
import pytest
import torch

from tests.policies.conftest import tiny_config
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
        alone = policy.sample(
            policy.encode([images[i]], [instructions[i]]), temperature=1.0, uniform_noise=noise[i : i + 1]
        )
        assert torch.equal(alone.tokens[0], together[i])
    swapped = policy.sample(
        policy.encode(images[::-1], instructions[::-1]), temperature=1.0, uniform_noise=noise.flip(0)
    )
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


def _engines_agree(policy, batch, **kw) -> None:
    """The static engine, with and without fused q / k / v and gate / up products, against transformers'."""
    eager = policy.sample(batch, engine="eager", **kw)
    for fused in (True, False):
        static = policy.sample(batch, engine="static", fused_projections=fused, **kw)
        assert torch.equal(static.tokens, eager.tokens)
        torch.testing.assert_close(static.logits, eager.logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(static.logprobs, eager.logprobs, atol=1e-4, rtol=1e-4)


def test_static_cache_engine_equals_transformers_generation(policy, contexts):
    """The static-K/V decoder (the CUDA-graph engine's computation) gives transformers' own tokens, logits and
    log-probs: left-padded rows, greedy and sampled, and grouped-query attention."""
    batch = policy.encode(*contexts)
    assert not bool(batch["attention_mask"].all())  # padded rows take the masked prefill
    _engines_agree(policy, batch, temperature=0)
    noise = torch.rand((3, policy.action_dim, 256), generator=torch.Generator().manual_seed(5))
    _engines_agree(policy, batch, temperature=1.0, uniform_noise=noise)
    same = policy.encode([contexts[0][0]] * 2, [contexts[1][0]] * 2)
    assert bool(same["attention_mask"].all())  # no padding: causal (flash) prefill
    _engines_agree(policy, same, temperature=0)

    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    gqa = OpenVLAPolicy.from_config(_gqa_config(), seed=0)
    _engines_agree(gqa, gqa.encode(*contexts), temperature=0)


def _gqa_config():
    cfg = tiny_config(hidden=128)
    cfg.text_config = {**cfg.text_config, "num_attention_heads": 4, "num_key_value_heads": 2}
    return cfg


def test_static_decoder_is_reused_and_follows_the_weights(policy, contexts):
    """One decoder serves prompts of nearby lengths; in-place weight updates (training between rollouts) show
    in its next generation, and replaced parameters (a new model state) make a new one."""
    from vla_razor.policies.openvla import generation

    images, instructions = contexts
    first = policy.encode([images[0]], [instructions[0]])

    def bucket(batch) -> int:
        length = batch["input_ids"].shape[1] + policy.model.num_patches + policy.action_dim - 1
        return -(-length // generation.LENGTH_BUCKET)

    seconds = [policy.encode([images[1]], [text]) for text in (instructions[0] + "s", instructions[0][:-1])]
    second = next(b for b in seconds if bucket(b) == bucket(first))  # +1 or -1 byte: one of them shares the bucket
    assert first["input_ids"].shape[1] != second["input_ids"].shape[1]
    policy.sample(first, temperature=0, engine="static")
    decoders = generation.DECODERS.decoders[policy.model]
    made = dict(decoders)
    policy.sample(second, temperature=0, engine="static")
    assert decoders == made  # same length bucket: the same decoder
    head = policy.model.language_model.lm_head.weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head.mul_(-1.0)
        eager, static = (policy.sample(first, temperature=0, engine=e) for e in ("eager", "static"))
        assert torch.equal(static.tokens, eager.tokens)
        torch.testing.assert_close(static.logits, eager.logits, atol=1e-4, rtol=1e-4)
        assert dict(decoders) == made
    finally:
        with torch.no_grad():
            head.copy_(saved)
    lm = policy.model.language_model
    lm.lm_head.weight = torch.nn.Parameter(saved.clone())  # a replaced parameter: new storage
    policy.sample(first, temperature=0, engine="static")
    key = (1, bucket(first) * generation.LENGTH_BUCKET, False, True)  # batch, length, graph, fused
    assert decoders[key] is not made[key]


def test_row_buckets():
    from vla_razor.policies.openvla.generation import row_bucket

    rows = (1, 2, 3, 5, 8, 9, 14, 16, 17, 33, 64, 100)
    assert [row_bucket(n) for n in rows] == [1, 2, 4, 8, 8, 16, 16, 16, 32, 48, 64, 112]
    with pytest.raises(ValueError, match="at least one row"):
        row_bucket(0)


@pytest.mark.parametrize("rows", [3, 5])
def test_padded_rows_change_no_row(policy, contexts, rows):
    """A batch run at its row bucket (what the graph engine does, so a rollout's changing batch sizes meet a few
    captured graphs) gives every real row the tokens, logits and log-probs it gets unpadded: greedy, with per-row
    noise and with one generator stream; and the decoder is the bucket's."""
    from vla_razor.policies.openvla import generation

    images, instructions = contexts
    batch = policy.encode([images[i % 3] for i in range(rows)], [instructions[i % 3][: 20 - i] for i in range(rows)])
    noise = torch.rand((rows, policy.action_dim, 256), generator=torch.Generator().manual_seed(5))

    def generate(pad: bool, **kw):
        inputs = (batch["input_ids"], batch["attention_mask"], batch["pixel_values"], policy.vocab_ids)
        return generation.generate_action_tokens(
            policy.model, *inputs, policy.action_dim, engine="static", pad_rows=pad, **kw
        )

    for kw in ({"temperature": 0.0}, {"temperature": 1.0, "uniform_noise": noise}):
        plain, padded = generate(False, **kw), generate(True, **kw)
        assert padded.tokens.shape == (rows, policy.action_dim)
        assert torch.equal(padded.tokens, plain.tokens)
        torch.testing.assert_close(padded.logits, plain.logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(padded.logprobs, plain.logprobs, atol=1e-4, rtol=1e-4)
    streams = [generate(pad, temperature=1.0, generator=torch.Generator().manual_seed(9)) for pad in (False, True)]
    assert torch.equal(streams[0].tokens, streams[1].tokens)  # the padded rows draw nothing from the stream
    assert list(generation.DECODERS.decoders[policy.model])[-1][0] == generation.row_bucket(rows)


def test_static_cache_engine_with_lora_adapters(contexts):
    """LoRA-wrapped projections (non-zero adapters) go through the static decoder like plain ones."""
    from vla_razor.lora import LoraOptions
    from vla_razor.lora import apply_lora
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    policy = OpenVLAPolicy.from_config(tiny_config(), seed=0)
    policy.model = apply_lora(
        policy.model, LoraOptions(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="language")
    )
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    plain = OpenVLAPolicy.from_config(tiny_config(), seed=0)
    batch = policy.encode(*contexts)
    assert not torch.allclose(policy.sample(batch, temperature=0).logits, plain.sample(batch, temperature=0).logits)
    _engines_agree(policy, batch, temperature=0)
    fused = fused_copies(policy)
    assert all(p is not None for p in fused.qkv + fused.gate_up)  # the adapters are folded, not bypassed
    with torch.no_grad():  # an adapter update in place (what a LoRA optimizer step does)
        for name, p in policy.model.named_parameters():
            if "lora_A" in name:
                p.mul_(-1.5)
    _engines_agree(policy, batch, temperature=0)


def fused_copies(policy):
    from vla_razor.policies.static_decoder import fused_projections

    return fused_projections(policy.model.language_model)


def test_fused_projections_follow_training(contexts):
    """The fused q / k / v and gate / up copies stay equal to the layers' weights: after AdamW steps (foreach and
    fused kernels: the fused one bumps no version counter), after load_state_dict, after a parameter is replaced,
    and after a step on LoRA adapters; each time the static engine's tokens and logits equal transformers'."""
    from vla_razor.lora import LoraOptions, apply_lora
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    policy = OpenVLAPolicy.from_config(tiny_config(), seed=0)
    batch = policy.encode(*contexts)
    _engines_agree(policy, batch, temperature=0)
    copies = fused_copies(policy)
    buffer = copies.qkv[0].weight
    targets = policy.vocab_ids[torch.randint(0, 256, (3, 7), generator=torch.Generator().manual_seed(2))]

    def train_step(optimizer) -> None:
        optimizer.zero_grad()
        logits = policy.action_logits(batch, targets)
        (logits.logsumexp(-1).mean() - logits.mean()).backward()
        optimizer.step()

    for kind in ({"foreach": True}, {"fused": True}):
        trainable = [p for p in policy.model.parameters() if p.requires_grad]
        train_step(torch.optim.AdamW(trainable, lr=0.05, **kind))
        _engines_agree(policy, batch, temperature=0)
        attn = policy.model.language_model.model.layers[0].self_attn
        expected = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        assert torch.equal(copies.qkv[0].weight, expected)
        assert copies.qkv[0].weight is buffer  # rewritten in place: captured CUDA graphs stay valid
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in policy.model.state_dict().items() if "mlp" in k}
    policy.model.load_state_dict(state, strict=False)
    _engines_agree(policy, batch, temperature=0)
    up = policy.model.language_model.model.layers[1].mlp.up_proj
    up.weight = torch.nn.Parameter(torch.randn_like(up.weight) * 0.2)  # replaced: new storage, new buffers
    _engines_agree(policy, batch, temperature=0)
    assert torch.equal(copies.gate_up[1].weight[up.weight.shape[0] :], up.weight)
    policy.model = apply_lora(policy.model, LoraOptions(enabled=True, r=4, alpha=8, target_modules="language"))
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    _engines_agree(policy, batch, temperature=0)
    train_step(torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=0.05))
    _engines_agree(policy, batch, temperature=0)
    assert all(p is not None for p in copies.qkv + copies.gate_up)
    policy.merge_adapters()  # folded into the weights: the copies must not fold them a second time
    _engines_agree(policy, batch, temperature=0)


def test_lora_dropout_keeps_the_layers_own_projections(contexts):
    """An adapter with dropout cannot be folded (its branch is random per call): those layers run unfused."""
    from vla_razor.lora import LoraOptions, apply_lora
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    policy = OpenVLAPolicy.from_config(tiny_config(), seed=0)
    policy.model = apply_lora(
        policy.model, LoraOptions(enabled=True, r=4, alpha=8, dropout=0.1, target_modules="q_proj|up_proj")
    )
    policy.model.eval()
    policy.sample(policy.encode(*contexts), temperature=0, engine="static")
    copies = fused_copies(policy)
    assert copies.qkv == [None, None] and copies.gate_up == [None, None]
    _engines_agree(policy, policy.encode(*contexts), temperature=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA-graph engine needs a GPU")
def test_graph_engine_equals_static_engine_on_gpu(contexts):
    """The graph engine (prefill and decode replayed as CUDA graphs, elementwise ops compiled) against the static
    engine in float32 on the GPU: the capturing call, the replaying calls with new inputs, weights changed in place
    (what an RL update does between rollouts) and replaced. Runs on the device machine, skipped in CI."""
    from vla_razor.policies.openvla import generation
    from vla_razor.policies.openvla.policy import OpenVLAPolicy

    policy = OpenVLAPolicy.from_config(tiny_config(), device="cuda", seed=0)
    images, instructions = contexts

    def agree(batch, **kw) -> None:  # the graph engine, fused (the default) and not, against the static unfused one
        static = policy.sample(batch, engine="static", fused_projections=False, **kw)
        for fused in (True, False):
            graph = policy.sample(batch, engine="graph", fused_projections=fused, **kw)
            assert torch.equal(graph.tokens, static.tokens)
            # the graph runs a batch at its row bucket (3 rows as 4): other matrix shapes, other summation orders;
            # on the H200 that moved 5 of 5,376 logits by up to 1.1e-4 (session 13)
            torch.testing.assert_close(graph.logits, static.logits, atol=5e-4, rtol=1e-4)

    padded = policy.encode(images, instructions)
    agree(padded, temperature=0)  # captures
    noise = torch.rand((3, policy.action_dim, 256), generator=torch.Generator().manual_seed(7))
    agree(padded, temperature=1.0, uniform_noise=noise)  # replays
    other = policy.encode(images[::-1], instructions[::-1])  # same shapes, other values: the replay reads new inputs
    agree(other, temperature=0)
    same = policy.encode([images[0]] * 3, [instructions[0]] * 3)  # unpadded: the causal prefill graph
    agree(same, temperature=0)
    agree(padded, temperature=0)  # the padded ones are the most recently used decoders here
    decoders = generation.DECODERS.decoders[policy.model]
    graphs = {k: v for k, v in decoders.items() if k[2]}
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    agree(padded, temperature=0)
    assert {k: v for k, v in decoders.items() if k[2]} == graphs  # in-place updates: the same graphs
    lm = policy.model.language_model
    lm.lm_head.weight = torch.nn.Parameter(lm.lm_head.weight.detach().clone())
    agree(padded, temperature=0)
    latest = decoders[list(decoders)[-1]]  # the decoder of the last call (most recently used last)
    assert all(latest is not g for g in graphs.values())  # replaced parameters: captured again
    for rows in (5, 6, 7):  # a rollout's changing batch sizes: one decoder (and its graphs) at 8 rows serves them
        agree(policy.encode([images[0]] * rows, [instructions[0]] * rows), temperature=0)
    assert {k[0] for k in decoders if k[2] and k[0] > 4} == {8}  # (fused and unfused: one key each)
