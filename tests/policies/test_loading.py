import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.policies.conftest import tiny_config
from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.loading import INDEX, CheckpointError, from_pretrained, save_pretrained
from vla_razor.policies.openvla.modeling_openvla import build_model

FIXTURE = Path(__file__).parent / "fixtures" / "openvla_7b_keys.json"


def expand_fixture() -> dict[str, tuple[int, ...]]:
    spec = json.loads(FIXTURE.read_text())
    out = {}
    for group in spec["groups"]:
        for i in range(group.get("count", 1)):
            prefix = group["prefix"].replace("{i}", str(i))
            for key, shape in group["keys"].items():
                out[prefix + key] = tuple(shape)
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory, policy, contexts):
    folder = tmp_path_factory.mktemp("openvla_tiny")
    shards = save_pretrained(policy.model, folder, max_shard_bytes=300_000)
    batch = policy.encode(*contexts)
    tokens = policy.vocab_ids[torch.tensor([[0, 5, 9, 255, 128, 3, 77]] * 3)]
    with torch.no_grad():
        logits = policy.action_logits(batch, tokens)
    return folder, shards, batch, tokens, logits


def test_layout_is_sharded_with_index(saved):
    folder, shards, *_ = saved
    assert len(shards) >= 3
    assert [p.name for p in shards][0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((folder / INDEX).read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    config = json.loads((folder / "config.json").read_text())
    for field in (
        "timm_model_ids",
        "image_sizes",
        "text_config",
        "norm_stats",
        "n_action_bins",
        "use_fused_vision_backbone",
    ):
        assert field in config
    assert any(k.endswith("ls1.scale_factor") for k in index["weight_map"])


def test_save_load_bit_exact(saved, policy):
    folder, _, batch, tokens, logits = saved
    model = from_pretrained(folder)
    for key, value in policy.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import OpenVLAProcessor

    loaded = OpenVLAPolicy(model, OpenVLAProcessor.from_config(model.config))
    with torch.no_grad():
        assert torch.equal(loaded.action_logits(batch, tokens), logits)


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for p in folder.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def test_missing_shard_names_file_and_keys(saved, tmp_path):
    folder = _copy(saved[0], tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=shard.name + r".*missing.*e\.g\. "):
        from_pretrained(folder)


def test_key_mismatch_names_keys(saved, tmp_path):
    folder = _copy(saved[0], tmp_path)
    index = json.loads((folder / INDEX).read_text())
    shard = index["weight_map"].pop("projector.fc1.bias")
    index["weight_map"]["projector.fc1.bias_renamed"] = shard
    (folder / INDEX).write_text(json.dumps(index))
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors\.index\.json.*projector\.fc1\.bias.*projector\.fc1\.bias_renamed"
    ):
        from_pretrained(folder)


def test_wrong_dtype_names_file_and_key(saved, tmp_path):
    folder = _copy(saved[0], tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    tensors = load_file(str(shard))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].to(torch.bfloat16)
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match=f"{shard.name}: tensor {key} is BF16, config.json says F32"):
        from_pretrained(folder)
    # asking for a dtype converts instead
    assert from_pretrained(folder, dtype="bfloat16").projector.fc1.weight.dtype == torch.bfloat16


def test_pickle_only_folder_is_refused(tmp_path, saved):
    (tmp_path / "config.json").write_text((saved[0] / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors"):
        from_pretrained(tmp_path)


def test_7b_config_matches_the_released_checkpoint_keys():
    model = build_model(OpenVLAConfig.openvla_7b(), device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fixture = expand_fixture()
    assert sorted(set(fixture) - set(ours)) == []
    assert sorted(set(ours) - set(fixture)) == []
    assert {k: v for k, v in ours.items() if fixture[k] != v} == {}
    assert sum(torch.Size(s).numel() for s in ours.values()) == json.loads(FIXTURE.read_text())["total_params"]
    assert all(v.dtype == torch.bfloat16 for v in model.state_dict().values())


def test_hf_config_round_trip():
    cfg = tiny_config()
    back = OpenVLAConfig.from_hf_dict(cfg.to_hf_dict())
    assert back == cfg
    released = OpenVLAConfig.openvla_7b().to_hf_dict()
    del released["vla_razor"]  # the released config.json has no such block: 7B defaults fill in
    assert OpenVLAConfig.from_hf_dict(released) == OpenVLAConfig.openvla_7b()


def test_released_minimal_text_config_loads_as_llama2_7b():
    """openvla-7b's config.json keeps only the text_config fields that differ from LlamaConfig's defaults; the rest
    (hidden size, layers, heads, ...) are Llama-2-7B's by default, as OpenVLA's own code rebuilds them."""
    released = OpenVLAConfig.openvla_7b().to_hf_dict()
    del released["vla_razor"]
    released["text_config"] = {
        "model_type": "llama",
        "pad_token_id": 32000,
        "torch_dtype": "bfloat16",
        "vocab_size": 32064,
    }
    cfg = OpenVLAConfig.from_hf_dict(released)
    assert cfg == OpenVLAConfig.openvla_7b()
    assert cfg.gripper == "absolute"  # OpenVLA-7B's convention (1 open, 0 closed) when the folder does not say
    relative = OpenVLAConfig.openvla_7b()
    relative.gripper = "relative"
    assert OpenVLAConfig.from_hf_dict(relative.to_hf_dict()).gripper == "relative"
    assert cfg.hidden_size == 4096 and cfg.text_config["num_hidden_layers"] == 32
    released["text_config"] = {**released["text_config"], "model_type": "mistral"}
    with pytest.raises(ValueError, match="text_config.model_type"):
        OpenVLAConfig.from_hf_dict(released)


def make_word_tokenizer(directory: Path) -> Path:
    """A real transformers tokenizer folder (word-level, BOS added, as Llama's adds <s>), made here offline: the
    one the OpenVLA parity reference uses."""
    from tests.policies.openvla_parity.make_reference import word_tokenizer

    word_tokenizer().save_pretrained(str(directory))
    return directory


def test_saved_policy_with_a_pretrained_tokenizer_loads_on_its_own(tmp_path):
    """A policy whose tokenizer comes from files (as openvla-7b's Llama tokenizer) writes those files into every
    folder it saves: the saved folder alone loads and tokenizes the prompt as the original did."""
    from vla_razor.policies.openvla.policy import OpenVLAPolicy
    from vla_razor.policies.openvla.processor_openvla import OpenVLAProcessor

    source = make_word_tokenizer(tmp_path / "tokenizer")
    cfg = tiny_config()
    cfg.tokenizer = "pretrained"
    torch.manual_seed(0)
    policy = OpenVLAPolicy(build_model(cfg), OpenVLAProcessor.from_config(cfg, source))
    prompt = policy.processor.prompt_ids("pick coke can")
    assert prompt[0] == 1 and 0 not in prompt  # BOS, and every word known

    policy.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer_config.json").is_file()
    loaded = OpenVLAPolicy.from_pretrained(tmp_path / "saved")
    assert loaded.processor.prompt_ids("pick coke can") == prompt
    images = [torch.zeros(cfg.image_sizes[0], cfg.image_sizes[0], 3, dtype=torch.uint8)]
    a, b = policy.encode(images, ["pick coke can"]), loaded.encode(images, ["pick coke can"])
    with torch.no_grad():
        torch.testing.assert_close(policy.sample(a, temperature=0).logits, loaded.sample(b, temperature=0).logits)
