"""Demonstration transitions for behaviour cloning and SFT: (image, instruction, action) rows over one or
more datasets of data_collection/dataset.py. A LeRobotDataset, RLDS or LIBERO folder is detected by its files and
converted once into our format (data_collection/convert.py's `as_ours`, cached; LIBERO's frames at `image_size`,
its gripper on the policy's `gripper_range`), so configs list any of the four. When all their frames fit `memory_budget_bytes` (the embedded
world's 112 px datasets do: 37 KB a frame), each episode's frames are read whole once and kept in memory, so a
shuffled batch costs no file opening or decompression; otherwise frames are read one by one (episode files keep
one gzip chunk per frame) through a few open files.

    steps = DemoTransitions([Path("data/demos/pick_can_angled")])
    images, instructions, actions = steps.rows(steps.epoch_order(seed=0, epoch=0)[:16])

The order of an epoch is a pure function of (seed, epoch), so a resumed trainer sees the same batches.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from data_collection.convert import as_ours
from data_collection.dataset import DatasetError, DemoDataset, action_mask, array_statistics, widen_degenerate


class DemoTransitions:
    """Every step of every episode of `roots`, as rows; images are read on demand."""

    def __init__(
        self,
        roots: list[Path],
        max_open_files: int = 64,
        memory_budget_bytes: int = 4 << 30,
        image_size: int = 0,
        gripper_range: tuple[float, float] = (0.0, 1.0),
    ):
        if not roots:
            raise DatasetError(
                "no demonstration datasets given (a list of folders made by data_collection/rt1_grid.py)"
            )
        self.datasets = [
            DemoDataset(as_ours(root, image_size=image_size, gripper_range=gripper_range)) for root in roots
        ]
        rows = [
            (d, e, t) for d, ds in enumerate(self.datasets) for e, m in enumerate(ds.episodes) for t in range(m.steps)
        ]
        if not rows:
            raise DatasetError(f"{', '.join(str(r) for r in roots)}: no transitions (empty datasets)")
        self.index = np.asarray(rows, dtype=np.int64)
        """[N, 3]: (dataset, episode, step) of each row."""
        self.actions = np.concatenate(
            [ds.load(e, images=False).actions for ds in self.datasets for e in range(len(ds))]
        ).astype(np.float32)
        """[N, 7] actions of every row (small: kept in memory)."""
        if self.actions.ndim != 2 or self.actions.shape[1] != 7:
            raise DatasetError(
                f"{', '.join(str(r) for r in roots)}: actions of shape {list(self.actions.shape)}, "
                "expected [steps, 7] (xyz, roll pitch yaw, gripper)"
            )
        bad = ~np.isfinite(self.actions).all(axis=1)
        if bad.any():
            d, e, t = (int(v) for v in self.index[int(np.argmax(bad))])
            raise DatasetError(
                f"{self.datasets[d].root}: episode {e}, step {t} has a NaN or infinite action "
                f"({int(bad.sum())} such steps in all); recollect the dataset or drop those episodes"
            )
        self._files: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._max_open = max_open_files
        self._in_memory: dict[tuple[int, int], np.ndarray] = {}
        for d, ds in enumerate(self.datasets):
            if len(ds):
                _, frames = self._frames(d, 0)
                if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[1:3]) < 16:
                    raise DatasetError(
                        f"{ds.root}: frames of shape {list(frames.shape[1:])}, expected "
                        "[height, width, 3] of at least 16 x 16 pixels"
                    )
        _, first = self._frames(*(int(v) for v in self.index[0, :2]))
        self.keep_in_memory = len(self) * int(np.prod(first.shape[1:])) * first.dtype.itemsize <= memory_budget_bytes
        """Whether episodes' frames are read whole and kept (all frames fit the budget)."""

    def __len__(self) -> int:
        return len(self.index)

    @property
    def tasks(self) -> list[str]:
        return sorted({t for ds in self.datasets for t in ds.tasks})

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """A permutation of the rows, fixed by (seed, epoch)."""
        return np.random.default_rng([seed, epoch]).permutation(len(self))

    def _frames(self, dataset: int, episode: int) -> Any:
        import h5py  # optional (the sim and robot extras): only the episode files need it

        key = (dataset, episode)
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        ds = self.datasets[dataset]
        path = ds.root / ds.episodes[episode].file
        try:
            f = h5py.File(path, "r")
            frames = f["traj/obs/rgb"]
        except (OSError, KeyError) as err:
            raise DatasetError(f"{path}: cannot read its frames (truncated or foreign?): {err}") from None
        self._files[key] = (f, frames)
        if len(self._files) > self._max_open:
            old_file, _ = self._files.popitem(last=False)[1]
            old_file.close()
        return self._files[key]

    def rows(self, rows: np.ndarray) -> tuple[list[np.ndarray], list[str], np.ndarray]:
        """(images uint8 [H, W, 3] each, instructions, actions [B, 7]) of the given row numbers."""
        images, instructions = [], []
        for d, e, t in self.index[rows]:
            key = (int(d), int(e))
            if self.keep_in_memory:
                if key not in self._in_memory:
                    self._in_memory[key] = np.asarray(self._frames(*key)[1][:])
                images.append(self._in_memory[key][int(t)])
            else:
                images.append(self._frames(*key)[1][int(t)])
            instructions.append(self.datasets[key[0]].episodes[key[1]].instruction)
        return images, instructions, self.actions[rows]

    def action_statistics(self, name: str) -> dict[str, Any]:
        """norm_stats entry {name: {"action": {q01, q99, ..., mask}}} over every row (pooled across datasets),
        with [q01, q99] widened to hold each dataset's own [q01, q99]: pooled quantiles alone would clip a small
        dataset's distinctive actions (a drawer's roll among many pick-can steps) as outliers."""
        stats = array_statistics(self.actions, action_mask())
        lengths = np.cumsum([0] + [int((self.index[:, 0] == d).sum()) for d in range(len(self.datasets))])
        for start, end in zip(lengths[:-1], lengths[1:]):
            own = array_statistics(self.actions[start:end], action_mask())
            stats["q01"] = np.minimum(stats["q01"], own["q01"]).tolist()
            stats["q99"] = np.maximum(stats["q99"], own["q99"]).tolist()
        return {
            name: {
                "action": widen_degenerate(stats),
                "num_transitions": len(self),
                "num_trajectories": sum(len(d) for d in self.datasets),
            }
        }

    def close(self) -> None:
        for f, _ in self._files.values():
            f.close()
        self._files.clear()
        self._in_memory.clear()


def random_shifts(images: list[np.ndarray], rows: np.ndarray, shift: int, seed: int, step: int) -> list[np.ndarray]:
    """Each image moved by up to `shift` pixels in x and y (edge-padded, cropped back to its size), the offsets
    drawn from (seed, step, row): the same row of the same update is shifted the same way however the batch is
    split among processes, and a resumed run repeats them. shift 0 returns the images as they are."""
    if shift <= 0:
        return images
    out = []
    for image, row in zip(images, rows):
        dy, dx = np.random.default_rng([seed, step, int(row)]).integers(-shift, shift + 1, 2)
        h, w = image.shape[:2]
        padded = np.pad(image, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
        out.append(padded[shift + dy : shift + dy + h, shift + dx : shift + dx + w])
    return out
