"""The tiny random Llama (tests/conftest.py's `tiny_llm`), loaded once per session; tiny random Qwen2 models (tied and
untied embeddings); the `vla-razor llm` flags that keep a run to seconds."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_loaded(tiny_llm: Path):
    import torch

    from vla_razor.llm.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    return load_tokenizer(tiny_llm), load_causal_lm(tiny_llm, torch.device("cpu"))


@pytest.fixture(scope="session", params=[True, False], ids=["tied", "untied"])
def tiny_qwen2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 (q / k / v biases, Qwen2's tokenizer and chat template), with tied embeddings as
    Qwen2.5-3B or untied as Qwen2.5-7B."""
    from vla_razor.llm.models import make_tiny_llm

    return make_tiny_llm(
        tmp_path_factory.mktemp(f"tiny_qwen2_{request.param_index}") / "model",
        family="qwen2",
        tie_embeddings=request.param,
    )


def llm_flags(model: Path, runs: Path, experiment: str, sft_epochs: int = 1, sft_batch: int = 4) -> list[str]:
    """`vla-razor llm` flags for a run of a few seconds on a tiny model: 1-digit sums, 2 probes of 2 examples."""
    values = {
        "model": model,
        "runs_dir": runs,
        "experiment": experiment,
        "wandb": "off",
        "progress": "false",
        "threads": 1,
        "task.digits": 1,
        "task.terms": 2,
        "task.train_size": 16,
        "task.eval_size": 6,
        "sampling.max_new_tokens": 12,
        "sampling.batch_size": 16,
        "sft.optim.lr": 0.003,
        "sft.optim.batch_size": sft_batch,
        "sft.optim.micro_batch_size": 2,
        "sft.optim.warmup_steps": 1,
        "sft.optim.epochs": sft_epochs,
        "simpo.samples_per_prompt": 2,
        "simpo.optim.lr": 0.003,
        "simpo.optim.batch_size": 4,
        "simpo.optim.micro_batch_size": 4,
        "simpo.optim.warmup_steps": 1,
        "grpo.group_size": 4,
        "grpo.prompts_per_generation": 2,
        "grpo.generations": 2,
        "grpo.mu": 2,
        "grpo.optim.lr": 0.003,
        "grpo.optim.micro_batch_size": 4,
        "grpo.optim.warmup_steps": 4,
        "eval.probes": "[winogrande, humaneval]",
        "eval.probe_limit": 2,
        "eval.probe_batch_size": 2,
        "eval.kl_prompts": 4,
        "eval.humaneval_max_tokens": 8,
    }
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]
