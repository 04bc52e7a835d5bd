"""The optimizer settings of every trainer (`OptimConfig`), learning-rate schedules, the finite-update guard,
and AdamW over stacked models.

Schedules follow the paper's Table 2 / B.2 names: "constant" (constant with linear warmup) and "cosine"
(cosine decay to 0 after linear warmup), as in Hugging Face's ``get_*_schedule_with_warmup``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch.optim.adamw import adamw

from vla_razor.config import ConfigError, option

Schedule = Literal["constant", "cosine"]
MasterWeights = Literal["none", "float32"]


@dataclass
class OptimConfig:
    """AdamW as the paper's B.2 / Table 2 (weight decay 0, grad-norm 1, linear warmup): one class for the robot's
    and the LLM's trainers, each domain giving its own defaults where it uses it (robot: batch 16, warmup 10; LLM:
    micro-batches of 8). A field one domain's trainers do not use is refused there (`refuse_unused`)."""

    lr: float = option(3e-5, "peak learning rate", ge=0)
    batch_size: int = option(
        32, "rows per update (robot: (image, instruction, action) transitions; LLM: examples of SFT / SimPO)", ge=1
    )
    micro_batch_size: int | None = option(
        None, "LLM only: sequences per forward / backward (gradient accumulation bounds memory)", ge=1
    )
    epochs: int = option(1, "passes over the training rows", ge=1)
    max_steps: int | None = option(None, "stop after this many updates (None: the epochs' / iterations' worth)", ge=1)
    warmup_steps: int = option(50, "linear warmup updates", ge=0)
    schedule: Schedule = option("constant", "'constant' (with warmup) or 'cosine' (with warmup)")
    max_grad_norm: float = option(1.0, "gradient clipping norm", gt=0)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    master_weights: MasterWeights = option(
        "none",
        "robot only: 'none' (AdamW in the parameters' own dtype: a bf16 policy keeps bf16 moments and rounds each "
        "update to bf16) or 'float32' (mixed precision as usually trained: float32 master weights and AdamW "
        "moments, the bf16 parameters a rounded copy of the master after every step; 6 more bytes a parameter)",
    )
    image_shift: int = option(
        0,
        "robot behaviour cloning only: shift each training image by up to this many pixels (edge-padded random "
        "crop, DrQ-style), so the policy locates things relative to what it sees rather than by absolute pixel; "
        "0: off",
        ge=0,
    )


def refuse_unused(optim: OptimConfig, where: str, unused: dict[str, str]) -> None:
    """Refuses a field (name -> why) that the trainers behind `where` (e.g. "sft.optim") would ignore, so that no
    setting silently does nothing. A field is unused while it holds OptimConfig's own default."""
    defaults = {f.name: f.default for f in fields(OptimConfig)}
    for name, why in unused.items():
        if getattr(optim, name) != defaults[name]:
            raise ConfigError(f"{where}.{name}: {why}; leave it unset (got {getattr(optim, name)!r})")


class NonFiniteError(ArithmeticError):
    """A loss or gradient that is NaN or infinite: training stops before the optimizer step would write it into
    the weights (the run's last checkpoint stays as it was)."""


