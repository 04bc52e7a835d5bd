"""ParityMNIST: pretrain the base MLP, then fine-tune many copies of it at once (Appendix B.3).

A *group* is the set of runs that share a method, an epoch count and a seed, and differ only in learning
rate and schedule. They see the same images in the same order and, for RL, the same uniform draws (common
random numbers), so a group of M runs trains as one stacked model and gives the same results as M
separate runs (``tests/toy/test_train.py`` checks this).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vla_razor import core
from vla_razor.analysis.forecast import RetentionForecast
from vla_razor.config import to_dict
from vla_razor.optim import NonFiniteError, StackedAdamW, lr_multiplier
from vla_razor.runs import RunFolder, WandbMirror, atomic_write_json, load_tensors, save_tensors_atomic
from vla_razor.toy.config import FinetuneConfig, PretrainConfig, ToyConfig
from vla_razor.toy.data import NUM_CLASSES, ToyData, parity_correct, random_parity_labels
from vla_razor.toy.model import MLP, stack_state, stacked_forward, stacked_forward_chunked, unstack_state

PRIOR_PROBE = "fashion_mnist"
SFT_METHODS = ("sft1", "sft2", "sft_oracle")
RL_METHODS = ("grpo", "grpo_kl")


# ------------------------------------------------------------------------------------------ base model
def accuracy(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Plain classification accuracy (the prior task), over the last-but-one axis."""
    return (logits.argmax(-1) == classes).float().mean(-1)


