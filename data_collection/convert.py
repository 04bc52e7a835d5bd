"""Between our demonstration folders and the field's formats: which format a folder is, and conversion.

    ours      data_collection/dataset.py (trajectory.json + h5 episodes), what SFT reads
    lerobot   LeRobotDataset v3.0 (meta/info.json + parquet), read and written with the `lerobot` package
    rlds      a TFDS builder folder (dataset_info.json, features.json, *.tfrecord-*), read only
    libero    LIBERO's demonstrations, a folder of <task>_demo.hdf5 files (data_collection/libero_format.py), read only

lerobot cannot share the main venv (its pins: see the Makefile's setup-lerobot), so a conversion that involves it
runs data_collection/lerobot_format.py in .venv-lerobot (or the interpreter VLA_RAZOR_LEROBOT_PYTHON names)
unless lerobot imports here. Every conversion writes its output atomically (a temporary folder, then a rename).

`as_ours(path)` is what SFT calls: our folders as they are, other formats converted once into a cache folder
(the project's `.cache/datasets/`, or VLA_RAZOR_DATASET_CACHE: never beside the user's data, which may be
read-only), keyed on the source's path and files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_collection.dataset import TRAJECTORY_JSON, DatasetError
from data_collection.libero_format import libero_to_ours
from data_collection.rlds import rlds_to_ours
from vla_razor.config import option

Format = Literal["auto", "ours", "lerobot", "rlds", "libero"]
REPO = Path(__file__).resolve().parents[1]
LEROBOT_VENV = REPO / ".venv-lerobot"


@dataclass
class ConvertConfig:
    """`vla-razor data convert SRC DST`: one dataset in another format."""

    src: Path = option(Path(), "the dataset folder to read")
    dst: Path = option(Path(), "the folder to write (replaced whole if it exists)")
    src_format: Format = option("auto", "format of src (auto: detected from its files)")
    to: Literal["ours", "lerobot"] = option("lerobot", "format to write")
    repo_id: str = option("", "LeRobotDataset repo_id written into meta/info.json (default: local/<dst name>)")
    fps: int = option(3, "frames per second of a written LeRobotDataset (our steps are 3 Hz control)", ge=1)
    image_key: str = option("", "camera feature of a LeRobotDataset or RLDS source (default: its first image)")
    dataset_name: str = option(
        "",
        "key of dataset_statistics.json when writing ours, OpenVLA's unnorm_key (default: the RLDS builder's "
        "name, a LeRobotDataset's carried statistics key, else src's folder name)",
    )
    rlds_transform: str = option(
        "", "OpenVLA's standardization of an RLDS source (default: by its name; see data_collection/rlds.py)"
    )
    image_size: int = option(0, "a LIBERO source's frames resized to this side, as the policy sees them (0: as stored)")
    gripper_range: list[float] = option(
        [0.0, 1.0], "a LIBERO source's gripper written on the policy's (closed, open) values (OpenVLA's: [0, 1])"
    )


def detect_format(path: Path) -> Literal["ours", "lerobot", "rlds", "libero"]:
    """Which format a folder holds, from its files; DatasetError naming what was looked for if none."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder")
    if (path / TRAJECTORY_JSON).is_file():
        return "ours"
    if (path / "meta" / "info.json").is_file():
        return "lerobot"
    if (path / "dataset_info.json").is_file() and (path / "features.json").is_file():
        return "rlds"
    if any(path.glob("*_demo.hdf5")):
        return "libero"
    raise DatasetError(
        f"{path}: not a dataset folder of a known format (looked for {TRAJECTORY_JSON} (ours), "
        "meta/info.json (LeRobotDataset), dataset_info.json + features.json (RLDS/TFDS) and *_demo.hdf5 (LIBERO))"
    )


def lerobot_python() -> str:
    """The interpreter that has lerobot: this one if it imports, else the lerobot venv's."""
    override = os.environ.get("VLA_RAZOR_LEROBOT_PYTHON", "")
    if override:
        return override
    if importlib.util.find_spec("lerobot") is not None:
        return sys.executable
    python = LEROBOT_VENV / "bin" / "python"
    if not python.is_file():
        raise DatasetError(
            f"LeRobotDataset conversion needs the lerobot venv ({python} is missing): run "
            "`make setup-lerobot` (or point VLA_RAZOR_LEROBOT_PYTHON at a python with lerobot 0.4)"
        )
    return str(python)


