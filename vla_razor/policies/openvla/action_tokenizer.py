"""Continuous robot actions <-> OpenVLA action tokens, and the per-dataset normalization statistics.

Invariants (the conventions of OpenVLA's released checkpoints):
  * An action dimension is first normalized to [-1, 1] with the dataset's 1st/99th percentiles:
    a_norm = 2 (a - q01) / (q99 - q01) - 1 on dims where ``mask`` is true, a_norm = a elsewhere (the
    gripper is left raw), then clipped to [-1, 1].
  * ``bins = linspace(-1, 1, n_bins)`` (256 edges); ``b = np.digitize(a_norm, bins)`` lies in [1, n_bins]
    (b = n_bins only for a_norm = 1 exactly); the token id is ``vocab_end - b``. With vocab_end = 32000
    (Llama-2's 32000 real tokens; the checkpoint pads its embedding to 32064) the ids are 31744..31999.
  * Decoding maps a token to the centre of bin interval ``clip(vocab_end - id - 1, 0, n_bins - 2)``: there
    are n_bins - 1 intervals, so b = n_bins and b = n_bins - 1 decode to the same (last) centre.
  * "Bin index" k = b - 1 in [0, n_bins) orders the restricted vocabulary everywhere in this package:
    column k of the per-dimension logits belongs to token ``vocab_end - 1 - k`` (``token_ids[k]``).
  * Un-normalization is 0.5 (a_norm + 1)(q99 - q01) + q01 on masked dims, identity elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

FRACTAL = "fractal20220817_data"
"""The Google-robot (RT-1) dataset whose statistics OpenVLA uses for SimplerEnv's Google-robot tasks."""

# OpenVLA-7B config.json, norm_stats["fractal20220817_data"]["action"] (q01, q99, mask).
FRACTAL_ACTION_STATS: dict[str, list[Any]] = {
    "q01": [
        -0.22453527510166169,
        -0.14820013284683228,
        -0.231589707583189,
        -0.3517994859814644,
        -0.4193011274933815,
        -0.43643461108207704,
        0.0,
    ],
    "q99": [
        0.17824687153100965,
        0.14938379630446405,
        0.21842354819178575,
        0.5892666035890578,
        0.35272657424211445,
        0.44796681255102094,
        1.0,
    ],
    "mask": [True, True, True, True, True, True, False],
}

EMBEDDED = "vla_razor_embedded"
"""Our embedded ManiSkill world: panda pd_ee_delta_pose actions are already in [-1, 1] (xyz, axis-angle,
gripper absolute -1 closed / +1 open), so its statistics are the identity on every dim."""

EMBEDDED_ACTION_STATS: dict[str, list[Any]] = {
    "q01": [-1.0] * 7,
    "q99": [1.0] * 7,
    "mask": [True] * 6 + [False],
}