def parity_accuracy(logits: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """ParityMNIST accuracy: the predicted label counts as correct if its parity matches the digit's."""
    correct = parity_correct(digits)  # [N, 10]
    predicted = logits.argmax(-1)  # [..., N]
    return (
        torch.gather(correct.expand(*predicted.shape, NUM_CLASSES), -1, predicted.unsqueeze(-1))
        .squeeze(-1)
        .float()
        .mean(-1)
    )


def expected_parity_accuracy(logits: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """Probability mass on correct labels: the success rate of the policy when it samples its answer."""
    return (logits.softmax(-1) * parity_correct(digits)).sum(-1).mean(-1)


def pretrain(cfg: PretrainConfig, data: ToyData, progress: bool = True) -> MLP:
    """The base policy pi0: trained jointly on ParityMNIST (random correct-parity labels) and FashionMNIST."""
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = MLP(hidden=tuple(cfg.hidden))
    parity_labels = random_parity_labels(data.parity_pretrain.digits, generator)
    inputs = torch.cat([data.parity_pretrain.inputs, data.fashion_pretrain.inputs])
    labels = torch.cat([parity_labels, data.fashion_pretrain.digits])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in tqdm(range(cfg.epochs), desc="pretrain base", disable=not progress, leave=False):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(model(inputs[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_or_pretrain_base(cfg: ToyConfig, data: ToyData, progress: bool = True) -> MLP:
    """Reuses ``<experiment>/base/`` when it was made with the same data and pretraining settings."""
    base_dir = cfg.experiment_dir / "base"
    fingerprint = _fingerprint({"data": to_dict(cfg.data), "pretrain": to_dict(cfg.pretrain)})
    info_path, weights_path = base_dir / "base.json", base_dir / "model.safetensors"
    if info_path.is_file() and weights_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{base_dir} holds a base model pretrained with other data/pretrain settings; "
                "use another experiment name or delete that folder"
            )
        model = MLP(hidden=tuple(cfg.pretrain.hidden))
        model.load_state_dict(load_tensors(weights_path))
        return model.eval()
    model = pretrain(cfg.pretrain, data, progress)
    with torch.no_grad():
        info = {
            "fingerprint": fingerprint,
            "data": to_dict(cfg.data),
            "pretrain": to_dict(cfg.pretrain),
            "new_task": parity_accuracy(model(data.parity_test.inputs), data.parity_test.digits).item(),
            "new_task_expected": expected_parity_accuracy(
                model(data.parity_test.inputs), data.parity_test.digits
            ).item(),
            "prior": {PRIOR_PROBE: accuracy(model(data.fashion_test.inputs), data.fashion_test.digits).item()},
        }
    save_tensors_atomic(weights_path, model.state_dict())
    atomic_write_json(info_path, info)
    return model


# ------------------------------------------------------------------------------------------ SFT labels
def oracle_distribution(base_probs: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """The KL-minimal distribution with perfect accuracy: pi0 renormalized on the correct labels.

    This is the I-projection argmin_q KL(q || pi0) s.t. q^T R = 1 (Lemma 5.1: rejection sampling from pi0).
    The paper writes argmin_q KL(pi0 || q); read literally that is +inf for every feasible q wherever pi0
    puts mass on a wrong label, and among q supported on the correct labels, KL(pi0(.|R) || q) is also
    minimized (at 0) by the same renormalized pi0. So both readings give this closed form.
    """
    masked = base_probs * correct
    return masked / masked.sum(-1, keepdim=True)


def sft_labels(method: str, digits: torch.Tensor, base_probs: torch.Tensor, seed: int) -> torch.Tensor:
    """Annotations for the fine-tuning digits, drawn once per image as a fixed SFT dataset."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    parity = digits % 2
    if method == "sft1":  # even -> 0, odd -> 1
        return parity.clone()
    if method == "sft2":  # even -> {0, 4}, odd -> {1, 5}
        return parity + 4 * torch.randint(0, 2, (len(digits),), generator=generator)
    if method == "sft_oracle":
        q = oracle_distribution(base_probs, parity_correct(digits).float())
        return torch.multinomial(q, 1, generator=generator).squeeze(1)
    raise ValueError(f"{method!r} is not an SFT method (expected one of {SFT_METHODS})")


# ------------------------------------------------------------------------------------------ reference
@dataclass
class BaseReference:
    """Everything about pi0 that every checkpoint is compared against, computed once per experiment."""

    state: dict[str, torch.Tensor]
    parity_logits: torch.Tensor  # [N_test, 10]
    parity_hidden: torch.Tensor  # [N_test, 768]
    new_task: float
    prior: dict[str, float]
    fisher: dict[str, torch.Tensor]

    @classmethod
    def build(cls, model: MLP, data: ToyData, cfg: FinetuneConfig) -> BaseReference:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stacked = {k: v.unsqueeze(0) for k, v in state.items()}
        parity_logits, parity_hidden = stacked_forward_chunked(stacked, data.parity_test.inputs)
        fashion_logits, _ = stacked_forward_chunked(stacked, data.fashion_test.inputs)
        fisher_inputs = data.fashion_pretrain.inputs[: cfg.fisher_samples]
        return cls(
            state=state,
            parity_logits=parity_logits[0],
            parity_hidden=parity_hidden[0],
            new_task=parity_accuracy(parity_logits[0], data.parity_test.digits).item(),
            prior={PRIOR_PROBE: accuracy(fashion_logits[0], data.fashion_test.digits).item()},
            fisher=core.fisher_diagonal(model, fisher_inputs),
        )

    def summary(self) -> dict:
        return {"new_task": self.new_task, "prior": dict(self.prior)}

    def probs(self, inputs: torch.Tensor) -> torch.Tensor:
        """pi0(.|x) for the oracle labels."""
        logits, _ = stacked_forward_chunked({k: v.unsqueeze(0) for k, v in self.state.items()}, inputs)
        return logits[0].softmax(-1)


# ------------------------------------------------------------------------------------------ fine-tuning
@dataclass
class RunSpec:
    """One fine-tuning run of a group."""

    method: str
    lr: float
    schedule: str
    epochs: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-lr{self.lr:.2e}-{self.schedule}-ep{self.epochs}-s{self.seed}"


def evaluate_checkpoints(
    params: dict[str, torch.Tensor], base: BaseReference, data: ToyData, cfg: FinetuneConfig, final: bool
) -> list[dict]:
    """New-task and prior-task performance and every forgetting predictor, one dict per stacked model."""
    with torch.no_grad():
        parity_logits, parity_hidden = stacked_forward_chunked(params, data.parity_test.inputs)
        fashion_logits, _ = stacked_forward_chunked(params, data.fashion_test.inputs)
        models = parity_logits.shape[0]
        new_task = parity_accuracy(parity_logits, data.parity_test.digits)
        expected = expected_parity_accuracy(parity_logits, data.parity_test.digits)
        prior = accuracy(fashion_logits, data.fashion_test.digits)
        base_logits = base.parity_logits.expand_as(parity_logits)
        divergences = {
            name: fn(base_logits, parity_logits, reduction="none").mean(-1) for name, fn in core.DIVERGENCES.items()
        }
        probe = slice(0, cfg.cknna_samples)
        per_model = {
            "weight_l1": core.weight_change_l1_per_model(base.state, params),
            "fisher_l2": core.fisher_weighted_l2_per_model(base.fisher, base.state, params),
            "spectral": core.spectral_norm_change_per_model(base.state, params),
            "activation_l1": core.activation_change_per_model(base.parity_hidden, parity_hidden, p=1),
            "activation_l2": core.activation_change_per_model(base.parity_hidden, parity_hidden, p=2),
            **divergences,
        }
        results = []
        for m in range(models):
            predictors = {name: values[m].item() for name, values in per_model.items()}
            predictors["cknna"] = core.cknna(base.parity_hidden[probe], parity_hidden[m][probe], k=cfg.cknna_k)
            if final:
                tuned = unstack_state(params, m)
                predictors["sparsity"] = core.update_sparsity(base.state, tuned)
                ranks = core.update_rank(base.state, tuned)
                predictors["rank"] = sum(ranks.values()) / max(1, len(ranks))
            prior_m = {PRIOR_PROBE: prior[m].item()}
            results.append(
                {
                    "new_task": new_task[m].item(),
                    "new_task_expected": expected[m].item(),
                    "prior": prior_m,
                    "forgetting": base.prior[PRIOR_PROBE] - prior_m[PRIOR_PROBE],
                    "predictors": predictors,
                }
            )
    return results


def sft_step_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the fixed annotations, summed over the M stacked models (each gets its own mean)."""
    models, batch, _ = logits.shape
    targets = labels.expand(models, batch).reshape(-1, 1)
    return core.sft_loss(logits.reshape(-1, 1, NUM_CLASSES), targets, torch.ones_like(targets)) * models


def rl_step_loss(
    logits: torch.Tensor,
    correct: torch.Tensor,
    uniforms: torch.Tensor,
    ref_logits: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO on one-token answers: sample a group of labels per image, reward = right parity.

    ``uniforms`` [B, G] are shared by all stacked models (inverse-CDF sampling), so each model draws what it
    would draw if trained alone. With one update per batch the ratio is 1 and this is REINFORCE with a
    group-normalized baseline. ``ref_logits`` adds ``kl_coef`` times the exact KL(pi || pi0).
    Returns the loss summed over models and each model's mean reward.
    """
    models, batch, _ = logits.shape
    group = uniforms.shape[1]
    cdf = logits.detach().softmax(-1).cumsum(-1)
    samples = torch.searchsorted(cdf, uniforms.expand(models, batch, group).contiguous()).clamp(max=NUM_CLASSES - 1)
    rewards = torch.gather(correct.expand(models, batch, NUM_CLASSES), -1, samples).float()
    group_ids = torch.arange(models * batch).repeat_interleave(group)
    advantages = core.normalized_advantages(rewards.reshape(-1), group_ids)
    per_sample = logits.unsqueeze(2).expand(models, batch, group, NUM_CLASSES).reshape(-1, 1, NUM_CLASSES)
    tokens = samples.reshape(-1, 1)
    loss = core.grpo_loss(per_sample, tokens, torch.ones_like(tokens), advantages) * models
    if ref_logits is not None:
        flat = logits.reshape(-1, 1, NUM_CLASSES)
        unused = torch.zeros(flat.shape[0], 1, dtype=torch.long)  # the exact penalty needs no sampled tokens
        ref = ref_logits.expand_as(logits).reshape(-1, 1, NUM_CLASSES)
        loss = loss + kl_coef * core.kl_penalty(flat, ref, unused, torch.ones_like(unused)) * models
    return loss, rewards.mean(dim=(1, 2))


def finetune_group(
    runs: list[RunSpec],
    base: BaseReference,
    data: ToyData,
    cfg: FinetuneConfig,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], list[list[dict]]]:
    """Trains all ``runs`` (same method, epochs, seed) as one stack; returns final params and eval history.

    The history has one list per checkpoint, each with one dict per run (plus "step").
    """
    method, epochs, seed = runs[0].method, runs[0].epochs, runs[0].seed
    if any((r.method, r.epochs, r.seed) != (method, epochs, seed) for r in runs):
        raise ValueError("a group's runs must share method, epochs and seed")
    models = len(runs)
    params = stack_state(base.state, models)
    optimizer = StackedAdamW(params, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)
    peak_lrs = torch.tensor([r.lr for r in runs])
    generator = torch.Generator().manual_seed(seed)

    inputs, digits = data.parity_finetune.inputs, data.parity_finetune.digits
    correct = parity_correct(digits)
    labels = sft_labels(method, digits, base.probs(inputs), seed) if method in SFT_METHODS else None
    steps_per_epoch = (len(digits) + cfg.batch_size - 1) // cfg.batch_size
    total_steps = steps_per_epoch * epochs
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    history: list[list[dict]] = []
    base_model_params = {k: v.unsqueeze(0) for k, v in base.state.items()}

    bar = tqdm(
        total=total_steps, desc=f"{method} ep{epochs} s{seed} ({models} runs)", disable=not progress, leave=False
    )
    step = 0
    stopped: dict[int, dict] = {}  # model -> its checkpoint that reached cfg.kl_budget (frozen from then on)
    training = torch.ones(models)
    for _epoch in range(epochs):
        order = torch.randperm(len(digits), generator=generator)
        for start in range(0, len(digits), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            batch = len(idx)
            logits, _ = stacked_forward(params, inputs[idx])  # [M, B, 10]
            if labels is not None:
                loss, train_metric, train_values = sft_step_loss(logits, labels[idx]), "train_nll", None
            else:
                ref_logits = None
                if method == "grpo_kl":
                    with torch.no_grad():
                        ref_logits, _ = stacked_forward(base_model_params, inputs[idx])
                uniforms = torch.rand(batch, cfg.group_size, generator=generator)
                loss, train_values = rl_step_loss(logits, correct[idx], uniforms, ref_logits, cfg.grpo_kl_coef)
                train_metric = "train_reward"
            diverged = [r.name for r, ok in zip(runs, torch.isfinite(logits.detach()).flatten(1).all(1)) if not ok]
            if diverged or not torch.isfinite(loss.detach()):
                raise NonFiniteError(
                    f"toy {method}: non-finite outputs or loss at update {step + 1} of "
                    f"{', '.join(diverged) or 'the stack'}; stopped before the optimizer step (check the learning "
                    "rates and max_grad_norm)"
                )
            loss.backward()
            multipliers = torch.tensor([lr_multiplier(step, total_steps, cfg.warmup_steps, r.schedule) for r in runs])
            optimizer.step(peak_lrs * multipliers * training)  # lr 0: AdamW leaves a stopped model as it is
            step += 1
            bar.update(1)
            if step % eval_every == 0 or step == total_steps:
                evals = evaluate_checkpoints(params, base, data, cfg, final=step == total_steps)
                if train_values is None:  # per-model SFT loss on this batch
                    with torch.no_grad():
                        train_values = (
                            torch.nn.functional.cross_entropy(
                                logits.detach().reshape(-1, NUM_CLASSES), labels[idx].repeat(models), reduction="none"
                            )
                            .view(models, batch)
                            .mean(1)
                        )
                for m, result in enumerate(evals):
                    result["step"] = step
                    result["epoch"] = step / steps_per_epoch
                    result["train"] = {
                        train_metric: train_values[m].item(),
                        "lr": (peak_lrs[m] * multipliers[m] * training[m]).item(),
                    }
                    if m in stopped:  # the same model as at its stop: keep that checkpoint, counted once
                        evals[m] = stopped[m]
                    elif cfg.kl_budget is not None and result["predictors"]["forward_kl"] >= cfg.kl_budget:
                        result["stopped_at_kl_budget"] = True
                        stopped[m] = result
                        training[m] = 0.0
                history.append(evals)
    bar.close()
    return {k: v.detach() for k, v in params.items()}, history


# What does not change what a toy run computes: the sweep's grid (a run belongs to every grid that holds its
# learning rate), where and how results are written, threads
NOT_IN_RUN_IDENTITY = ("sweep.", "save_weights", "report", "wandb", "threads", "forecast", "experiment", "runs_dir")


def run_config(cfg: ToyConfig, run: RunSpec) -> dict:
    """What a toy run's folder records as its config.yaml (and is compared with on a rerun)."""
    return {
        **to_dict(cfg),
        "run": {"method": run.method, "lr": run.lr, "schedule": run.schedule, "epochs": run.epochs, "seed": run.seed},
    }


def run_group(cfg: ToyConfig, runs: list[RunSpec], base: BaseReference, data: ToyData, progress: bool = True) -> float:
    """Trains one group and writes a run folder per run; returns the wall time in seconds."""
    forecast = RetentionForecast.load(cfg.forecast) if cfg.forecast else None
    folders = [RunFolder(cfg.experiment_dir / "runs" / r.name) for r in runs]
    for run, folder in zip(runs, folders):
        folder.start(run_config(cfg, run))
    started = time.perf_counter()
    params, history = finetune_group(runs, base, data, cfg.finetune, progress)
    seconds = time.perf_counter() - started
    for m, (run, folder) in enumerate(zip(runs, folders)):
        hparams = {"lr": run.lr, "schedule": run.schedule, "epochs": run.epochs, "batch_size": cfg.finetune.batch_size}
        if cfg.finetune.kl_budget is not None:
            hparams["kl_budget"] = cfg.finetune.kl_budget
        if run.method in RL_METHODS:
            hparams["group_size"] = cfg.finetune.group_size
        if run.method == "grpo_kl":
            hparams["kl_coef"] = cfg.finetune.grpo_kl_coef
        common = {"domain": "toy", "method": run.method, "hparams": hparams, "seed": run.seed, "base": base.summary()}
        wandb = WandbMirror(cfg.wandb, "vla-razor-toy", run.name, {**common, "config": to_dict(cfg)}, folder.path)
        logged: set[int] = set()
        for checkpoint in history:
            result = checkpoint[m]
            step = result["step"]
            if step in logged:  # a run stopped at its KL budget: later checkpoints are that same model
                continue
            logged.add(step)
            flat = {
                "new_task": result["new_task"],
                "new_task_expected": result["new_task_expected"],
                "forgetting": result["forgetting"],
                f"prior/{PRIOR_PROBE}": result["prior"][PRIOR_PROBE],
                **{f"predictors/{k}": v for k, v in result["predictors"].items()},
            }
            if forecast is not None:
                flat["forecast/prior_mean"] = forecast.predict(result["predictors"]["forward_kl"])
            folder.log(step, "eval", flat)
            folder.log(step, "train", result["train"])
            wandb.log({**flat, **{f"train/{k}": v for k, v in result["train"].items()}}, step)
            point = {**common, **{k: v for k, v in result.items() if k != "train"}}
            if result is not history[-1][m]:
                folder.add_point(point)
        wandb.finish()
        if cfg.save_weights:
            folder.save_checkpoint("final", unstack_state(params, m), metadata={"method": run.method, "run": run.name})
        final = {
            **common,
            **{k: v for k, v in history[-1][m].items() if k != "train"},
            "train_seconds": seconds / len(runs),
        }
        if forecast is not None:
            final["forecast"] = {
                "prior_mean": forecast.predict(final["predictors"]["forward_kl"]),
                "file": str(cfg.forecast),
            }
        folder.finish(final)
    return seconds


def load_base_for_experiment(cfg: ToyConfig, data: ToyData, progress: bool = True) -> BaseReference:
    model = load_or_pretrain_base(cfg, data, progress)
    return BaseReference.build(model, data, cfg.finetune)


def base_info(cfg: ToyConfig) -> dict:
    path = Path(cfg.experiment_dir) / "base" / "base.json"
    return json.loads(path.read_text()) if path.is_file() else {}
