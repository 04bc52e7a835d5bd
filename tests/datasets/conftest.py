"""Shared pieces of the dataset-format tests: a tiny dataset of ours written by the real writer, and the two
optional venvs (lerobot: .venv-lerobot, `make setup-lerobot`; the TFDS writer: .venv-rt1, `make setup-rt1`). Tests
that need a venv skip, with the command that builds it, when it is absent; `make test-datasets` builds both."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from data_collection.dataset import DemoDataset, Episode, EpisodeMeta, episode_filename, write_episode, write_index

REPO = Path(__file__).resolve().parents[2]


def venv_python(venv: str, module: str) -> Path | None:
    """The venv's python if it exists and imports `module`, else None."""
    python = REPO / venv / "bin" / "python"
    if not python.is_file():
        return None
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return python if done.returncode == 0 else None


def make_ours(root: Path, episodes: int = 3, size: tuple[int, int] = (24, 32), seed: int = 0) -> DemoDataset:
    """A small dataset of ours with every field set to something distinctive (pick-can episodes, both outcomes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    metas = []
    for p in range(episodes):
        t = 4 + p
        meta = EpisodeMeta(
            task="pick_can",
            instruction=f"pick coke can {p % 2}",
            seed=100 + p,
            grid_point=p,
            grid_xy=[-0.2 - 0.01 * p, 0.1 * p],
            attempt=p % 2,
            steps=t,
            success=p % 2 == 0,
            file=episode_filename(p, p % 2),
            reset_kwargs={"seed": 100 + p, "options": {"xy": [p, 2]}},
        )
        write_episode(
            root,
            Episode(
                images=rng.integers(0, 256, (t, *size, 3), dtype=np.uint8),
                proprio=rng.normal(size=(t, 9)).astype(np.float32),
                actions=rng.uniform(-1, 1, (t, 7)).astype(np.float32),
                rewards=rng.random(t).astype(np.float32),
                meta=meta,
            ),
        )
        metas.append(meta)
    write_index(
        root,
        metas,
        {"env_id": "PickCanGrid-v1", "gripper": "absolute, +1 open .. -1 closed"},
        "scripted",
        "tiny test set",
    )
    ds = DemoDataset(root)
    ds.write_statistics("vla_razor_embedded")
    return ds


@pytest.fixture(scope="session")
def lerobot_python() -> Path:
    python = venv_python(".venv-lerobot", "lerobot.datasets.lerobot_dataset")
    if python is None:
        pytest.skip("needs .venv-lerobot with lerobot 0.4.4 (make setup-lerobot)")
    return python


def run_in(python: Path, code: str, *args: str) -> dict:
    """Runs `code` in another venv's python (repo on its path, Hub offline); returns the JSON its last line prints."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(python), "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tfds_python() -> Path:
    """A python with tensorflow-datasets, to write RLDS builders: .venv-rt1's, or VLA_RAZOR_TFDS_PYTHON."""
    override = os.environ.get("VLA_RAZOR_TFDS_PYTHON", "")
    if override:
        return Path(override)
    python = venv_python(".venv-rt1", "tensorflow_datasets")
    if python is None:
        pytest.skip("needs .venv-rt1 with tensorflow-datasets to write RLDS builders (make setup-rt1)")
    return python


@pytest.fixture(scope="session")
def rlds_builders(tfds_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{name: builder folder} of tests/datasets/tiny_rlds.py, written once by tensorflow_datasets."""
    out = tmp_path_factory.mktemp("rlds")
    written = run_in(tfds_python, "from tests.datasets.tiny_rlds import main; main()", str(out))
    return {name: Path(folder) for name, folder in written.items()}


@pytest.fixture(autouse=True)
def dataset_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Conversions `as_ours` caches go to the test's own folder, never the project's .cache/datasets."""
    monkeypatch.setenv("VLA_RAZOR_DATASET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
