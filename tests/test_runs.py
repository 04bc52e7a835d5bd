import json
from pathlib import Path

import pytest
import torch

from vla_razor.runs import RunFolder, atomic_write_json, load_tensors, read_jsonl, save_tensors_atomic


def test_run_folder_lifecycle(tmp_path):
    run = RunFolder(tmp_path / "exp" / "r1")
    run.start({"lr": 0.1})
    assert not run.is_finished()
    run.log(3, "eval", {"acc": 0.5, "kl": float("nan")})
    run.add_point({"step": 3, "new_task": 0.5})
    path = run.save_checkpoint("final", {"w": torch.arange(4.0)})
    run.finish({"method": "sft", "new_task": 0.7})
    assert run.is_finished()
    rows = run.metrics()
    assert rows[0] == {"step": 3, "split": "eval", "name": "acc", "value": 0.5}
    assert rows[1]["value"] is None  # NaN is stored as null: the file stays valid JSON
    assert torch.equal(load_tensors(path)["w"], torch.arange(4.0))
    assert not list(run.path.rglob("*.tmp"))
    # Starting again (an unfinished retry) drops the old logs and the summary.
    run.start({"lr": 0.1})
    assert not run.is_finished() and run.metrics() == []


def test_half_written_summary_is_not_finished(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.start({})
    (run.path / "summary.json").write_text('{"method": ')
    assert not run.is_finished()


def test_broken_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_truncated_checkpoint_is_reported_by_name(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors_atomic(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="w.safetensors: not a readable safetensors file"):
        load_tensors(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tensors(tmp_path / "absent.safetensors")


def test_atomic_json_replaces_whole_file(tmp_path):
    path = tmp_path / "s.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}


def test_atomic_write_folder_replaces_whole_or_keeps_the_old(tmp_path):
    from vla_razor.runs import atomic_write_folder

    target = tmp_path / "model"
    atomic_write_folder(target, lambda d: (d / "a.txt").write_text("one"))
    assert (target / "a.txt").read_text() == "one"

    def broken(d):
        (d / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    import pytest

    with pytest.raises(RuntimeError):
        atomic_write_folder(target, broken)
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left behind


def test_cached_json_result_recomputes_only_for_other_settings(tmp_path):
    from vla_razor.runs import cached_json_result

    calls = []

    def compute():
        calls.append(1)
        return {"score": len(calls)}

    path = tmp_path / "base_eval.json"
    assert cached_json_result(path, {"n": 1}, compute) == {"score": 1}
    assert cached_json_result(path, {"n": 1}, compute) == {"score": 1}
    assert cached_json_result(path, {"n": 2}, compute) == {"score": 2}
    assert len(calls) == 2


def test_one_writer_per_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second process started on a run that a live process is writing is refused, naming that process; once the
    writer is gone (killed: the OS frees its lock) the run is taken over, with a message; a finished run is free."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vla_razor.runs import RunLockedError

    run_dir = tmp_path / "runs" / "sft_x"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom vla_razor.runs import RunFolder\n"
         f"RunFolder({str(run_dir)!r}).start({{'a': 1}})\nprint('started', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
        with pytest.raises(RunLockedError, match=f"another process is writing this run \\(pid {writer.pid} on "):
            RunFolder(run_dir).start({"a": 2})
        with pytest.raises(RunLockedError):
            RunFolder(run_dir).drop_metrics_after(0)  # a resume's first write is refused as well
        assert "a: 1" in (run_dir / "config.yaml").read_text(), "the refused writer changed nothing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    run = RunFolder(run_dir)
    run.start({"a": 2})
    assert f"taking over from pid {writer.pid}" in capsys.readouterr().out
    run.start({"a": 3})  # this process holds it already: reentrant
    run.finish({"done": True})
    assert (run_dir / ".lock").read_text() == "", "a finished run leaves no holder behind"
    started = time.monotonic()
    RunFolder(run_dir).start({"a": 4})  # free again, at once
    assert time.monotonic() - started < 5 and capsys.readouterr().out == ""


def test_a_run_is_all_of_its_settings(tmp_path: Path) -> None:
    """A run folder made with one config refuses another, naming what differs, unless only ignored keys differ."""
    from vla_razor.config import ConfigError

    run = RunFolder(tmp_path / "r")
    config = {"stage": "sft", "progress": True, "sft": {"optim": {"lr": 1e-3, "schedule": "constant"}}, "rl": {"k": 5}}
    run.check_settings(config)  # no folder yet: anything goes
    run.start(config)
    run.check_settings(config)
    run.check_settings({**config, "progress": False, "rl": {"k": 2}}, ignore=("progress", "rl."))
    run.check_settings({**config, "added_by_an_upgrade": 1})  # a field the folder's version did not have
    with pytest.raises(ConfigError, match=r"was made with other settings \(sft\.optim\.schedule: 'constant' -> 'cosine'\)"):
        run.check_settings({**config, "sft": {"optim": {"lr": 1e-3, "schedule": "cosine"}}}, ignore=("progress",))
    run.finish({"done": True})
    with pytest.raises(ConfigError, match=r"sft\.optim\.lr: 0\.001 -> 0\.0003"):  # finished runs too
        run.check_settings({**config, "sft": {"optim": {"lr": 3e-4, "schedule": "constant"}}})
