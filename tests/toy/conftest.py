"""Small real ParityMNIST data and a briefly pretrained base, shared by the toy tests."""

from pathlib import Path

import pytest

from vla_razor.config import load_config
from vla_razor.toy.config import ToyConfig
from vla_razor.toy.data import load_toy_data


def tiny_values(tmp_path: Path, **overrides) -> dict:
    """The dotted fields of a tiny toy experiment under tmp_path, with `overrides`."""
    values = {
        "experiment": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "data.pretrain_per_task": 200,
        "data.parity_test": 300,
        "data.fashion_test": 300,
        "pretrain.epochs": 15,
        "pretrain.hidden": [64, 32],
        "finetune.batch_size": 64,
        "finetune.evals_per_epoch": 2,
        "finetune.fisher_samples": 64,
        "finetune.cknna_samples": 100,
        "sweep.methods": ["grpo", "sft1"],
        "sweep.lr_min": 1e-4,
        "sweep.lr_max": 1e-3,
        "sweep.lr_count": 2,
        "sweep.schedules": ["constant"],
        "sweep.epochs": [1],
        "save_weights": True,
        "report": False,
        "wandb": "off",
        "threads": 2,
    }
    values.update(overrides)
    return values


def tiny_config(tmp_path: Path, **overrides) -> ToyConfig:
    return load_config(ToyConfig, None, tiny_values(tmp_path, **overrides))


@pytest.fixture(scope="session")
def tiny_data():
    return load_toy_data(pretrain_per_task=200, parity_test=300, fashion_test=300)
