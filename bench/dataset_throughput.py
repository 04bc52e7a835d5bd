"""Dataset formats: conversion and SFT-loader throughput (frames/s) for a dataset of each format, beside ours.

    python bench/dataset_throughput.py                                   # 100 episodes x 100 steps, 112 px
    python bench/dataset_throughput.py --episodes 10 --steps 20 --out /tmp/ds.json   # quick look

Needs .venv-lerobot (make setup-lerobot) and a python with tensorflow-datasets to write the RLDS builder
(.venv-rt1, or --tfds-python). Makes one dataset of ours (data_collection/dataset.py's writer), converts it to a
LeRobotDataset with lerobot and back, writes an RLDS builder of the same size with tensorflow_datasets
(fractal20220817_data layout) and converts it; then SFT's loader (vla_razor/robot/data.py's DemoTransitions) reads
each: `open` is constructing it (for LeRobotDataset and RLDS: the one-time conversion into the cache), `epoch`
one shuffled pass of `rows` in batches of 32. Frames are camera-like (a drifting gradient plus noise, 112 px, the
embedded world's size). Prints a table; writes JSON (default docs/results/perf/dataset_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_collection.convert import ConvertConfig, convert  # noqa: E402
from data_collection.dataset import (  # noqa: E402
    DemoDataset,
    Episode,
    EpisodeMeta,
    episode_filename,
    write_episode,
    write_index,
)
from tests.datasets.tiny_rlds import camera_frames  # noqa: E402
from vla_razor.robot.data import DemoTransitions  # noqa: E402


def write_ours(root: Path, episodes: int, steps: int, size: int) -> None:
    rng = np.random.default_rng(0)
    metas = []
    for e in range(episodes):
        meta = EpisodeMeta(
            task="pick_can",
            instruction="pick coke can",
            seed=e,
            grid_point=e,
            grid_xy=[-0.2, 0.1],
            attempt=0,
            steps=steps,
            success=True,
            file=episode_filename(e, 0),
        )
        write_episode(
            root,
            Episode(
                images=camera_frames(rng, steps, size),
                proprio=rng.normal(size=(steps, 16)).astype(np.float32),
                actions=rng.uniform(-1, 1, (steps, 7)).astype(np.float32),
                rewards=np.zeros(steps, np.float32),
                meta=meta,
            ),
        )
        metas.append(meta)
    write_index(root, metas, {"env_id": "bench"}, "scripted", "bench")
    DemoDataset(root).write_statistics("bench")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def loader(src: Path, cache: Path, batch: int = 32) -> dict[str, float]:
    os.environ["VLA_RAZOR_DATASET_CACHE"] = str(cache)
    open_s, data = timed(lambda: DemoTransitions([src]))
    order = data.epoch_order(seed=0, epoch=0)
    epoch_s, _ = timed(lambda: [data.rows(order[i : i + batch]) for i in range(0, len(order), batch)])
    second_s, _ = timed(lambda: [data.rows(order[i : i + batch]) for i in range(0, len(order), batch)])
    n = len(data)
    data.close()
    return {
        "frames": n,
        "open_s": round(open_s, 2),
        "first_epoch_s": round(epoch_s, 2),
        "first_epoch_frames_per_s": round(n / (open_s + epoch_s), 1),
        "later_epoch_frames_per_s": round(n / second_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--tfds-python", default=str(REPO / ".venv-rt1" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "perf" / "dataset_throughput.json")
    args = parser.parse_args()
    frames = args.episodes * args.steps
    work = Path(tempfile.mkdtemp(prefix="dataset_bench_"))
    results: dict[str, dict] = {}
    try:
        t, _ = timed(lambda: write_ours(work / "ours", args.episodes, args.steps, args.size))
        results["write ours (h5, gzip)"] = {"seconds": round(t, 2), "frames_per_s": round(frames / t, 1)}
        for name, src, dst, to in (
            ("ours -> lerobot", "ours", "lerobot", "lerobot"),
            ("lerobot -> ours", "lerobot", "ours_back", "ours"),
        ):
            t, n = timed(lambda: convert(ConvertConfig(src=work / src, dst=work / dst, to=to)))
            assert n == frames, (name, n)
            results[name] = {"seconds": round(t, 2), "frames_per_s": round(frames / t, 1)}
            print(f"{name}: {frames / t:.0f} frames/s", flush=True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t, done = timed(
            lambda: subprocess.run(
                [
                    args.tfds_python,
                    "-m",
                    "tests.datasets.tiny_rlds",
                    str(work / "tfds"),
                    str(args.episodes),
                    str(args.steps),
                    str(args.size),
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        )
        rlds = Path(json.loads(done.stdout.strip().splitlines()[-1])["fractal20220817_data"])
        results["write rlds (tensorflow_datasets, png)"] = {
            "seconds": round(t, 2),
            "frames_per_s": round(frames / t, 1),
        }
        t, n = timed(lambda: convert(ConvertConfig(src=rlds, dst=work / "rlds_ours", to="ours")))
        results["rlds -> ours"] = {"seconds": round(t, 2), "frames_per_s": round(frames / t, 1)}
        print(f"rlds -> ours: {frames / t:.0f} frames/s", flush=True)
        for name, src in (("ours", work / "ours"), ("lerobot", work / "lerobot"), ("rlds", rlds)):
            results[f"sft loader: {name}"] = loader(src, work / f"cache_{name}")
            print(f"sft loader {name}: {results[f'sft loader: {name}']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'step':<40} {'frames/s':>10} {'seconds':>9}")
    for name, r in results.items():
        if "frames_per_s" in r:
            print(f"{name:<40} {r['frames_per_s']:>10.0f} {r['seconds']:>9.1f}")
        else:
            print(
                f"{name + ' (open+1st epoch)':<40} {r['first_epoch_frames_per_s']:>10.0f} "
                f"{r['open_s'] + r['first_epoch_s']:>9.1f}"
            )
            print(f"{name + ' (later epochs)':<40} {r['later_epoch_frames_per_s']:>10.0f}")
    out = {
        "command": "python " + " ".join(sys.argv),
        "frames": frames,
        "episodes": args.episodes,
        "steps": args.steps,
        "image_px": args.size,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "2 CPU cores shared with other work; lerobot runs in .venv-lerobot (lerobot 0.4.4), RLDS is read "
        "by data_collection/rlds.py without TensorFlow; the SFT loader converts a foreign format once "
        "(open_s) and then reads our format",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{args.out}")


if __name__ == "__main__":
    main()
