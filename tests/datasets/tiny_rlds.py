"""Writes tiny RLDS datasets with tensorflow_datasets' own builder (the real TFDS writer); runs in the RT-1 venv,
which has TensorFlow and tensorflow-datasets (`make setup-rt1`):
    .venv-rt1/bin/python -m tests.datasets.tiny_rlds OUT_DIR
It prints {builder name: builder folder}. `episodes(name)` is numpy only and deterministic, so the tests rebuild
the raw arrays in the main venv and compare them with what the TF-free reader makes of the shards. Keys and
shapes follow Open X-Embodiment's fractal20220817_data (RT-1) and bridge_orig (Bridge V2); tiny_six_dof has a
6-D action (refused by the reader)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np


def camera_frames(rng: np.random.Generator, t: int, size: int) -> np.ndarray:
    """[t, size, size, 3] uint8 frames that compress like a camera's: a drifting gradient plus a little noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([xx, yy, (xx + yy) / 2], -1) * 200
    drift = np.arange(t, dtype=np.float32)[:, None, None, None] * 2
    return np.clip(base[None] + drift + rng.normal(0, 4, (t, size, size, 3)), 0, 255).astype(np.uint8)


def episodes(name: str, n: int = 2, t: int = 5, size: int = 16, camera: bool = False) -> list[dict]:
    """The raw steps of `name`'s builder; camera=True draws camera-like frames (the bench) instead of noise."""
    rng = np.random.default_rng(0 if name.startswith("fractal") else 1)
    out = []
    for e in range(n):
        images = camera_frames(rng, t, size) if camera else rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8)
        if name == "tiny_six_dof":
            steps = [
                {
                    "observation": {"image": images[k]},
                    "action": rng.normal(0, 1, 6).astype(np.float32),
                    "language_instruction": "wave",
                    "reward": 0.0,
                    "is_first": k == 0,
                    "is_last": k == t - 1,
                    "is_terminal": k == t - 1,
                }
                for k in range(t)
            ]
        elif name.startswith("fractal"):
            grip = np.array([0.0, 1.0, 0.0, 0.0, -1.0][:t] + [0.0] * max(0, t - 5), np.float32)[:, None]
            steps = [
                {
                    "observation": {"image": images[k], "natural_language_instruction": f"pick coke can {e}"},
                    "action": {
                        "world_vector": rng.normal(0, 0.02, 3).astype(np.float32),
                        "rotation_delta": rng.normal(0, 0.05, 3).astype(np.float32),
                        "gripper_closedness_action": grip[k],
                    },
                    "reward": float(k == t - 1),
                    "is_first": k == 0,
                    "is_last": k == t - 1,
                    "is_terminal": k == t - 1,
                }
                for k in range(t)
            ]
        else:
            state = np.cumsum(rng.normal(0, 0.01, (t, 7)), axis=0).astype(np.float32)
            opening = np.array([1.0, 1.0, 0.5, 0.0, 0.0][:t] + [0.0] * max(0, t - 5), np.float32)
            action = np.concatenate([rng.normal(0, 0.01, (t, 6)), opening[:, None]], axis=1).astype(np.float32)
            steps = [
                {
                    "observation": {"image_0": images[k], "state": state[k]},
                    "action": action[k],
                    "language_instruction": f"put the spoon in the pot {e}",
                    "reward": 0.0,
                    "is_first": k == 0,
                    "is_last": k == t - 1,
                    "is_terminal": k == t - 1,
                }
                for k in range(t)
            ]
        out.append({"steps": steps})
    return out


def write(out_dir: Path, n: int = 2, t: int = 5, size: int = 16, only_fractal: bool = False) -> dict:
    """Writes the builders under out_dir (n episodes of t steps, size-px images; the bench asks for more)."""
    import tensorflow_datasets as tfds

    def builder(name: str, step_features: dict) -> type:
        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"steps": tfds.features.Dataset(step_features)})
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, ep in enumerate(episodes(name, n, t, size, camera=size != 16)):
                yield i, ep

        cls_name = "".join(p.capitalize() for p in name.split("_"))
        body = {
            "VERSION": tfds.core.Version("0.1.0"),
            "_info": _info,
            "_split_generators": _split_generators,
            "_generate_examples": _generate_examples,
            "__module__": __name__,
        }
        # TFDS's catalogue registers these names already; ours are local builders of the same name.
        return types.new_class(
            cls_name, (tfds.core.GeneratorBasedBuilder,), {"skip_registration": True}, lambda ns: ns.update(body)
        )

    flags = {
        "reward": tfds.features.Scalar(np.float32),
        "is_first": np.bool_,
        "is_last": np.bool_,
        "is_terminal": np.bool_,
    }
    fractal = builder(
        "fractal20220817_data",
        {
            "observation": {
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "natural_language_instruction": tfds.features.Text(),
            },
            "action": {
                "world_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "rotation_delta": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "gripper_closedness_action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
            },
            **flags,
        },
    )
    bridge = builder(
        "bridge_orig",
        {
            "observation": {
                "image_0": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "state": tfds.features.Tensor(shape=(7,), dtype=np.float32),
            },
            "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
            "language_instruction": tfds.features.Text(),
            **flags,
        },
    )
    six = builder(
        "tiny_six_dof",
        {
            "observation": {"image": tfds.features.Image(shape=(size, size, 3), encoding_format="png")},
            "action": tfds.features.Tensor(shape=(6,), dtype=np.float32),
            "language_instruction": tfds.features.Text(),
            **flags,
        },
    )
    written = {}
    for cls in (fractal,) if only_fractal else (fractal, bridge, six):
        b = cls(data_dir=str(out_dir))
        b.download_and_prepare()
        written[b.name] = str(Path(b.data_dir))
    return written


def main() -> None:
    """OUT_DIR [N T SIZE]: with N T SIZE, only fractal20220817_data of that size (bench/dataset_throughput.py)."""
    if len(sys.argv) > 2:
        n, t, size = (int(v) for v in sys.argv[2:5])
        print(json.dumps(write(Path(sys.argv[1]), n, t, size, only_fractal=True)))
    else:
        print(json.dumps(write(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
