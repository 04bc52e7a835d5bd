"""Model loading: the GGUF -> safetensors conversion (on a tiny GGUF written here in llama.cpp's layout), and
the errors a wrong `model` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vla_razor.config import ConfigError
from vla_razor.llm.models import convert_gguf, load_causal_lm, load_tokenizer, resolve_model


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert script reorders q / k rows for its rotary layout; loaders undo it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """The tiny Llama of `model_dir` as a float32 GGUF: llama metadata, gpt2-style byte-level vocabulary, tensors
    under llama.cpp's names."""
    import gguf

    model = load_causal_lm(model_dir, torch.device("cpu"))
    tokenizer = load_tokenizer(model_dir)
    c = model.config
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"] if getattr(c, "rope_parameters", None) else c.rope_theta)
    writer.add_vocab_size(c.vocab_size)
    writer.add_tokenizer_model("gpt2")
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    writer.add_token_list([token for token, _id in vocab])
    special = set(tokenizer.all_special_ids)
    writer.add_token_types([3 if i in special else 1 for _token, i in vocab])
    writer.add_token_merges([])
    writer.add_token_scores([0.0] * len(vocab))  # no merges: the reader derives them (none) from the scores
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to the embedding
        w = tensor.numpy().astype(np.float32)
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers.") :].split(".", 1)
            part = rest.rsplit(".weight", 1)[0]
            if part == "self_attn.q_proj":
                w = _llama_cpp_permute(w, c.num_attention_heads)
            elif part == "self_attn.k_proj":
                w = _llama_cpp_permute(w, c.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{parts[part]}.weight", w)
        else:
            writer.add_tensor(names[name], w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def test_a_gguf_converts_once_to_the_same_model(tiny_llm, tmp_path):
    gguf_file = write_tiny_gguf(tiny_llm, tmp_path / "tiny.gguf")
    folder = resolve_model(gguf_file, tmp_path / "cache")
    assert (folder / "config.json").is_file() and folder.parent == tmp_path / "cache"
    original, converted = load_causal_lm(tiny_llm, torch.device("cpu")), load_causal_lm(folder, torch.device("cpu"))
    ids = torch.tensor([[3, 70, 71, 72, 100, 5]])
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, converted(ids).logits, atol=1e-5)
    text = "Compute 3 + 4."
    assert load_tokenizer(folder)(text).input_ids == load_tokenizer(tiny_llm)(text).input_ids
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert resolve_model(gguf_file, tmp_path / "cache") == folder  # cached: not converted again
    assert (folder / "config.json").stat().st_mtime_ns == stamp


def test_model_spec_errors(tmp_path, tiny_llm):
    with pytest.raises(ConfigError, match="no such folder"):
        resolve_model(tmp_path / "missing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(tmp_path / "empty", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(tmp_path / "x.gguf", tmp_path)
    assert resolve_model(tiny_llm, tmp_path) == tiny_llm
    assert convert_gguf  # the converter the embedded model goes through (exercised above)
