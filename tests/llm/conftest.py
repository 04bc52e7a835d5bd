"""The tiny random Llama (tests/conftest.py's `tiny_llm`), loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_loaded(tiny_llm: Path):
    import torch

    from vla_razor.llm.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    return load_tokenizer(tiny_llm), load_causal_lm(tiny_llm, torch.device("cpu"))
