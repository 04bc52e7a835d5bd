import json
from pathlib import Path

import pytest
import torch

from vla_razor.runs import RunFolder, atomic_write_json, load_tensors, read_jsonl, save_tensors_atomic, update_json


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


def test_update_json_keeps_the_other_entries(tmp_path):
    """The benches' results files: a run replaces its own entry and keeps the others'."""
    path = tmp_path / "sub" / "bench.json"
    update_json(path, "tiny@cpu", {"rows": [1]})
    update_json(path, "7b@cuda", {"rows": [2]})
    update_json(path, "tiny@cpu", {"rows": [3]})
    assert json.loads(path.read_text()) == {"tiny@cpu": {"rows": [3]}, "7b@cuda": {"rows": [2]}}


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
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom vla_razor.runs import RunFolder\n"
            f"RunFolder({str(run_dir)!r}).start({{'a': 1}})\nprint('started', flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
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
    run.log(1, "train", {"loss": float("nan")})
    # a first try that failed before saving anything (a diverging learning rate, say) is rerun with other settings
    run.check_settings({**config, "sft": {"optim": {"lr": 1e-4, "schedule": "constant"}}})
    run.save_checkpoint("training_state", {"w": torch.zeros(1)})
    run.check_settings(config)
    run.check_settings({**config, "progress": False, "rl": {"k": 2}}, ignore=("progress", "rl."))
    run.check_settings({**config, "added_by_an_upgrade": 1})  # a field the folder's version did not have
    with pytest.raises(
        ConfigError, match=r"was made with other settings \(sft\.optim\.schedule: 'constant' -> 'cosine'\)"
    ):
        run.check_settings({**config, "sft": {"optim": {"lr": 1e-3, "schedule": "cosine"}}}, ignore=("progress",))
    run.finish({"done": True})
    with pytest.raises(ConfigError, match=r"sft\.optim\.lr: 0\.001 -> 0\.0003"):  # finished runs too
        run.check_settings({**config, "sft": {"optim": {"lr": 3e-4, "schedule": "constant"}}})
    # a folder that is not a run (a dataset, say) is never written into
    dataset = tmp_path / "data" / "demos"
    (dataset / "episodes").mkdir(parents=True)
    (dataset / "trajectory.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"demos: exists and is not a run folder \(it has no config.yaml\)"):
        RunFolder(dataset).start(config)
    assert sorted(p.name for p in dataset.iterdir()) == ["episodes", "trajectory.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_saved_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """Weights, states, JSON and saved folders get the modes open()/mkdir() would give, not the 0600/0700 of
    temporary files: a shared group can read a run."""
    import os
    import stat

    from vla_razor.runs import atomic_write_folder

    old = os.umask(umask)
    try:
        save_tensors_atomic(tmp_path / "w.safetensors", {"w": torch.zeros(2)})
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        atomic_write_folder(
            tmp_path / "policy", lambda d: save_tensors_atomic(d / "m.safetensors", {"w": torch.ones(1)})
        )
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "w.safetensors") == mode(tmp_path / "a.json") == 0o666 & ~umask
    assert mode(tmp_path / "policy" / "m.safetensors") == 0o666 & ~umask
    assert mode(tmp_path / "policy") == 0o777 & ~umask


def test_resume_checks_the_state_before_touching_the_logs(tmp_path: Path) -> None:
    """A training state of another model is refused by name before a resume drops any logged row."""
    from torch import nn

    from vla_razor.robot.config import RobotConfig
    from vla_razor.robot.stages import _start
    from vla_razor.training_state import save_training_state, training_state_path

    run = RunFolder(tmp_path / "runs" / "sft_x")
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    run.start({"a": 1})
    for step in range(1, 11):
        run.log(step, "train", {"loss": 1.0 / step})
    save_training_state(training_state_path(run.path), model, torch.optim.AdamW(model.parameters()), {"step": 4})
    logged = (run.path / "metrics.jsonl").read_text()
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"parameter 0.weight has shape \(4, 3\), the model \(5, 3\)"):
        _start(run, RobotConfig(), "sft", other)
    assert (run.path / "metrics.jsonl").read_text() == logged, "the refused resume trimmed the logs"
    assert _start(run, RobotConfig(), "sft", model)  # the right model resumes, and redoes the steps after 4
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4]