def _run_lerobot(args: list[str]) -> int:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH", "")])]),
    }
    done = subprocess.run(
        [lerobot_python(), "-m", "data_collection.lerobot_format", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode == 2:
        raise DatasetError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "lerobot conversion failed")
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"lerobot conversion failed (exit {done.returncode}): {tail}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["frames"])


def convert(cfg: ConvertConfig) -> int:
    """Converts cfg.src to cfg.dst in format cfg.to; returns the number of frames written."""
    src, dst = Path(cfg.src).resolve(), Path(cfg.dst).resolve()
    if src == dst:
        raise DatasetError(f"dst: {dst} is the source folder; write the conversion elsewhere")
    fmt = detect_format(src) if cfg.src_format == "auto" else cfg.src_format
    if fmt == cfg.to:
        raise DatasetError(f"{src}: already in format {fmt!r}; nothing to convert (copy the folder instead)")
    name = cfg.dataset_name
    if fmt == "libero":
        if cfg.to != "ours":
            raise DatasetError(f"{src}: a LIBERO folder converts to ours only; convert that to {cfg.to} after")
        return libero_to_ours(src, dst, cfg.image_size, tuple(cfg.gripper_range), name)
    if fmt == "rlds":
        if cfg.to == "ours":
            return rlds_to_ours(src, dst, cfg.rlds_transform, cfg.image_key, name)
        staged = dst.parent / f".{dst.name}.ours"
        rlds_to_ours(src, staged, cfg.rlds_transform, cfg.image_key, name)
        try:
            return _run_lerobot(
                [
                    "to-lerobot",
                    str(staged),
                    str(dst),
                    "--repo-id",
                    cfg.repo_id or f"local/{dst.name}",
                    "--fps",
                    str(cfg.fps),
                ]
            )
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    if fmt == "ours":
        return _run_lerobot(
            ["to-lerobot", str(src), str(dst), "--repo-id", cfg.repo_id or f"local/{dst.name}", "--fps", str(cfg.fps)]
        )
    return _run_lerobot(["from-lerobot", str(src), str(dst), "--image-key", cfg.image_key, "--dataset-name", name])


def cache_dir_for(src: Path, options: dict | None = None) -> Path:
    """Where `as_ours` keeps the conversion of `src`: named after it, keyed on its path, on the names, sizes and
    modification times of its files (a rewritten shard or parquet file gives a new conversion) and on the
    conversion's `options` where they matter (a LIBERO source's image size and gripper range)."""
    src = Path(src).resolve()
    files = sorted(
        (str(p.relative_to(src)), p.stat().st_size, p.stat().st_mtime_ns) for p in src.rglob("*") if p.is_file()
    )
    key = hashlib.sha256(json.dumps([str(src), files, *([options] if options else [])]).encode()).hexdigest()[:12]
    root = Path(os.environ.get("VLA_RAZOR_DATASET_CACHE", REPO / ".cache" / "datasets"))
    return root / f"{src.parent.name}-{src.name}-{key}"  # a TFDS builder folder is named by its version


def as_ours(
    path: Path,
    fmt: Format = "auto",
    image_key: str = "",
    rlds_transform: str = "",
    image_size: int = 0,
    gripper_range: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """`path` as a folder of our format: itself if it is one, else its conversion (made once, then reused); a
    LIBERO source is read as the policy sees LIBERO: frames at `image_size`, gripper on `gripper_range`."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "ours":
        return Path(path)
    libero = {"image_size": image_size, "gripper_range": [float(v) for v in gripper_range]}
    cached = cache_dir_for(path, libero if fmt == "libero" else None)
    if not (cached / TRAJECTORY_JSON).is_file() or not (cached / "dataset_statistics.json").is_file():
        convert(
            ConvertConfig(
                src=Path(path),
                dst=cached,
                src_format=fmt,
                to="ours",
                image_key=image_key,
                rlds_transform=rlds_transform,
                **libero,
            )
        )
    return cached
