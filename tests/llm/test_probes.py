"""The local lm-eval tasks: each loads from the installed packages' data, and HumanEval executes programs; run_probes
keeps per-example scores and puts the chat-template probes through the tokenizer's template."""

from __future__ import annotations

import pytest

from vla_razor.config import ConfigError
from vla_razor.llm.probes import METRIC, SHIPPED_SIZES, check_probes, probe_groups, run_probes, write_probe_tasks

OFFLINE_PROBES = ["hellaswag", "winogrande", "mmlu", "sciq", "arc_easy", "piqa", "humaneval", "ifeval"]


def test_every_offline_probe_loads_as_an_lm_eval_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager, get_task_dict

    folder = write_probe_tasks(tmp_path / "tasks", OFFLINE_PROBES)
    tasks = get_task_dict(
        [f"razor_{p}" for p in OFFLINE_PROBES], TaskManager(include_path=str(folder), include_defaults=False)
    )
    sizes = {name: len(list(task.eval_docs)) for name, task in tasks.items()}
    assert sizes == {f"razor_{p}": n for p, n in SHIPPED_SIZES.items()}  # the module docstring's table
    assert SHIPPED_SIZES == {
        "hellaswag": 10042,
        "winogrande": 1267,
        "mmlu": 14042,
        "sciq": 1000,
        "arc_easy": 570,
        "piqa": 1838,
        "humaneval": 164,
        "ifeval": 541,
    }
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

    task = get_task_dict(
        ["razor_humaneval"], TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    )["razor_humaneval"]
    doc = next(iter(task.eval_docs))
    assert utils.humaneval_results(doc, [doc["canonical_solution"]]) == {"pass@1": 1.0}
    assert utils.humaneval_results(doc, ["    return None\n"]) == {"pass@1": 0.0}
    assert utils.humaneval_passed("while True:\n    pass\n", timeout=1.0) is False
    # a pass is the harness reaching the end of the tests, not an exit code of 0
    tests = doc["test"] + f"\n\ncheck({doc['entry_point']})\n"
    assert utils.humaneval_passed(doc["prompt"] + "    import sys\n    sys.exit(0)\n" + tests, 5.0) is False
    assert (
        utils.humaneval_passed("import sys\nsys.exit(0)\n" + doc["prompt"] + doc["canonical_solution"] + tests, 5.0)
        is False
    )
    assert utils.humaneval_passed("import os\nos._exit(0)\n", timeout=5.0) is False
    assert sys.executable


