from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_razor.config import ConfigError
from vla_razor.llm.tasks import (
    ArithmeticTask,
    JsonlTask,
    SciQTask,
    ToolUseTask,
    api_calls,
    choice_reward,
    chosen_letter,
    final_number,
    number_reward,
    tool_call_reward,
)


def test_final_number_prefers_the_stated_answer_then_the_last_number():
    assert final_number("12 + 30 = 42. The answer is 42.") == "42"
    assert final_number("The answer is -7, not 3") == "-7"
    assert final_number("first 3 then 1,250") == "1250"
    assert final_number("no digits here") is None
    assert number_reward("so it is 56", "56") == 1.0
    assert number_reward("The answer is 56. Check: 57", "56") == 1.0
    assert number_reward("The answer is 55.", "56") == 0.0


def test_chosen_letter():
    assert chosen_letter("Photosynthesis. The answer is C.") == "C"
    assert chosen_letter("The answer is (B) water") == "B"
    assert chosen_letter("B") == "B"
    assert chosen_letter("A. genes") == "A" and chosen_letter("(C) ions") == "C"
    assert chosen_letter("Because of gravity") is None and chosen_letter("A cell divides") is None
    assert choice_reward("The answer is D.", "D") == 1.0 and choice_reward("The answer is A.", "D") == 0.0


def test_api_calls_match_name_and_arguments_in_any_order_and_quoting():
    expected = 'get_weather(city="Oslo", unit="celsius")'
    assert api_calls(expected) == [("get_weather", (("city", "oslo"), ("unit", "celsius")))]
    assert tool_call_reward("Sure: get_weather(unit='celsius', city=Oslo)", expected) == 1.0
    assert tool_call_reward('get_weather(city="Oslo", unit="fahrenheit")', expected) == 0.0
    assert tool_call_reward('r = get_weather(city="Oslo", unit="celsius")\nprint(r)', expected) == 1.0
    assert (
        tool_call_reward('get_weather(city="Oslo", unit="celsius") get_weather(city="Lima", unit="celsius")', expected)
        == 0.0
    )
    assert tool_call_reward("I cannot help", expected) == 0.0


def test_arithmetic_examples_are_fixed_by_seed_and_their_solutions_score():
    task = ArithmeticTask(digits=2, terms=3, train_size=20, eval_size=10, seed=3)
    train, again, evals = task.examples("train"), task.examples("train"), task.examples("eval")
    assert train == again and len(train) == 20 and len(evals) == 10
    assert [e.prompt for e in train[:10]] != [e.prompt for e in evals]  # the splits draw from their own seeds
    for ex in train:
        expression = ex.prompt.split("Compute ")[1].split(".")[0]
        assert int(ex.answer) == eval(expression)  # noqa: S307 - our own generated digits and +/-
        assert task.reward(ex, ex.solution) == 1.0
        assert task.reward(ex, f"The answer is {int(ex.answer) + 1}.") == 0.0
    with pytest.raises(ConfigError, match="terms >= 2"):
        ArithmeticTask(2, 1, 1, 1, 0)


def test_sciq_reads_the_shipped_questions_and_splits_them():
    task = SciQTask(train_size=50, eval_size=20, seed=0)
    train, evals = task.examples("train"), task.examples("eval")
    assert len(train) == 50 and len(evals) == 20
    assert not {e.id for e in train} & {e.id for e in evals}
    letters = {e.answer for e in train + evals}
    assert letters <= set("ABCD") and len(letters) > 1  # the right option is shuffled among the four
    for ex in train:
        assert task.reward(ex, ex.solution) == 1.0
        assert f"\n{ex.answer}. " in ex.prompt
    with pytest.raises(ConfigError, match="1000 questions"):
        SciQTask(train_size=990, eval_size=20, seed=0).examples("train")


def test_tool_use_solutions_are_the_expected_calls():
    task = ToolUseTask(train_size=30, eval_size=5, seed=1)
    examples = task.examples("train")
    assert len({e.answer.split("(")[0] for e in examples}) >= 3
    for ex in examples:
        assert task.reward(ex, ex.solution) == 1.0
        assert task.reward(ex, ex.solution.replace("(", "_v2(", 1)) == 0.0


def test_jsonl_task_reads_user_data_and_names_bad_lines(tmp_path: Path):
    good = tmp_path / "train.jsonl"
    good.write_text(
        json.dumps({"prompt": "2+2?", "answer": "4", "solution": "The answer is 4."})
        + "\n\n"
        + json.dumps({"prompt": "3+3?", "answer": "6"})
        + "\n"
    )
    task = JsonlTask(good, good, "number")
    examples = task.examples("train")
    assert [e.answer for e in examples] == ["4", "6"] and examples[1].solution == ""
    assert task.reward(examples[0], "it is 4") == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: .*'answer'"):
        JsonlTask(bad, bad, "number").examples("train")
    with pytest.raises(ConfigError, match="task.reward"):
        JsonlTask(good, good, "exact")
    with pytest.raises(ConfigError, match="train_path"):
        JsonlTask(None, good, "number")
