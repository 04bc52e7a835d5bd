import json

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
