"""Where one process computes and from which seeds: the `device` setting resolved, the global RNGs seeded."""

from __future__ import annotations

import numpy as np
import torch

from vla_razor.config import ConfigError


def resolve_device(device: str) -> str:
    """ "auto": CUDA when torch sees a GPU, else the CPU; any other name as given ("cuda" only if there is one)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    """Seeds torch's and numpy's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def peak_memory_metrics(device: str | torch.device) -> dict[str, float]:
    """{"peak_gpu_memory_gib": ...}, the most this process's tensors have held on the GPU so far, or {} off a GPU:
    what a user sizing a 7B run on their own GPU needs beside the speed (torch's allocator figure, without the
    CUDA context's few hundred MiB)."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return {}
    return {"peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30}
