"""Fine-tuning a causal LM on a new task: SFT, GRPO, 1-0 Reinforce and SimPO over the shared core objectives.

Every method reads the same way: make a round of data (a batch of solutions, a generation of on-policy
samples, a batch of preference pairs), then take its updates. An update accumulates gradients over micro
batches whose losses are weighted so that the sum is the loss of the whole batch, clips, and steps AdamW.

  sft       core.sft_loss on the task's solutions (token mean over the batch)
  grpo      core.grpo_loss with group-normalized advantages; `mu` updates per generation, clipped against
            the generation's log-probs when mu > 1; Dr. GRPO aggregation by default (paper, Table 2); samples
            are scored under the distribution they were drawn from (logits / sampling.temperature)
  one_zero  the same loop with A = 1 for a correct sample and 0 otherwise (1-0 Reinforce, section 5.1)
  simpo     core.simpo_loss between the solution and an incorrect sample of the base (or another model)

A run is resumable: its data order is a function of (seed, round), and `checkpoints/training_state`
(weights, AdamW moments, RNG, step) is written atomically every `checkpoint_every` updates. With `lora.enabled`
only LoRA adapters (vla_razor.lora) train and are checkpointed; evaluation sees the adapted model, and the saved
model/ has them merged into the weights (the base's own layout).
"""

from __future__ import annotations

import math
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vla_razor.config import ConfigError, to_dict
from vla_razor.core import (
    grpo_loss,
    kl_penalty,
    normalized_advantages,
    one_zero_advantages,
    sft_loss,
    simpo_loss,
    token_logprobs,
)
from vla_razor.llm.config import LLMConfig
from vla_razor.optim import OptimConfig
from vla_razor.llm.evaluate import LLMEvaluator
from vla_razor.llm.models import load_causal_lm, load_tokenizer, pick_device, resolve_model
from vla_razor.llm.sampling import TeacherForcing, generate, prompt_ids, target_ids
from vla_razor.llm.tasks import Example, Task, make_task
from vla_razor.lora import apply_lora, merge_lora
from vla_razor.optim import check_finite, lr_multiplier
from vla_razor.runs import RunFolder, WandbMirror, atomic_write_folder, atomic_write_json
from vla_razor.training_state import check_training_state, load_training_state, save_training_state, training_state_path

METHODS = ("sft", "grpo", "one_zero", "simpo")
MODEL_DIR = "model"


@dataclass
class Sequences:
    """Prompt / completion token ids of one batch."""

    prompts: list[list[int]]
    completions: list[list[int]]


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any] | None
    steps: int
    resumed_from: int | None
    seconds: float


def run_name(cfg: LLMConfig, method: str) -> str:
    """The run folder's default name: the method and the settings a sweep varies (epochs only when not 1)."""
    lora = f"_lora{cfg.lora.r}" if cfg.lora.enabled else ""
    if method in ("sft", "simpo"):
        section = getattr(cfg, method)
        o = section.optim
        epochs = f"_ep{o.epochs}" if o.epochs != 1 else ""
        return section.run_name or f"{method}_lr{o.lr:g}_bs{o.batch_size}{epochs}{lora}"
    g = cfg.grpo
    return g.run_name or f"{method}_lr{g.optim.lr:g}_mu{g.mu}_g{g.group_size}{lora}"


METHOD_SECTION = {"sft": "sft", "grpo": "grpo", "one_zero": "grpo", "simpo": "simpo"}
"""The config section each method's settings are in (1-0 Reinforce is GRPO's section with another advantage)."""


def method_optim(cfg: LLMConfig, method: str) -> OptimConfig:
    return getattr(cfg, METHOD_SECTION[method]).optim


def hparams(cfg: LLMConfig, method: str) -> dict[str, Any]:
    o = method_optim(cfg, method)
    out: dict[str, Any] = {"lr": o.lr, "schedule": o.schedule, "epochs": o.epochs, "task": cfg.task.name}
    if method in ("sft", "simpo"):
        out["batch_size"] = o.batch_size
    else:
        g = cfg.grpo
        out.update(
            group_size=g.group_size,
            prompts_per_generation=g.prompts_per_generation,
            mu=g.mu,
            loss_type=g.loss_type,
            generations=g.generations,
            kl_coef=g.kl_coef,
        )
    if cfg.lora.enabled:
        out["lora_r"] = cfg.lora.r
    return out


