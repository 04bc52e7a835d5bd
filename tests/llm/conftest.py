"""A tiny random Llama with a byte-level tokenizer: a real Hugging Face checkpoint, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_razor.llm.models import make_tiny_llm

    return make_tiny_llm(tmp_path_factory.mktemp("tiny_llm") / "model")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_llm: Path):
    import torch

    from vla_razor.llm.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    return load_tokenizer(tiny_llm), load_causal_lm(tiny_llm, torch.device("cpu"))
