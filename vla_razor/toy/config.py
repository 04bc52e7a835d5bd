"""Configuration of the ParityMNIST experiment (paper Appendix B.3); loaded from configs/toy_*.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vla_razor.config import option
from vla_razor.optim import Schedule
from vla_razor.toy.data import DEFAULT_FASHION_DIR

Method = Literal["grpo", "grpo_kl", "sft1", "sft2", "sft_oracle"]
METHODS: tuple[str, ...] = ("grpo", "grpo_kl", "sft1", "sft2", "sft_oracle")


@dataclass
class ToyDataConfig:
    pretrain_per_task: int = option(500, "images of each task (ParityMNIST, FashionMNIST) used for pretraining", ge=1)
    parity_test: int = option(1000, "held-out MNIST digits for new-task accuracy and the KL predictors", ge=1)
    fashion_test: int = option(2000, "FashionMNIST test images for prior-task accuracy (forgetting)", ge=1)
    fashion_dir: Path = option(
        DEFAULT_FASHION_DIR, "folder with FashionMNIST idx files (Debian: dataset-fashion-mnist)"
    )
    seed: int = option(0, "seed of the data split and of the pretraining labels", ge=0)


@dataclass
class PretrainConfig:
    epochs: int = option(100, "passes over the 1,000 pretraining images", ge=1)
    lr: float = option(1e-3, "Adam learning rate", gt=0)
    batch_size: int = option(50, "images per pretraining step", ge=1)
    hidden: list[int] = option([512, 256], "hidden layer sizes (the paper: 512, 256)", ge=1)
    seed: int = option(0, "initialization and data-order seed of the base model", ge=0)


@dataclass
class FinetuneConfig:
    batch_size: int = option(32, "new-task images per update (RL samples group_size labels for each)", ge=1)
    group_size: int = option(8, "GRPO: labels sampled per image; advantages are normalized within the group", ge=2)
    warmup_steps: int = option(10, "linear warmup steps of both schedules", ge=0)
    grpo_kl_coef: float = option(0.1, "KL(pi || pi0) penalty of the grpo_kl method (paper: 0.1)", ge=0)
    max_grad_norm: float | None = option(None, "clip each model's gradient norm (none in B.3)", gt=0)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    evals_per_epoch: int = option(8, "mid-training checkpoints per epoch that become analysis points", ge=1)
    fisher_samples: int = option(500, "prior-task (FashionMNIST) inputs for the base model's Fisher diagonal", ge=1)
    cknna_samples: int = option(500, "probe inputs (ParityMNIST test) for CKNNA to the base representation", ge=2)
    cknna_k: int = option(10, "neighbours in CKNNA", ge=1)
    kl_budget: float | None = option(
        None,
        "stop a run at the first checkpoint whose forward KL to the base on the new task reaches this budget "
        "(none: train to the end); its model is the one at that checkpoint",
        ge=0,
    )


@dataclass
class ToyGridConfig:
    methods: list[Method] = option(list(METHODS), "fine-tuning methods to run")
    lr_min: float = option(3e-6, "smallest learning rate of the log-spaced grid", gt=0)
    lr_max: float = option(1e-3, "largest learning rate of the log-spaced grid", gt=0)
    lr_count: int = option(15, "learning rates in the grid (paper: 15 in [3e-6, 1e-3])", ge=1)
    schedules: list[Schedule] = option(["constant", "cosine"], "learning-rate schedules (both with warmup)")
    epochs: list[int] = option([1, 2], "epoch counts over the fine-tuning digits", ge=1)
    seeds: list[int] = option([0], "fine-tuning seeds (data order, RL samples)", ge=0)
    models_per_stack: int = option(
        5,
        "runs trained together as one stacked model (0: every run of a method/epochs/seed group). On 2 CPU cores "
        "5 is fastest: bigger stacks fall out of cache (docs/results/toy/bench.json)",
        ge=0,
    )

    def learning_rates(self) -> list[float]:
        if self.lr_count == 1:
            return [self.lr_min]
        return [float(x) for x in np.geomspace(self.lr_min, self.lr_max, self.lr_count)]


@dataclass
class ToyConfig:
    experiment: str = option("toy_parity_mnist", "run folders go to <runs_dir>/<experiment>/", plain_name=True)
    runs_dir: Path = option(Path("runs"), "root of all run folders")
    data: ToyDataConfig = option(ToyDataConfig(), "datasets")
    pretrain: PretrainConfig = option(PretrainConfig(), "base model")
    finetune: FinetuneConfig = option(FinetuneConfig(), "fine-tuning, shared by all methods")
    sweep: ToyGridConfig = option(ToyGridConfig(), "hyperparameter grid (the runs `vla-razor toy sweep` trains)")
    save_weights: bool = option(True, "write each run's final weights (safetensors, ~2 MB a run)")
    report: bool = option(True, "write the report after the sweep")
    wandb: Literal["auto", "offline", "online", "off"] = option(
        "auto", "mirror metrics to wandb (auto: offline unless logged in)"
    )
    threads: int = option(0, "torch CPU threads (0: all cores)", ge=0)
    forecast: Path | None = option(
        None,
        "a forecast.json (`vla-razor forecast RUNS_DIR`): every checkpoint also logs the retention it predicts "
        "from the run's forward KL (forecast/prior_mean), next to the measured one",
    )

    @property
    def experiment_dir(self) -> Path:
        return self.runs_dir / self.experiment