@dataclass(frozen=True)
class ActionStats:
    """q01/q99 normalization of one dataset's actions; ``mask`` marks the normalized dims."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_dict(cls, stats: dict[str, Any], dataset: str = "?") -> ActionStats:
        """From a config's ``norm_stats[dataset]["action"]`` (a missing mask means every dim is normalized)."""
        for key in ("q01", "q99"):
            if key not in stats:
                raise KeyError(f"norm_stats[{dataset!r}]['action'] has no {key!r} (keys: {sorted(stats)})")
        q01 = np.asarray(stats["q01"], dtype=np.float64)
        q99 = np.asarray(stats["q99"], dtype=np.float64)
        mask = np.asarray(stats.get("mask", [True] * len(q01)), dtype=bool)
        if not (q01.shape == q99.shape == mask.shape) or q01.ndim != 1:
            raise ValueError(f"norm_stats[{dataset!r}]: q01, q99 and mask must be 1-D of one length")
        if np.any(q99[mask] <= q01[mask]):
            raise ValueError(f"norm_stats[{dataset!r}]: q99 must exceed q01 on every normalized dim")
        return cls(q01, q99, mask)

    @property
    def action_dim(self) -> int:
        return int(self.q01.shape[0])

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions [..., D] -> [-1, 1] (masked dims rescaled by q01/q99, all dims clipped)."""
        actions = np.asarray(actions, dtype=np.float64)
        scaled = 2.0 * (actions - self.q01) / np.where(self.mask, self.q99 - self.q01, 1.0) - 1.0
        return np.clip(np.where(self.mask, scaled, actions), -1.0, 1.0)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """[-1, 1] actions [..., D] -> raw actions (masked dims only; the gripper stays as decoded)."""
        normalized = np.asarray(normalized, dtype=np.float64)
        raw = 0.5 * (normalized + 1.0) * (self.q99 - self.q01) + self.q01
        return np.where(self.mask, raw, normalized)


def action_stats(norm_stats: dict[str, Any], dataset: str | None) -> ActionStats:
    """The action statistics of ``dataset`` in a checkpoint's ``norm_stats`` (None: the only one)."""
    if not norm_stats:
        raise KeyError("the policy config has no norm_stats; add them to config.json or the YAML config")
    if dataset is None:
        if len(norm_stats) != 1:
            raise KeyError(f"several datasets in norm_stats; pass one of {sorted(norm_stats)}")
        dataset = next(iter(norm_stats))
    if dataset not in norm_stats:
        raise KeyError(f"dataset {dataset!r} is not in norm_stats; available: {sorted(norm_stats)}")
    entry = norm_stats[dataset]
    return ActionStats.from_dict(entry.get("action", entry), dataset)


class ActionTokenizer:
    """Maps normalized actions in [-1, 1] to the ``n_bins`` ids just below ``vocab_end`` and back."""

    def __init__(self, vocab_end: int = 32000, n_bins: int = 256, low: float = -1.0, high: float = 1.0) -> None:
        if vocab_end < n_bins:
            raise ValueError(f"vocab_end {vocab_end} leaves no room for {n_bins} action tokens")
        self.vocab_end, self.n_bins, self.low, self.high = vocab_end, n_bins, low, high
        self.bins = np.linspace(low, high, n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        self.token_ids = torch.arange(vocab_end - 1, vocab_end - 1 - n_bins, -1, dtype=torch.long)
        """[n_bins] token id of each bin index k (column k of the restricted logits)."""

    @property
    def first_id(self) -> int:
        return self.vocab_end - self.n_bins

    def encode(self, normalized: np.ndarray | Tensor) -> Tensor:
        """Normalized actions [..., D] -> token ids [..., D] (values outside [low, high] are clipped)."""
        values = normalized.detach().cpu().double().numpy() if isinstance(normalized, Tensor) else normalized
        values = np.clip(np.asarray(values, dtype=np.float64), self.low, self.high)
        return torch.as_tensor(self.vocab_end - np.digitize(values, self.bins), dtype=torch.long)

    def bin_index(self, token_ids: Tensor) -> Tensor:
        """Token ids -> bin index k in [0, n_bins) (the column in restricted logits); raises on non-action ids."""
        token_ids = torch.as_tensor(token_ids, dtype=torch.long)
        k = self.vocab_end - 1 - token_ids
        if bool(((k < 0) | (k >= self.n_bins)).any()):
            bad = token_ids[(k < 0) | (k >= self.n_bins)][0].item()
            raise ValueError(f"token id {bad} is not an action token ({self.first_id}..{self.vocab_end - 1})")
        return k

    def decode(self, token_ids: Tensor | np.ndarray) -> np.ndarray:
        """Token ids [..., D] -> normalized actions [..., D] at the bin centres."""
        k = self.bin_index(torch.as_tensor(np.asarray(token_ids) if not isinstance(token_ids, Tensor) else token_ids))
        return self.bin_centers[np.clip(k.cpu().numpy(), 0, self.n_bins - 2)]

    def encode_actions(self, actions: np.ndarray, stats: ActionStats) -> Tensor:
        """Raw actions [..., D] -> token ids (normalize with the dataset's statistics, then bin)."""
        return self.encode(stats.normalize(actions))

    def decode_actions(self, token_ids: Tensor | np.ndarray, stats: ActionStats) -> np.ndarray:
        """Token ids [..., D] -> raw actions (bin centres, then un-normalize)."""
        return stats.unnormalize(self.decode(token_ids))
