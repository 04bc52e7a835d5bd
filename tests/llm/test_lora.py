"""LoRA in `llm train`: only the adapters train, a killed run resumes to the same weights, the saved model has the
adapters merged (the plain layout of its base) and evaluates to the adapted model's KL."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, kill_after_checkpoint
from tests.llm.conftest import llm_flags
from vla_razor.cli.main import main
from vla_razor.core.predictors import weight_change_l1
from vla_razor.hf_imports import import_transformers

import_transformers()  # peft imports transformers: repair a torchvision that does not match torch first
pytest.importorskip("peft")

LORA = ["--lora.enabled", "true", "--lora.r", "4", "--lora.alpha", "8"]


def test_a_killed_lora_run_resumes_to_the_same_merged_model(tiny_llm, tmp_path, capsys):
    def args(experiment: str) -> list[str]:
        return [
            "llm",
            "train",
            *llm_flags(tiny_llm, tmp_path, experiment, sft_epochs=6, sft_batch=2),
            *LORA,
            "--lora.dropout",
            "0.1",
            "--eval.probes",
            "[winogrande]",
            "--method",
            "sft",
            "--checkpoint_every",
            "5",
        ]

    assert main(args("whole")) == 0  # uninterrupted, in this process
    run = tmp_path / "cut" / "runs" / "sft_lr0.003_bs2_ep6_lora4"
    kill_after_checkpoint(args("cut"), run / "checkpoints" / "training_state.safetensors", step=10)
    assert not (run / "summary.json").exists()
    capsys.readouterr()
    assert main(args("cut")) == 0
    assert "resumed from update" in capsys.readouterr().out
    whole = load_file(str(tmp_path / "whole" / "runs" / "sft_lr0.003_bs2_ep6_lora4" / "model" / "model.safetensors"))
    cut = load_file(str(run / "model" / "model.safetensors"))
    base = load_file(str(tiny_llm / "model.safetensors"))
    assert whole.keys() == cut.keys() == base.keys()  # merged: the base's own layout, no adapter tensors
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    changed = {k for k in base if not torch.equal(base[k], whole[k])}
    assert changed and all(k.endswith("proj.weight") for k in changed)  # only the adapted linears moved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["hparams"]["lora_r"] == 4


def test_lora_on_qwen2_under_the_paper_config(tiny_qwen2, tmp_path):
    """Checkpointed activations (the paper config's gradient_checkpointing) still reach the adapters; KL and
    probes are the adapted model's, and the merged folder evaluates to the same values."""
    flags = [
        "--config",
        str(REPO / "configs" / "llm_paper.yaml"),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--task.name",
        "arithmetic",
        *llm_flags(tiny_qwen2, tmp_path, "qwen2_lora"),
        *LORA,
        "--lora.target_modules",
        "q_proj|v_proj",
        "--lora.dropout",
        "0.3",
    ]
    for method in ("sft", "one_zero"):
        assert main(["llm", "train", *flags, "--method", method]) == 0
    runs = tmp_path / "qwen2_lora" / "runs"
    assert (runs / "one_zero_lr0.003_mu2_g4_lora4" / "summary.json").is_file()
    run = runs / "sft_lr0.003_bs4_lora4"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["predictors"]["forward_kl"] > 1e-4
    base, merged = load_file(str(tiny_qwen2 / "model.safetensors")), load_file(str(run / "model" / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed == {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(2) for p in "qv"}
    # weight_l1 measured on the adapted model (unmerged LoRA) is the change of the merged weights it saved
    assert summary["predictors"]["weight_l1"] == pytest.approx(weight_change_l1(base, merged), rel=1e-3)
    out = tmp_path / "eval.json"
    assert main(["llm", "eval", *flags, "--model-dir", str(run / "model"), "--out", str(out)]) == 0
    reloaded = json.loads(out.read_text())["model"]
    assert reloaded["forward_kl"] == pytest.approx(summary["predictors"]["forward_kl"], rel=1e-3)
    assert {k: reloaded[f"probe/{k}"] for k in summary["prior"]} == pytest.approx(summary["prior"])


def test_lora_targets_that_match_nothing_are_a_clear_error(tiny_llm, tmp_path, capsys):
    assert (
        main(
            [
                "llm",
                "train",
                *llm_flags(tiny_llm, tmp_path, "bad"),
                *LORA,
                "--lora.target_modules",
                "attn_qkv",
                "--method",
                "sft",
            ]
        )
        == 2
    )
    assert "lora.target_modules: 'attn_qkv' matches no linear layer" in capsys.readouterr().err