def test_humaneval_sandbox_contains_what_it_runs(tmp_path):
    """Model-written code cannot outlive its run (forked children are killed with it), allocate past the memory
    limit, write outside its throwaway folder (as an unprivileged user when the harness is root) or see the
    environment; a bad timeout is refused."""
    import importlib.util
    import os
    import time

    write_probe_tasks(tmp_path / "tasks", ["humaneval"])
    spec = importlib.util.spec_from_file_location("razor_utils_sandbox", tmp_path / "tasks" / "razor_utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)

    ok, out = utils.run_sandboxed(
        "import os, time\npid = os.fork()\nif pid == 0:\n    time.sleep(60)\n    os._exit(0)\nprint('child', pid)\n",
        5.0,
    )
    assert ok
    child = int(out.split()[1])
    time.sleep(0.5)
    state = open(f"/proc/{child}/status").read() if os.path.exists(f"/proc/{child}/status") else "gone"
    assert state == "gone" or "State:\tZ" in state, "a forked child outlived the sandboxed run"

    started = time.monotonic()
    assert utils.humaneval_passed("x = bytearray(8 << 30)\nprint(len(x))\n", 10.0) is False
    assert time.monotonic() - started < 10, "the memory limit stops it, not the timeout"

    target = tmp_path / "written_by_the_model.txt"
    os.chmod(tmp_path, 0o755)
    ok, out = utils.run_sandboxed(
        f"import os\nprint(os.getcwd(), sorted(os.environ))\nopen({str(target)!r}, 'w').write('x')\n", 5.0
    )
    if utils.sandbox_python()[1]:  # run as nobody: the test's folder (root's, 0755) is not writable for it
        assert not ok and not target.exists()
    ok, out = utils.run_sandboxed("import os\nprint(os.getcwd())\nprint(sorted(os.environ))\n", 5.0)
    cwd, env = out.splitlines()[:2]
    assert ok and "vla_razor_sandbox_" in cwd and not os.path.exists(cwd), "a throwaway folder, removed"
    assert env == "['LC_CTYPE', 'PYTHONHASHSEED']" or env == "['PYTHONHASHSEED']", env
    with pytest.raises(ValueError, match="humaneval timeout"):
        utils.humaneval_passed("pass\n", -1)


def test_ifeval_checks_replies_with_a_locally_trained_punkt(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import importlib.util

    from vla_razor.llm.probes import ensure_punkt

    ensure_punkt(tmp_path / "nltk_data")
    import nltk

    assert nltk.sent_tokenize("Dr. Smith went home. He slept at 5 p.m. on Monday! Was it late? Yes.") == [
        "Dr. Smith went home.",
        "He slept at 5 p.m. on Monday!",
        "Was it late?",
        "Yes.",
    ]
    write_probe_tasks(tmp_path / "tasks", ["ifeval"])
    spec = importlib.util.spec_from_file_location("razor_utils_ifeval", tmp_path / "tasks" / "razor_utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    no_comma = {
        "key": 1,
        "prompt": "Write about Japan without commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    }
    assert utils.ifeval_results(no_comma, ["Japan is lovely in spring. Go there."])["prompt_level_strict_acc"] is True
    assert utils.ifeval_results(no_comma, ["Japan, in spring, is lovely."])["prompt_level_strict_acc"] is False
    sentences = {
        "key": 2,
        "prompt": "Answer in fewer than 3 sentences.",
        "instruction_id_list": ["length_constraints:number_sentences"],
        "kwargs": [{"relation": "less than", "num_sentences": 3}],
    }
    assert utils.ifeval_results(sentences, ["Dr. Smith agrees. So do I."])["prompt_level_strict_acc"] is True
    assert utils.ifeval_results(sentences, ["One. Two. Three. Four."])["prompt_level_strict_acc"] is False


def test_truthfulqa_mc2_from_user_data(tmp_path, monkeypatch, tiny_loaded):
    """No package ships TruthfulQA: the user's JSON lines become the razor_truthfulqa_mc2 task."""
    import json

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "tqa.jsonl"
    rows = [
        {"question": "Is the sky green?", "mc2_targets": {"choices": ["No.", "Yes.", "Always."], "labels": [1, 0, 0]}},
        {"question": "Can fish fly?", "mc2_targets": {"choices": ["Most cannot.", "All can."], "labels": [1, 0]}},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_probe_tasks(tmp_path / "tasks", ["truthfulqa_mc2"], truthfulqa_path=data)
    import importlib.util

    spec = importlib.util.spec_from_file_location("razor_utils_tqa", tmp_path / "tasks" / "razor_utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    import math

    score = utils.truthfulqa_mc2(rows[0], [(math.log(0.2), False), (math.log(0.6), True), (math.log(0.2), False)])
    assert score["acc"] == pytest.approx(0.2)
    tokenizer, model = tiny_loaded
    scores = run_probes(
        model, tokenizer, ["truthfulqa_mc2"], tmp_path / "run", limit=None, batch_size=2, truthfulqa_path=data
    )
    mc2 = scores["truthfulqa_mc2"]
    assert 0.0 < mc2.score < 1.0 and len(mc2.examples) == 2 and mc2.score == pytest.approx(sum(mc2.examples) / 2)
    assert mc2.interval.method == "normal", "MC2 scores are probabilities, not 0 / 1"


def test_probe_checks():
    with pytest.raises(ConfigError, match="training task"):
        check_probes(["hellaswag", "sciq"], "sciq")
    with pytest.raises(ConfigError, match="unknown probe"):
        check_probes(["gsm9k"], "arithmetic")
    with pytest.raises(ConfigError, match="truthfulqa_path"):
        write_probe_tasks("/tmp/never_used_probe_dir", ["truthfulqa_mc2"])
    check_probes(list(METRIC), "arithmetic")


def test_probe_scores_of_a_tiny_model(tiny_loaded, tmp_path):
    """Per-example scores in document order whose mean is lm-eval's score, a Wilson interval over them, a size per
    probe, and IFEval through the tiny model's chat template while the others stay plain text."""
    tokenizer, model = tiny_loaded
    assert tokenizer.chat_template, "the tiny model has a chat template, so IFEval is scored through it"
    model.train()  # as evaluated mid-training: lm-eval switches it to eval mode, run_probes switches it back
    try:
        scores = run_probes(
            model,
            tokenizer,
            ["winogrande", "humaneval", "ifeval"],
            tmp_path / "tasks",
            limit=3,
            batch_size=3,
            humaneval_max_tokens=8,
            ifeval_max_tokens=4,
            nltk_dir=tmp_path / "nltk_data",
            sizes={"winogrande": 5},
            generation_batch_size=2,
        )
        assert model.training
    finally:
        model.eval()
    assert list(scores) == ["winogrande", "humaneval", "ifeval"]
    winogrande, humaneval, ifeval = scores.values()
    assert len(winogrande.examples) == 5 and len(humaneval.examples) == 3 and len(ifeval.examples) == 3
    for probe in scores.values():
        assert set(probe.examples) <= {0.0, 1.0}
        assert probe.score == pytest.approx(sum(probe.examples) / len(probe.examples))
        interval = probe.interval
        assert interval.method == "wilson" and interval.n == len(probe.examples)
        assert 0.0 <= interval.low <= probe.score <= interval.high <= 1.0
    assert humaneval.score == 0.0 and ifeval.score == 0.0  # a random model writes no program, follows nothing
    assert (winogrande.chat_template, humaneval.chat_template, ifeval.chat_template) == (False, False, True)
    assert tokenizer.padding_side == "left"  # lm-eval's changes to the tokenizer are undone


def test_probes_are_grouped_by_size_and_chat_template():
    groups = probe_groups(["hellaswag", "mmlu", "ifeval", "humaneval"], 300, {"mmlu": 1200}, ["ifeval"], True)
    assert groups == {
        (300, False, False): ["hellaswag"],
        (300, False, True): ["humaneval"],
        (1200, False, False): ["mmlu"],
        (300, True, True): ["ifeval"],
    }
    no_template = probe_groups(["hellaswag", "ifeval", "winogrande"], None, {}, ["ifeval"], False)
    assert no_template == {(None, False, False): ["hellaswag", "winogrande"], (None, False, True): ["ifeval"]}, (
        "without a template every probe is plain text; the generating ones still go apart (their own batch size)"
    )