def check_finite(
    where: str, step: int, loss: float | torch.Tensor, grad_norm: float | torch.Tensor | None = None
) -> None:
    """Stops a trainer at the first non-finite loss or gradient norm, naming the trainer and the update."""
    loss_value = float(loss)
    norm_value = None if grad_norm is None else float(grad_norm)
    if math.isfinite(loss_value) and (norm_value is None or math.isfinite(norm_value)):
        return
    what = f"loss {loss_value}" if not math.isfinite(loss_value) else f"gradient norm {norm_value}"
    raise NonFiniteError(
        f"{where}: {what} at update {step + 1}; stopped before the optimizer step, the weights are those of the "
        "previous update (check the learning rate, max_grad_norm, the data's actions and the base's weights)"
    )


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: Schedule) -> float:
    """Factor on the peak learning rate for the update at ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {schedule!r}: expected 'constant' or 'cosine'")


def make_adamw(params: list[torch.nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    """The trainers' optimizer: torch's AdamW, or `MasterWeightAdamW` with ``optim.master_weights: float32``."""
    if optim.master_weights == "float32":
        return MasterWeightAdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.master_weights != "none":
        raise ConfigError(f"optim.master_weights: expected 'none' or 'float32', got {optim.master_weights!r}")
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)


class MasterWeightAdamW(torch.optim.Optimizer):
    """AdamW over float32 master weights for parameters kept in a lower precision (bf16) for compute.

    Per parameter the state holds ``master`` (float32, made from the parameter at its first step), ``exp_avg``
    and ``exp_avg_sq`` (float32) and ``step``. A step takes the (bf16) gradient to float32, makes torch's own
    AdamW update on the master (`torch.optim.adamw.adamw`, so the arithmetic is AdamW's exactly), and copies the
    master, rounded to nearest, into the parameter: small updates accumulate in the master instead of being lost
    to bf16 rounding. Float32 parameters need no master and are updated in place (then this is AdamW). The
    float32 temporaries are made a chunk of at most ``chunk_elements`` values at a time. Its state saves and
    restores like AdamW's (vla_razor.training_state: every per-parameter tensor, the master too).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        chunk_elements: int = 1 << 28,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.chunk_elements = chunk_elements

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 (torch.optim.Optimizer's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            chunk: list[torch.nn.Parameter] = []
            size = 0
            for p in group["params"]:
                if p.grad is None:
                    continue
                chunk.append(p)
                size += p.numel()
                if size >= self.chunk_elements:
                    self._update(group, chunk)
                    chunk, size = [], 0
            if chunk:
                self._update(group, chunk)
        return loss

    def _update(self, group: dict, params: list[torch.nn.Parameter]) -> None:
        masters, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                if p.dtype != torch.float32:
                    state["master"] = p.detach().float()
                state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
            masters.append(state.get("master", p))
            grads.append(p.grad.float())
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamw(
            masters,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=masters[0].device.type == "cuda",
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
        for p, master in zip(params, masters):
            if master is not p:
                p.copy_(master)


class StackedAdamW:
    """AdamW for parameters stacked on a leading model axis, each model with its own learning rate.

    Equivalent to one ``torch.optim.AdamW`` per model (tests check this), but one fused update for all.
    ``max_grad_norm`` clips each model's gradient by that model's own global norm.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = None,
    ) -> None:
        self.params = params
        self.betas, self.eps, self.weight_decay, self.max_grad_norm = betas, eps, weight_decay, max_grad_norm
        self.exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        self.update = {k: torch.zeros_like(v) for k, v in params.items()}  # scratch for the step
        self.steps = 0

    def _per_model(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """Each model's global gradient norm, [M]."""
        squares = [
            torch.linalg.vector_norm(p.grad.flatten(1), dim=1).square()
            for p in self.params.values()
            if p.grad is not None
        ]
        return torch.stack(squares).sum(0).sqrt()

    @torch.no_grad()
    def step(self, lrs: torch.Tensor) -> torch.Tensor:
        """One update with per-model learning rates ``lrs`` [M]; returns the pre-clipping grad norms.

        Every operation is in place on preallocated state: a stack of 30 ParityMNIST MLPs is 16M values,
        and fresh temporaries of that size cost more in page faults than the arithmetic. Gradients are
        zeroed (not freed) afterwards, so the next backward accumulates into the same memory.
        """
        norms = self.grad_norms()
        self.steps += 1
        beta1, beta2 = self.betas
        bias1 = 1 - beta1**self.steps
        bias2 = 1 - beta2**self.steps
        clip = None if self.max_grad_norm is None else (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        for name, p in self.params.items():
            grad = p.grad
            if grad is None:
                continue
            if clip is not None:
                grad.mul_(self._per_model(clip, grad))
            if self.weight_decay:
                p.mul_(self._per_model(1 - lrs.to(p.dtype) * self.weight_decay, p))
            m, v, update = self.exp_avg[name], self.exp_avg_sq[name], self.update[name]
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.div(v, bias2, out=update).sqrt_().add_(self.eps)
            torch.div(m, update, out=update)
            update.mul_(self._per_model(lrs.to(p.dtype) / bias1, update))
            p.sub_(update)
            grad.zero_()
        return norms
