"""What every model of an LLM experiment is measured on: new-task accuracy, forgetting probes, forward KL.

The experiment folder keeps what all its models share: the base's stored KL responses
(`kl_responses.json`) and the base's own results (`base_eval.json`), each with the settings that made them;
a run measured against other settings is refused rather than silently compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_razor.analysis.intervals import interval_summary
from vla_razor.config import ConfigError, to_dict
from vla_razor.llm.engine import Engine
from vla_razor.core.predictors import module_weight_change_l1
from vla_razor.llm.kl import LLM_PREDICTORS, KLResponses, kl_to_base
from vla_razor.llm.probes import check_probes, run_probes
from vla_razor.llm.sampling import generate, prompt_ids
from vla_razor.llm.tasks import Task
from vla_razor.runs import cached_json_result

KL_RESPONSES = "kl_responses.json"
BASE_EVAL = "base_eval.json"
KL_SAMPLING_SEED = 20250904


def accuracy(
    model: Any,
    tokenizer: Any,
    task: Task,
    examples: list[Any],
    max_new_tokens: int,
    batch_size: int,
    progress: str | None = None,
    engine: Engine = "static",
    extra_stop_ids: Sequence[int] = (),
) -> tuple[float, list[float]]:
    """Mean reward of the greedy completions (the paper's accuracy: the final answer, reasoning ignored), and each
    example's reward in `examples`' order (the per-example results intervals and paired differences need)."""
    prompts = [prompt_ids(tokenizer, ex.prompt) for ex in examples]
    completions = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        greedy=True,
        batch_size=batch_size,
        progress=progress,
        engine=engine,
        extra_stop_ids=extra_stop_ids,
    )
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    rewards = [float(task.reward(ex, text)) for ex, text in zip(examples, texts)]
    return float(np.mean(rewards)) if rewards else 0.0, rewards


class LLMEvaluator:
    """Measures models against one base on one task; caches the base's responses and results."""

    def __init__(self, cfg: Any, base: Any, tokenizer: Any, task: Task, base_id: str) -> None:
        check_probes(cfg.eval.probes, cfg.task.name)
        self.cfg, self.base, self.tokenizer, self.task = cfg, base, tokenizer, task
        self.dir = Path(cfg.experiment_dir)
        self.eval_examples = task.examples("eval")
        self.settings = {
            "model": base_id,
            "task": to_dict(cfg.task),
            # eval.every says when a run is evaluated, not how: a sweep varies it per method (one base for all)
            "eval": {k: v for k, v in to_dict(cfg.eval).items() if k != "every"},
            "max_new_tokens": cfg.sampling.max_new_tokens,
        }
        self._responses: KLResponses | None = None

    def _bar(self, desc: str) -> str | None:
        return desc if self.cfg.progress else None

    def kl_responses(self) -> KLResponses:
        """The base's sampled responses to the first `eval.kl_prompts` held-out prompts, made once."""
        if self._responses is not None:
            return self._responses
        path = self.dir / KL_RESPONSES
        settings = {
            "model": self.settings["model"],
            "task": self.settings["task"],
            "kl_prompts": self.cfg.eval.kl_prompts,
            "max_new_tokens": self.cfg.sampling.max_new_tokens,
        }
        if path.is_file():
            saved = KLResponses.load(path)
            if saved.settings != settings:
                raise ConfigError(
                    f"{path} was made for other settings ({saved.settings}) than this config's ({settings}); use "
                    "another experiment name, or delete that file and base_eval.json to measure again"
                )
            self._responses = saved
            return saved
        examples = self.eval_examples[: self.cfg.eval.kl_prompts]
        prompts = [prompt_ids(self.tokenizer, ex.prompt) for ex in examples]
        with torch.random.fork_rng():  # a fixed seed of its own: the same responses whatever the run's seed
            torch.manual_seed(KL_SAMPLING_SEED)
            completions = generate(
                self.base,
                self.tokenizer,
                prompts,
                self.cfg.sampling.max_new_tokens,
                temperature=1.0,
                batch_size=self.cfg.sampling.batch_size,
                progress=self._bar("KL responses (base)"),
                engine=self.cfg.sampling.engine,
                extra_stop_ids=self.cfg.sampling.stop_token_ids,
            )
        self._responses = KLResponses(prompts, completions, settings)
        self._responses.save(path)
        return self._responses

    def evaluate(self, model: Any, name: str = "model") -> dict[str, Any]:
        """{"new_task", "probe/<probe>"..., *LLM_PREDICTORS, "weight_l1"} of `model` (weight_l1: sum |theta - theta0|
        against the base, LoRA counted as merged), with "new_task_examples" (each eval example's reward),
        "probe_examples" ({probe: per-example scores}) and "probe_chat_template" ({probe: whether its prompts went
        through the chat template})."""
        e, s = self.cfg.eval, self.cfg.sampling
        was_training = model.training
        model.eval()  # no dropout (LoRA's): a model is measured as it is used, and training resumes in train mode
        try:
            new_task, new_task_examples = accuracy(
                model,
                self.tokenizer,
                self.task,
                self.eval_examples,
                s.max_new_tokens,
                s.batch_size,
                self._bar(f"new task ({name})"),
                s.engine,
                s.stop_token_ids,
            )
            probes = run_probes(
                model,
                self.tokenizer,
                e.probes,
                self.dir / "lm_eval_tasks",
                e.probe_limit,
                e.probe_batch_size,
                e.truthfulqa_path,
                e.humaneval_timeout,
                e.humaneval_max_tokens,
                e.ifeval_max_tokens,
                Path(self.cfg.cache_dir) / "nltk_data",
                e.probe_sizes,
                e.chat_template_probes,
                e.probe_generation_batch_size,
            )
            kl = kl_to_base(
                self.base,
                model,
                self.kl_responses(),
                self.tokenizer.pad_token_id,
                batch_size=max(1, s.batch_size // 4),
                chunk_tokens=e.kl_chunk_tokens,
            )
        finally:
            model.train(was_training)
        return {
            "new_task": new_task,
            "new_task_examples": new_task_examples,
            **{f"probe/{k}": v.score for k, v in probes.items()},
            **kl,
            "weight_l1": module_weight_change_l1(self.base, model),
            "probe_examples": {k: v.examples for k, v in probes.items()},
            "probe_chat_template": {k: v.chat_template for k, v in probes.items()},
        }

    def base_results(self) -> dict[str, Any]:
        return cached_json_result(self.dir / BASE_EVAL, self.settings, lambda: self.evaluate(self.base, "the base"))

    def summary(self, method: str, hparams: dict[str, Any], seed: int, step: int, results: dict[str, Any]) -> dict:
        """A run's summary.json in the shared contract (DESIGN.md section 6): the report reads it as is. Beside the
        contract: each probe's per-example scores (`prior_examples`, the base's in `base.prior_examples`), which
        probes used the chat template, and the 95 % intervals they give (`intervals`: each probe's score, and
        forgetting per probe and on the mean, paired over the same examples)."""
        base = self.base_results()
        probes = self.cfg.eval.probes
        prior = {p: results[f"probe/{p}"] for p in probes}
        base_prior = {p: base[f"probe/{p}"] for p in probes}
        examples = results.get("probe_examples", {})
        base_examples = base.get("probe_examples", {})
        # per-example new-task rewards (absent from results made before they were kept: a cached base_eval.json)
        new_task_examples = results.get("new_task_examples", [])
        base_new_task = base.get("new_task_examples", [])
        return {
            "domain": "llm",
            "method": method,
            "hparams": hparams,
            "seed": seed,
            "step": step,
            "task": self.cfg.task.name,
            "new_task": results["new_task"],
            "prior": prior,
            "forgetting": float(np.mean([base_prior[p] - prior[p] for p in probes])),
            "predictors": {k: results[k] for k in (*LLM_PREDICTORS, "weight_l1") if k in results},
            "base": {
                "new_task": base["new_task"],
                "prior": base_prior,
                "prior_examples": base_examples,
                **({"new_task_examples": base_new_task} if base_new_task else {}),
            },
            "prior_examples": examples,
            **({"new_task_examples": new_task_examples} if new_task_examples else {}),
            "chat_template": results.get("probe_chat_template", {}),
            "intervals": interval_summary(base_examples, examples, base_new_task, new_task_examples),
        }
