"""data_collection/convert.py without the optional venvs: format detection, the message when the lerobot venv is
missing, and the conversion cache's key."""

from __future__ import annotations

from pathlib import Path

import pytest

import data_collection.convert as convert_module
from data_collection.convert import ConvertConfig, as_ours, cache_dir_for, convert, detect_format
from data_collection.dataset import DatasetError
from tests.datasets.conftest import make_ours


def test_detects_each_format_from_its_files(tmp_path: Path) -> None:
    make_ours(tmp_path / "ours", episodes=1)
    (tmp_path / "lr" / "meta").mkdir(parents=True)
    (tmp_path / "lr" / "meta" / "info.json").write_text("{}")
    (tmp_path / "rlds").mkdir()
    for name in ("dataset_info.json", "features.json"):
        (tmp_path / "rlds" / name).write_text("{}")
    assert [detect_format(tmp_path / n) for n in ("ours", "lr", "rlds")] == ["ours", "lerobot", "rlds"]
    assert as_ours(tmp_path / "ours") == tmp_path / "ours"  # ours is read in place, never copied
    with pytest.raises(DatasetError, match=r"missing: no such dataset folder"):
        detect_format(tmp_path / "missing")


def test_missing_lerobot_venv_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_ours(tmp_path / "ours", episodes=1)
    monkeypatch.delenv("VLA_RAZOR_LEROBOT_PYTHON", raising=False)
    monkeypatch.setattr(convert_module, "LEROBOT_VENV", tmp_path / "no-venv")
    with pytest.raises(DatasetError, match=r"needs the lerobot venv .*make setup-lerobot"):
        convert(ConvertConfig(src=tmp_path / "ours", dst=tmp_path / "lr", to="lerobot"))
    with pytest.raises(DatasetError, match=r"already in format 'ours'"):
        convert(ConvertConfig(src=tmp_path / "ours", dst=tmp_path / "copy", to="ours"))


def test_cache_key_follows_the_source_files(tmp_path: Path) -> None:
    src = tmp_path / "builder"
    src.mkdir()
    (src / "dataset_info.json").write_text("{}")
    (src / "x-train.tfrecord-00000-of-00001").write_bytes(b"1234")
    first = cache_dir_for(src)
    assert first == cache_dir_for(src) and first.name.startswith(f"{tmp_path.name}-builder-")
    (src / "x-train.tfrecord-00000-of-00001").write_bytes(b"12345")  # a rewritten shard
    assert cache_dir_for(src) != first