# ----------------------------------------------------------------------------------------- one update
def take_update(
    model: Any,
    optimizer: torch.optim.Optimizer,
    micro_losses: Iterator[torch.Tensor],
    max_grad_norm: float,
    step: int = 0,
) -> tuple[float, float]:
    """Backward through each micro batch's (already weighted) loss, clip, step; returns (loss, grad norm). A
    non-finite loss or gradient stops training before the step (NonFiniteError)."""
    total = 0.0
    for loss in micro_losses:
        loss.backward()
        total += float(loss.detach())
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    check_finite("LLM training", step, total, norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, float(norm)


def _chunks(n: int, size: int) -> list[range]:
    return [range(lo, min(n, lo + size)) for lo in range(0, n, size)]


def sft_micro_losses(
    model: Any, seqs: Sequences, micro: int, pad_id: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Token-mean NLL of the completions over the whole batch, as weighted micro-batch losses."""
    total_tokens = sum(len(c) for c in seqs.completions)
    for rows in _chunks(len(seqs.prompts), micro):
        batch = TeacherForcing.pack(
            [seqs.prompts[i] for i in rows], [seqs.completions[i] for i in rows], pad_id, device
        )
        share = int(batch.target_mask.sum()) / max(1, total_tokens)
        yield sft_loss(batch.logits(model), batch.targets, batch.target_mask) * share


# ----------------------------------------------------------------------------------------- the methods
class Method:
    """A round of data and the updates it gives; subclasses are the four methods."""

    def __init__(self, cfg: LLMConfig, task: Task, tokenizer: Any, model: Any, base: Any, device: torch.device):
        self.cfg, self.task, self.tokenizer, self.model, self.base, self.device = (
            cfg,
            task,
            tokenizer,
            model,
            base,
            device,
        )
        self.pad_id = tokenizer.pad_token_id
        self.train_examples = task.examples("train")

    def updates_per_round(self) -> int:
        return 1

    def rounds(self) -> int:
        raise NotImplementedError

    def run_round(
        self, index: int, optimizer: torch.optim.Optimizer, set_lr: Callable[[], None]
    ) -> list[dict[str, float]]:
        """The round's updates (set_lr before each); one metrics dict per update."""
        raise NotImplementedError


class SFT(Method):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.examples = [ex for ex in self.train_examples if ex.solution]
        if not self.examples:
            raise ConfigError("sft: the task's training examples have no solutions to imitate (jsonl: add 'solution')")
        self.o = self.cfg.sft.optim
        self.per_epoch = math.ceil(len(self.examples) / self.o.batch_size)

    def rounds(self) -> int:
        return self.per_epoch * self.o.epochs

    def batch(self, index: int) -> list[Example]:
        epoch, b = divmod(index, self.per_epoch)
        order = list(range(len(self.examples)))
        random.Random(f"{self.cfg.seed}:sft:{epoch}").shuffle(order)
        return [self.examples[i] for i in order[b * self.o.batch_size : (b + 1) * self.o.batch_size]]

    def run_round(self, index, optimizer, set_lr):
        chosen = self.batch(index)
        seqs = Sequences(
            [prompt_ids(self.tokenizer, ex.prompt) for ex in chosen],
            [target_ids(self.tokenizer, ex.solution) for ex in chosen],
        )
        set_lr()
        loss, norm = take_update(
            self.model,
            optimizer,
            sft_micro_losses(self.model, seqs, self.o.micro_batch_size, self.pad_id, self.device),
            self.o.max_grad_norm,
            index,
        )
        return [{"loss": loss, "grad_norm": norm, "tokens": sum(len(c) for c in seqs.completions)}]


class GRPO(Method):
    """GRPO (normalized advantages) or, with `one_zero`, 1-0 Reinforce."""

    def __init__(self, *args: Any, one_zero: bool = False) -> None:
        super().__init__(*args)
        self.g, self.one_zero = self.cfg.grpo, one_zero
        if self.g.mu < 1 or self.g.group_size < 1 or self.g.prompts_per_generation < 1:
            raise ConfigError("grpo: mu, group_size and prompts_per_generation must be >= 1")
        self.temperature = self.cfg.sampling.temperature

    def sampled_logits(self, batch: TeacherForcing) -> torch.Tensor:
        """The model's logits divided by sampling.temperature: the distribution the rollouts were drawn from, which
        the policy gradient and its clipping ratios score (untempered log-probs would make T != 1 off-policy)."""
        return batch.logits(self.model) / self.temperature

    def updates_per_round(self) -> int:
        return self.g.mu

    def rounds(self) -> int:
        return self.g.generations

    def advantages(self, rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if self.one_zero:
            return one_zero_advantages(rewards)
        return normalized_advantages(rewards, groups, scale_by_std=self.g.scale_rewards)

    def micro_losses(
        self, seqs: Sequences, adv: torch.Tensor, old: list[torch.Tensor] | None, n_total: int, tokens_total: int
    ) -> Iterator[torch.Tensor]:
        g, micro = self.g, self.g.optim.micro_batch_size
        for k, rows in enumerate(_chunks(len(seqs.prompts), micro)):
            batch = TeacherForcing.pack(
                [seqs.prompts[i] for i in rows], [seqs.completions[i] for i in rows], self.pad_id, self.device
            )
            logits = batch.logits(self.model)
            loss = grpo_loss(
                logits / self.temperature,
                batch.targets,
                batch.target_mask,
                adv[list(rows)].to(self.device),
                None if old is None else old[k],
                g.clip_eps,
                g.loss_type,
                max_tokens=self.cfg.sampling.max_new_tokens,
            )
            share = (
                int(batch.target_mask.sum()) / max(1, tokens_total) if g.loss_type == "bnpo" else len(rows) / n_total
            )
            loss = loss * share
            if g.kl_coef > 0:  # between the two models' own (untempered) distributions, as evaluations measure
                with torch.no_grad():
                    ref = batch.logits(self.base)
                loss = loss + g.kl_coef * share * kl_penalty(logits, ref, batch.targets, batch.target_mask)
            yield loss

    @torch.no_grad()
    def old_logprobs(self, seqs: Sequences) -> list[torch.Tensor]:
        out = []
        for rows in _chunks(len(seqs.prompts), self.g.optim.micro_batch_size):
            batch = TeacherForcing.pack(
                [seqs.prompts[i] for i in rows], [seqs.completions[i] for i in rows], self.pad_id, self.device
            )
            out.append(token_logprobs(self.sampled_logits(batch), batch.targets, mask=batch.target_mask))
        return out

    def run_round(self, index, optimizer, set_lr):
        g, s = self.g, self.cfg.sampling
        rng = random.Random(f"{self.cfg.seed}:grpo:{index}")
        chosen = rng.sample(self.train_examples, min(g.prompts_per_generation, len(self.train_examples)))
        prompts = [prompt_ids(self.tokenizer, ex.prompt) for ex in chosen]
        started = time.time()
        torch.manual_seed(self.cfg.seed * 1_000_003 + index)  # the round's samples, the same after a resume
        flat_prompts = [p for p in prompts for _ in range(g.group_size)]
        completions = generate(
            self.model,
            self.tokenizer,
            flat_prompts,
            s.max_new_tokens,
            s.temperature,
            batch_size=s.batch_size,
            engine=s.engine,
            extra_stop_ids=s.stop_token_ids,
        )
        gen_seconds = time.time() - started
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        groups = torch.arange(len(chosen)).repeat_interleave(g.group_size)
        rewards = torch.tensor([self.task.reward(chosen[int(gi)], t) for gi, t in zip(groups, texts)])
        adv = self.advantages(rewards, groups)
        n_total, tokens_total = len(completions), sum(len(c) for c in completions)
        # Sequences with zero advantage add nothing to the policy gradient (they still count in the
        # normalization): skip their forward / backward unless a KL penalty needs every sample.
        keep = list(range(n_total)) if g.kl_coef > 0 else [i for i in range(n_total) if float(adv[i]) != 0.0]
        seqs = Sequences([flat_prompts[i] for i in keep], [completions[i] for i in keep])
        kept_adv = adv[keep] if keep else adv[:0]
        metrics = {
            "reward": float(rewards.mean()),
            "completion_tokens": tokens_total / n_total,
            "samples_per_s": n_total / max(gen_seconds, 1e-9),
            "trained_samples": len(keep),
        }
        out = []
        old = self.old_logprobs(seqs) if g.mu > 1 and keep else None
        for _ in range(g.mu):
            set_lr()
            if not keep:
                optimizer.zero_grad(set_to_none=True)
                out.append({**metrics, "loss": 0.0, "grad_norm": 0.0})
                continue
            loss, norm = take_update(
                self.model,
                optimizer,
                self.micro_losses(seqs, kept_adv, old, n_total, tokens_total),
                g.optim.max_grad_norm,
                index * g.mu + len(out),
            )  # the update, not the round
            out.append({**metrics, "loss": loss, "grad_norm": norm})
        return out


class SimPO(Method):
    def __init__(self, *args: Any, pairs: list[tuple[Example, list[int]]]) -> None:
        super().__init__(*args)
        self.pairs, self.o = pairs, self.cfg.simpo.optim
        if not pairs:
            raise ConfigError("simpo: no training prompt has both a solution and an incorrect sample to contrast")
        self.per_epoch = math.ceil(len(pairs) / self.o.batch_size)

    def rounds(self) -> int:
        return self.per_epoch * self.o.epochs

    def micro_losses(self, chosen: list[tuple[Example, list[int]]]) -> Iterator[torch.Tensor]:
        p = self.cfg.simpo
        for rows in _chunks(len(chosen), self.o.micro_batch_size):
            prompts = [prompt_ids(self.tokenizer, chosen[i][0].prompt) for i in rows]
            win = TeacherForcing.pack(
                prompts, [target_ids(self.tokenizer, chosen[i][0].solution) for i in rows], self.pad_id, self.device
            )
            lose = TeacherForcing.pack(prompts, [chosen[i][1] for i in rows], self.pad_id, self.device)
            loss = simpo_loss(
                win.logits(self.model),
                win.targets,
                win.target_mask,
                lose.logits(self.model),
                lose.targets,
                lose.target_mask,
                margin=p.margin,
                beta=p.beta,
                length_normalize=p.length_normalize,
            )
            yield loss * (len(rows) / len(chosen))

    def run_round(self, index, optimizer, set_lr):
        epoch, b = divmod(index, self.per_epoch)
        order = list(range(len(self.pairs)))
        random.Random(f"{self.cfg.seed}:simpo:{epoch}").shuffle(order)
        chosen = [self.pairs[i] for i in order[b * self.o.batch_size : (b + 1) * self.o.batch_size]]
        set_lr()
        loss, norm = take_update(self.model, optimizer, self.micro_losses(chosen), self.o.max_grad_norm, index)
        return [{"loss": loss, "grad_norm": norm}]


def simpo_pairs(
    cfg: LLMConfig, task: Task, tokenizer: Any, base: Any, device: torch.device
) -> list[tuple[Example, list[int]]]:
    """(example, incorrect completion) for each training example with a solution, from `negatives_model`'s
    samples (the base by default); sampled once and kept in the experiment folder."""
    p, s = cfg.simpo, cfg.sampling
    source = p.negatives_model or cfg.model
    path = Path(cfg.experiment_dir) / "simpo_negatives.json"
    settings = {
        "model": source,
        "task": to_dict(cfg.task),
        "samples": p.samples_per_prompt,
        "max_new_tokens": s.max_new_tokens,
    }
    examples = [ex for ex in task.examples("train") if ex.solution]
    if path.is_file() and json.loads(path.read_text()).get("settings") == settings:
        negatives = json.loads(path.read_text())["negatives"]
    else:
        sampler = (
            base
            if p.negatives_model is None
            else load_causal_lm(resolve_model(source, cfg.cache_dir), device, cfg.dtype)
        )
        prompts = [prompt_ids(tokenizer, ex.prompt) for ex in examples for _ in range(p.samples_per_prompt)]
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            completions = generate(
                sampler,
                tokenizer,
                prompts,
                s.max_new_tokens,
                s.temperature,
                batch_size=s.batch_size,
                progress="SimPO negatives" if cfg.progress else None,
                engine=s.engine,
                extra_stop_ids=s.stop_token_ids,
            )
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        negatives = {}
        for k, ex in enumerate(examples):
            for j in range(p.samples_per_prompt):
                i = k * p.samples_per_prompt + j
                if task.reward(ex, texts[i]) == 0:
                    negatives[ex.id] = completions[i]
                    break
        atomic_write_json(path, {"settings": settings, "negatives": negatives})
    return [(ex, negatives[ex.id]) for ex in examples if ex.id in negatives]


# ----------------------------------------------------------------------------------------- a run
def _set_threads(cfg: LLMConfig) -> None:
    torch.set_num_threads(max(1, cfg.threads))


def load_experiment(cfg: LLMConfig) -> tuple[Any, Any, Task, torch.device, Path]:
    """(tokenizer, base model, task, device, base folder) of an experiment."""
    _set_threads(cfg)
    device = pick_device(cfg.device)
    path = resolve_model(cfg.model, cfg.cache_dir)
    tokenizer = load_tokenizer(path)
    base = load_causal_lm(path, device, cfg.dtype)
    base.requires_grad_(False)
    return tokenizer, base, make_task(cfg.task), device, path


# What does not change what an LLM run computes (RunFolder.check_settings): how fast and how visibly it runs.
NOT_IN_RUN_IDENTITY = (
    "progress",
    "wandb",
    "threads",
    "checkpoint_every",
    "runs_dir",
    "gradient_checkpointing",
    "device",
    "cache_dir",
    "save_model",
    "methods",
)


def train_method(
    cfg: LLMConfig, method: str, shared: tuple[Any, Any, Task, torch.device, Path] | None = None
) -> RunResult:
    """Trains one run of `method` (resuming an interrupted one), evaluates it, writes its summary."""
    if method not in METHODS:
        raise ConfigError(f"method: unknown method {method!r}; valid: {', '.join(METHODS)}")
    run = RunFolder(cfg.experiment_dir / "runs" / run_name(cfg, method))
    other_sections = tuple(f"{section}." for section in ("sft", "grpo", "simpo") if section != METHOD_SECTION[method])
    run.check_settings({"method": method, **to_dict(cfg)}, NOT_IN_RUN_IDENTITY + other_sections)
    if run.is_finished():
        return RunResult(run.path, json.loads(run.summary_path.read_text()), 0, None, 0.0)
    tokenizer, base, task, device, base_path = shared or load_experiment(cfg)
    evaluator = LLMEvaluator(cfg, base, tokenizer, task, str(cfg.model))
    model = trainable_model(cfg, base_path, device)
    o = method_optim(cfg, method)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=o.lr,
        weight_decay=o.weight_decay,
        fused=device.type == "cuda",
    )
    args = (cfg, task, tokenizer, model, base, device)
    if method == "sft":
        trainer: Method = SFT(*args)
    elif method == "simpo":
        trainer = SimPO(*args, pairs=simpo_pairs(cfg, task, tokenizer, base, device))
    else:
        trainer = GRPO(*args, one_zero=method == "one_zero")
    per_round = trainer.updates_per_round()
    total_rounds = trainer.rounds()
    if o.max_steps is not None:
        total_rounds = min(total_rounds, math.ceil(o.max_steps / per_round))
    total_steps = total_rounds * per_round

    torch.manual_seed(cfg.seed)  # what draws from torch's RNG in training (LoRA dropout) is a function of the seed
    state_path = training_state_path(run.path)
    resumed_from = None
    start_round = 0
    if state_path.is_file():
        meta = check_training_state(state_path, model)
        run.drop_metrics_after(int(meta["step"]) - 1)  # updates from the saved step on are redone and logged again
    run.start({"method": method, **to_dict(cfg)}, fresh=not state_path.is_file())
    if state_path.is_file():
        state = load_training_state(state_path, model, optimizer)
        start_round, resumed_from = int(state["round"]), int(state["step"])
    wandb = WandbMirror(
        cfg.wandb, "vla-razor", f"{cfg.experiment}/{run.path.name}", {"method": method, **to_dict(cfg)}, run.path
    )
    step = start_round * per_round
    started = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"{method}", unit="update", disable=not cfg.progress)
    try:
        for index in range(start_round, total_rounds):
            applied: list[float] = []  # a round takes its updates (mu for GRPO) before it returns their metrics

            def set_lr() -> None:
                lr = o.lr * lr_multiplier(step + len(applied), total_steps, o.warmup_steps, o.schedule)
                applied.append(lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr

            tick = time.time()
            for k, metrics in enumerate(trainer.run_round(index, optimizer, set_lr)):
                metrics = {**metrics, "lr": applied[k], "updates_per_s": 1.0 / max(time.time() - tick, 1e-9)}
                run.log(step, "train", metrics)
                wandb.log({f"train/{k}": v for k, v in metrics.items()}, step)
                step += 1
                bar.update(1)
                bar.set_postfix({k: f"{metrics[k]:.3g}" for k in ("loss", "reward") if k in metrics})
                tick = time.time()
            last = index == total_rounds - 1
            if cfg.checkpoint_every and step % cfg.checkpoint_every < per_round and not last:
                save_training_state(state_path, model, optimizer, {"round": index + 1, "step": step})
            if cfg.eval.every and step % cfg.eval.every < per_round and not last:
                results = evaluator.evaluate(model, f"{method} @ {step}")
                point = evaluator.summary(method, hparams(cfg, method), cfg.seed, step, results)
                run.add_point(point)
                run.log(step, "eval", _flat(point))
    finally:
        bar.close()
    results = evaluator.evaluate(model, method)
    summary = evaluator.summary(method, hparams(cfg, method), cfg.seed, step, results)
    summary["seconds"] = time.time() - started
    run.log(step, "eval", _flat(summary))
    wandb.log({f"eval/{k}": v for k, v in _flat(summary).items()}, step)
    wandb.finish()
    if cfg.save_model:
        save_model_atomic(merge_lora(model) if cfg.lora.enabled else model, tokenizer, run.path / MODEL_DIR)
    run.finish(summary)
    state_path.unlink(missing_ok=True)
    return RunResult(run.path, summary, step - (resumed_from or 0), resumed_from, time.time() - started)


def trainable_model(cfg: LLMConfig, base_path: Path, device: torch.device) -> Any:
    """The model a run trains, in train mode: the base's weights, with LoRA adapters when `lora.enabled` (their
    random init a function of the seed, so a run is reproducible; a resume overwrites them anyway)."""
    model = load_causal_lm(base_path, device, cfg.dtype)
    if cfg.lora.enabled:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = apply_lora(model, cfg.lora)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if cfg.lora.enabled:  # frozen embeddings: reentrant checkpointing (transformers < 5) needs inputs with grads
            model.enable_input_require_grads()
    return model.train()


def _flat(summary: dict[str, Any]) -> dict[str, float]:
    return {
        "new_task": summary["new_task"],
        **{f"probe/{k}": v for k, v in summary["prior"].items()},
        "forgetting": summary["forgetting"],
        **summary["predictors"],
    }


def save_model_atomic(model: Any, tokenizer: Any, out: Path) -> None:
    """save_pretrained into a folder that appears whole or not at all."""

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    atomic_write_folder(out, write)


def evaluate_model(cfg: LLMConfig, model_dir: Path | None) -> dict[str, Any]:
    """The base's results, or a saved model's, against the experiment's base."""
    tokenizer, base, task, device, _path = load_experiment(cfg)
    evaluator = LLMEvaluator(cfg, base, tokenizer, task, str(cfg.model))
    base_results = evaluator.base_results()
    if model_dir is None:
        return {"base": base_results}
    if not (Path(model_dir) / "config.json").is_file():
        raise ConfigError(f"--model-dir: {model_dir} holds no saved model (config.json)")
    model = load_causal_lm(Path(model_dir), device, cfg.dtype)
    return {"base": base_results, "model": evaluator.evaluate(model, str(model_dir))}
