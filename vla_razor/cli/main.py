"""The ``vla-razor`` command.

    vla-razor toy pretrain [--config configs/toy_parity_mnist.yaml] [--pretrain.epochs 50 ...]
    vla-razor toy sweep    [--config ...] [--sweep.lr_count 5 ...]
    vla-razor toy report   [--config ...]
    vla-razor robot pipeline [--config configs/robot_quick.yaml]   # the main job, end to end
    vla-razor robot collect  [--config ...]                        # the SFT demonstrations (collect section)
    vla-razor robot pretrain [--config configs/robot_base.yaml] [--pretrain.optim.epochs 5 ...]
    vla-razor robot sft      [--config ...] [--sft.optim.lr 1e-4 ...]
    vla-razor robot rl       [--config ...] [--rl.iterations 20 ...]
    vla-razor robot eval     [--config ...] [--policy DIR]
    vla-razor robot report   [--config ...]                        # summary.json + report of the experiment's runs
    torchrun --nproc-per-node N -m vla_razor.cli robot sft [--config ...]   # SFT / pretrain sharded over N GPUs
    vla-razor llm pipeline [--config configs/llm_quick.yaml]       # SFT vs GRPO on a causal LM, probes, KL, report
    vla-razor llm train    [--config ...] --method grpo [--grpo.mu 2 ...]
    vla-razor llm eval     [--config ...] [--model-dir RUN/model]
    vla-razor llm report   [--config ...]
    vla-razor llm probe-size [--config ...] [--half-width 0.02] [--churn 0.25]   # probe sizes for tight forgetting
    vla-razor sweep CONFIG [--address auto] [--resources.cpus 4 ...]  # an experiment's grid as Ray tasks
    vla-razor report RUNS_DIR [--out DIR]
    vla-razor data convert SRC DST [--to lerobot|ours] [--image_key K ...]   # ours <-> LeRobotDataset, RLDS -> both
    vla-razor forecast RUNS_DIR [--out FILE] [--folds 5]          # retention from forward KL, held-out error

Every ``--dotted.name`` flag sets the config field of that name (``vla-razor toy sweep --help`` lists them).
Each subcommand imports its domain inside its handler, so `--help` and a refused flag answer without loading
torch, the simulator, transformers or Ray.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Any

from data_collection.dataset import DatasetError
from vla_razor.config import ConfigError, add_config_arguments, load_config, overrides_from_args

DEFAULT_TOY_CONFIG = "configs/toy_parity_mnist.yaml"
DEFAULT_ROBOT_CONFIG = "configs/robot_quick.yaml"
DEFAULT_LLM_CONFIG = "configs/llm_quick.yaml"


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _toy_config_path(args: argparse.Namespace) -> Path | None:
    path = Path(args.config) if args.config else None
    if path is None and Path(DEFAULT_TOY_CONFIG).is_file():
        path = Path(DEFAULT_TOY_CONFIG)
    return path


def _toy_config(args: argparse.Namespace):
    from vla_razor.toy.config import ToyConfig

    return load_config(ToyConfig, _toy_config_path(args), overrides_from_args(args))


def cmd_toy_pretrain(args: argparse.Namespace) -> None:
    from vla_razor.toy.data import load_toy_data
    from vla_razor.toy.sweep import set_threads
    from vla_razor.toy.train import base_info, load_or_pretrain_base

    cfg = _toy_config(args)
    set_threads(cfg.threads)
    d = cfg.data
    data = load_toy_data(d.pretrain_per_task, d.parity_test, d.fashion_test, d.fashion_dir, d.seed)
    load_or_pretrain_base(cfg, data)
    info = base_info(cfg)
    print(f"base model: {cfg.experiment_dir / 'base'}")
    print(
        f"  ParityMNIST test accuracy {info['new_task']:.3f} (sampled: {info['new_task_expected']:.3f}), "
        f"FashionMNIST test accuracy {info['prior']['fashion_mnist']:.3f}"
    )


def cmd_toy_sweep(args: argparse.Namespace) -> None:
    """The toy experiment's sweep through the one sweep path, in this process (no Ray)."""
    from vla_razor.sweep.config import SweepConfig
    from vla_razor.sweep.sweep import run_sweep

    cfg = _toy_config(args)
    result = run_sweep(
        SweepConfig(
            domain="toy",
            experiment_config=_toy_config_path(args),
            overrides=overrides_from_args(args),
            in_process=True,
            report=cfg.report,
        )
    )
    rate = f", {result.runs_per_min:.1f} runs/min" if result.runs_per_min else ""
    print(
        f"sweep {cfg.experiment}: {result.runs_trained} runs trained, {result.runs_skipped} already finished "
        f"({result.seconds:.0f} s{rate})"
    )
    print(f"run folders: {cfg.experiment_dir / 'runs'}")
    if result.report_dir is not None:
        print(f"report: {result.report_dir / 'report.html'} (also report.md, summary.json)")


def cmd_toy_report(args: argparse.Namespace) -> None:
    from vla_razor.toy.sweep import write_toy_report

    cfg = _toy_config(args)
    out = write_toy_report(cfg, Path(args.out) if args.out else None)
    print(f"report: {out / 'report.html'}")


def _robot_config(args: argparse.Namespace):
    from vla_razor.robot.stages import load_robot_config

    path = Path(args.config) if args.config else None
    if path is None and Path(DEFAULT_ROBOT_CONFIG).is_file():
        path = Path(DEFAULT_ROBOT_CONFIG)
    return load_robot_config(path, overrides_from_args(args))


def _print_stage(name: str, result, task: str) -> None:
    from vla_razor.distributed import env_rank

    if env_rank() != 0:  # one of torchrun's processes: rank 0 speaks for the run
        return
    t = result.train
    if t is None and result.iterations is None:
        print(f"{name}: already finished: {result.run_dir}")
    elif t is None:  # RL: its iterations were printed
        print(f"  run folder: {result.run_dir}  (config.yaml, metrics.jsonl, checkpoints/)")
    else:
        resumed = f", resumed from update {t.resumed_from}" if t.resumed_from else ""
        print(f"{name}: {t.steps} updates{resumed}, final loss {t.final_loss:.4f}, {t.seconds:.0f} s")
        print(f"  run folder: {result.run_dir}  (config.yaml, metrics.jsonl, checkpoints/)")
    print(f"  policy: {result.policy_dir}")
    if result.summary is not None:
        s = result.summary
        heldout = (
            f"held out {s['new_task_heldout']:.2f} (base {s['base']['new_task_heldout']:.2f}), "
            if "new_task_heldout" in s
            else ""
        )
        print(_summary_line(s, task, 2, heldout))


def _summary_line(s: dict[str, Any], task: str, digits: int, extra: str = "") -> str:
    """A run summary's new-task and prior (probe) scores beside the base's, and its forward KL, on one line."""
    base = s["base"]
    return (
        f"  {task} {s['new_task']:.{digits}f} (base {base['new_task']:.{digits}f}), {extra}"
        + ", ".join(f"{p} {v:.{digits}f} (base {base['prior'][p]:.{digits}f})" for p, v in s["prior"].items())
        + f", forward KL {s['predictors']['forward_kl']:.4f}"
    )


def cmd_robot_collect(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import collect_sft_demos

    cfg = _robot_config(args)
    cfg.sft.datasets = [cfg.collect.out]  # this command collects the collect section, whatever sft.datasets lists
    collect_sft_demos(cfg)
    print(f"demonstrations: {cfg.collect.out}")


def cmd_robot_pretrain(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import run_pretrain

    cfg = _robot_config(args)
    _print_stage("pretrain", run_pretrain(cfg), cfg.task)


def cmd_robot_sft(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import run_sft

    cfg = _robot_config(args)
    _print_stage("sft", run_sft(cfg), cfg.task)


def cmd_robot_rl(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import run_rl

    cfg = _robot_config(args)
    result = run_rl(cfg)
    if result.iterations is not None:
        resumed = f", resumed from iteration {result.resumed_from_iteration}" if result.resumed_from_iteration else ""
        print(f"rl: {result.iterations} iterations, {result.updates} updates{resumed}")
    _print_stage("rl", result, cfg.task)


def cmd_robot_pipeline(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import run_pipeline

    cfg = _robot_config(args)
    _print_pipeline(run_pipeline(cfg), cfg.task, cfg.probes)


def cmd_robot_report(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import summarize_experiment

    cfg = _robot_config(args)
    _print_pipeline(summarize_experiment(cfg), cfg.task, cfg.probes)


def _print_pipeline(result: Any, task: str, probes: list[str]) -> None:
    heldout = (f"{task}_heldout",) if all(f"{task}_heldout" in row for row in result.table) else ()
    from vla_razor.robot.evaluate import ROBOT_PREDICTORS

    predictors = [c for c in ROBOT_PREDICTORS if all(c in row for row in result.table)]  # older runs lack some
    columns = (task, *heldout, *probes, *predictors)  # heldout: beside the RL grid's points
    print()
    print(f"  {'model':<32}" + "".join(f"{c:>{max(14, len(c) + 2)}}" for c in columns))
    for row in result.table:
        name = row["method"] if row["method"] == "base" else f"{row['method']}: {row['run']}"
        print(f"  {name[:32]:<32}" + "".join(f"{row[c]:>{max(14, len(c) + 2)}.3f}" for c in columns))
    print(f"\nreport: {result.report_dir / 'report.html'} (report.md, PNG plots, report.json)")
    print(f"summary: {result.summary_path}   ({result.seconds:.0f} s)")


def cmd_robot_eval(args: argparse.Namespace) -> None:
    from vla_razor.robot.stages import run_eval
    from vla_razor.runs import atomic_write_json

    cfg = _robot_config(args)
    policy_dir = Path(args.policy) if args.policy else cfg.base
    summary = run_eval(cfg, policy_dir)
    base = summary["base"]
    print(f"{policy_dir}  (base: {cfg.base})")
    print(f"  {'':<14}{'policy':>8}{'base':>8}")
    print(f"  {cfg.task:<14}{summary['new_task']:>8.2f}{base['new_task']:>8.2f}")
    if "new_task_heldout" in summary:
        print(f"  {'held out':<14}{summary['new_task_heldout']:>8.2f}{base['new_task_heldout']:>8.2f}")
    for probe, value in summary["prior"].items():
        print(f"  {probe:<14}{value:>8.2f}{base['prior'][probe]:>8.2f}")
    for name, value in summary["predictors"].items():
        print(f"  {name:<14}{value:>8.4f}")
    _print_success_intervals(summary)
    if args.out:
        atomic_write_json(Path(args.out), summary)
        print(f"written: {args.out}")


def _print_success_intervals(summary: dict[str, Any]) -> None:
    """Where the evaluation named suites: each task's success and the suites' means, with 95 % intervals."""
    intervals = summary.get("success_intervals")
    if not intervals:
        return
    base = summary["base"]["success_intervals"]

    def cell(i: dict[str, Any]) -> str:
        low, high = (math.nan if v is None else v for v in (i["low"], i["high"]))
        return f"{i['value']:.2f} [{low:.2f}, {high:.2f}]"

    print(f"  {'success (95 % interval)':<24}{'policy':>20}{'base':>20}   episodes")
    for name, group in intervals["groups"].items():
        for task in group["tasks"]:
            i, b = intervals["tasks"][task], base["tasks"][task]
            print(f"    {task:<22}{cell(i):>20}{cell(b):>20}   {i['n']}")
        print(f"  {name + ' (mean)':<24}{cell(group):>20}{cell(base['groups'][name]):>20}")
    grouped = {t for group in intervals["groups"].values() for t in group["tasks"]}
    for task, i in intervals["tasks"].items():  # tasks named on their own beside the suites
        if task not in grouped:
            print(f"  {task:<24}{cell(i):>20}{cell(base['tasks'][task]):>20}   {i['n']}")


def cmd_robot_variants(args: argparse.Namespace) -> None:
    from vla_razor.robot.simpler_variants import run_variants

    cfg = _robot_config(args)
    results = run_variants(cfg, Path(args.policy) if args.policy else None)
    print(f"{results['policy']}: SimplerEnv {results['protocol']}")
    for task, r in results["tasks"].items():
        agg = r["aggregate"]
        groups = ", ".join(f"{g} {v:.2f}" for g, v in agg["groups"].items())
        ran = sum(v["ran"] for v in r["variants"].values())
        print(f"  {task:<14}{agg['success']:>6.2f}  ({groups}; {ran} of {len(r['variants'])} variants ran)")
    print(f"written: {results['out']}")


def cmd_robot_export(args: argparse.Namespace) -> None:
    from vla_razor.policies.openvla.export import export_openvla

    out = export_openvla(Path(args.run), Path(args.out), Path(args.code_from))
    print(
        f"exported: {out}  (OpenVLA's own code loads it, as the released folder: AutoModelForVision2Seq / "
        "AutoProcessor run its *_prismatic.py files)"
    )


def _llm_config(args: argparse.Namespace):
    from vla_razor.llm.pipeline import load_llm_config

    path = Path(args.config) if args.config else None
    if path is None and Path(DEFAULT_LLM_CONFIG).is_file():
        path = Path(DEFAULT_LLM_CONFIG)
    return load_llm_config(path, overrides_from_args(args))


def _print_llm_rows(rows: list[dict[str, Any]], base: dict[str, Any]) -> None:
    probes = list(base["probes"])
    columns = ["new_task", *probes, "forward_kl"]
    print(f"\n  {'model':<34}" + "".join(f"{c[:12]:>13}" for c in columns) + f"{'forgetting':>19}")
    print(f"  {'base':<34}" + "".join(f"{v:>13.3f}" for v in [base["new_task"], *base["probes"].values(), 0.0]))
    for row in rows:
        values = [row["new_task"], *(row["probes"][p] for p in probes), row["forward_kl"]]
        mean = row.get("forgetting_intervals", {}).get("mean")
        paired = f" +-{(mean['high'] - mean['low']) / 2:.3f}" if mean and mean["low"] is not None else " +-n/a"
        print(
            f"  {(row['method'] + ': ' + row['run'])[:34]:<34}"
            + "".join(f"{v:>13.3f}" for v in values)
            + f"{row['forgetting']:>+12.3f}{paired:<7}"
        )
    print("  (forgetting: base minus model, mean over probes, +- the paired 95 % interval's half-width)")


def cmd_llm_pipeline(args: argparse.Namespace) -> None:
    from vla_razor.llm.pipeline import run_pipeline

    cfg = _llm_config(args)
    result = run_pipeline(cfg)
    _print_llm_summary(result)


def _print_llm_summary(result: Any) -> None:
    import json

    summary = json.loads(result.summary_path.read_text())
    _print_llm_rows(summary["runs"], summary["base"])
    print(f"\nreport: {result.report_dir / 'report.html'} (report.md, PNG plots, report.json)")
    print(f"summary: {result.summary_path}   ({result.seconds:.0f} s)")


def cmd_llm_train(args: argparse.Namespace) -> None:
    from vla_razor.llm.train import train_method

    cfg = _llm_config(args)
    result = train_method(cfg, args.method)
    if result.summary is not None and result.steps == 0 and result.resumed_from is None:
        print(f"{args.method}: already finished: {result.run_dir}")
    else:
        resumed = f", resumed from update {result.resumed_from}" if result.resumed_from else ""
        print(f"{args.method}: {result.steps} updates{resumed}, {result.seconds:.0f} s")
    print(f"  run folder: {result.run_dir}  (config.yaml, metrics.jsonl, summary.json, model/)")
    print(_summary_line(result.summary, "new task", 3))


def cmd_llm_eval(args: argparse.Namespace) -> None:
    from vla_razor.llm.train import evaluate_model
    from vla_razor.runs import atomic_write_json

    from vla_razor.analysis.intervals import forgetting_intervals, probe_intervals

    cfg = _llm_config(args)
    results = evaluate_model(cfg, Path(args.model_dir) if args.model_dir else None)
    base_examples = results["base"].get("probe_examples", {})
    for name, values in results.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, (int, float))))
        chat = values.get("probe_chat_template", {})
        for probe, i in probe_intervals(values.get("probe_examples", {})).items():
            template = ", chat template" if chat.get(probe) else ""
            print(f"  {probe:<14} {i.value:.4f}  95 % [{i.low:.4f}, {i.high:.4f}]  n {i.n}{template}")
        if name != "base":
            for probe, i in forgetting_intervals(base_examples, values.get("probe_examples", {})).items():
                print(f"  forgetting {probe:<10} {i.value:+.4f}  paired 95 % [{i.low:+.4f}, {i.high:+.4f}]")
    if args.out:
        atomic_write_json(Path(args.out), results)
        print(f"written: {args.out}")


def cmd_llm_probe_size(args: argparse.Namespace) -> None:
    from vla_razor.llm.evaluate import BASE_EVAL
    from vla_razor.llm.probes import subset_sizes
    from vla_razor.runs import read_json_file

    path = Path(args.base_eval) if args.base_eval else _llm_config(args).experiment_dir / BASE_EVAL
    if not path.is_file():
        raise UserError(f"{path}: no base evaluation; `vla-razor llm eval --config ...` measures the base first")
    results = read_json_file(path).get("results", {})
    examples = results.get("probe_examples")
    if not examples:
        raise UserError(
            f"{path} holds no per-example probe scores (made before they were kept); delete it and run "
            "`vla-razor llm eval` to measure the base again"
        )
    print(
        f"{path}: examples for a paired 95 % forgetting interval of +-{args.half_width:g}, assuming a fine-tuned "
        f"model redraws its score on {args.churn:.0%} of the examples (Var(d) = 2 churn Var(base))"
    )
    try:
        sizes = subset_sizes(examples, args.half_width, args.churn)
    except ValueError as err:
        raise UserError(f"--half-width / --churn: {err}") from None
    print(f"  {'probe':<16}{'measured':>10}{'base':>8}{'needed':>10}{'shipped':>10}")
    for probe, row in sizes.items():
        shipped = "?" if row["shipped"] is None else str(row["shipped"])
        short = "" if row["enough"] in (True, None) else "  (more than ship: use all)"
        print(f"  {probe:<16}{row['measured']:>10}{row['base_score']:>8.3f}{row['needed']:>10}{shipped:>10}{short}")


def cmd_llm_report(args: argparse.Namespace) -> None:
    from vla_razor.llm.pipeline import summarize_experiment

    _print_llm_summary(summarize_experiment(_llm_config(args)))


def cmd_report(args: argparse.Namespace) -> None:
    from vla_razor.analysis.report import write_report

    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"runs directory {runs_dir} does not exist")
    out = Path(args.out) if args.out else runs_dir / "report"
    experiment = None
    if args.summary_out:  # checked before the report is made
        from vla_razor.analysis.report import NotAnExperimentError, read_experiment_summary

        try:
            experiment = read_experiment_summary(runs_dir)
        except NotAnExperimentError as err:
            raise UserError(f"--summary-out: {err}") from None
    result = write_report(runs_dir, out, title=args.title)
    print(f"report: {result.html_path} ({result.runs} runs, {result.points} points)")
    if experiment is not None:
        from vla_razor.analysis.report import StaleSummaryError, write_results_summary

        try:
            print(f"summary: {write_results_summary(experiment, Path(args.summary_out), result)}")
        except StaleSummaryError as err:
            raise UserError(f"--summary-out: {runs_dir / 'summary.json'}: {err}") from None


def cmd_curve(args: argparse.Namespace) -> None:
    from vla_razor.analysis.learning_curve import CurveError, write_curve

    out = Path(args.out) if args.out else Path(args.run_dir)
    try:
        json_path, png_path = write_curve(Path(args.run_dir), out, command=args.command_note)
    except CurveError as err:
        raise UserError(str(err)) from None
    print(f"learning curve: {json_path} and {png_path}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from vla_razor.sweep.config import SweepConfig
    from vla_razor.sweep.sweep import run_sweep

    cfg = load_config(SweepConfig, Path(args.config), overrides_from_args(args))
    result = run_sweep(cfg, progress=not args.quiet, command=shlex.join(["vla-razor", *args.argv]))
    print(
        f"sweep {result.experiment_dir}: {len(result.finished)} tasks run, {len(result.skipped)} already finished, "
        f"{len(result.failed)} failed ({result.seconds:.0f} s); status: {result.experiment_dir / 'sweep_status.json'}"
    )
    for name, cause in result.failed.items():
        print(f"  failed: {name}: {cause}")
    if result.report_dir is not None:
        print(f"report: {result.report_dir / 'report.html'}")
    if result.failed:
        raise UserError(f"{len(result.failed)} task(s) failed (above); run the same command again to retry them")


def cmd_data_convert(args: argparse.Namespace) -> None:
    from data_collection.convert import ConvertConfig, convert, detect_format

    overrides = {**overrides_from_args(args), "src": args.src, "dst": args.dst}
    cfg = load_config(ConvertConfig, Path(args.config) if args.config else None, overrides)
    fmt = detect_format(cfg.src) if cfg.src_format == "auto" else cfg.src_format
    frames = convert(cfg)
    print(f"{cfg.src} ({fmt}) -> {cfg.dst} ({cfg.to}): {frames} frames")


def cmd_forecast(args: argparse.Namespace) -> None:
    from vla_razor.analysis.forecast import write_forecast

    runs_dir = Path(args.runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"runs directory {runs_dir} does not exist")
    out = Path(args.out) if args.out else runs_dir / "forecast.json"
    try:
        f = write_forecast(runs_dir, out, folds=args.folds)
    except ValueError as err:
        raise UserError(str(err)) from None
    c2, c1, c0 = f["coeffs"]
    print(
        f"retention = {c0:.4g} {c1:+.4g} * KL {c2:+.4g} * KL^2 (forward KL, R^2 {f['r2']:.3f}, {f['runs']} runs, "
        f"{f['points']} points, KL {f['kl_range'][0]:.3g}..{f['kl_range'][1]:.3g})"
    )
    print(
        f"held-out runs ({f['folds']} folds): mean absolute error {f['holdout_mae']:.4f} "
        f"(final models {f['holdout_mae_final']:.4f}; predicting the mean retention: {f['baseline_mae']:.4f})"
    )
    print(f"forecast: {out}  (give it to a run as `forecast: {out}` to log its predicted retention)")


class _Parser(argparse.ArgumentParser):
    """argparse, whose refusals are one line (its usage of ~100 config flags would bury the error)."""

    def error(self, message: str) -> typing.NoReturn:
        if message.endswith("expected one argument"):
            message += " (a value that starts with '-' is given as --flag=VALUE)"
        self.exit(BAD_INPUT_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_commands(domain: argparse.ArgumentParser, config_cls: type, default_config: str, *rows: tuple) -> Any:
    """The commands of a domain (`vla-razor <domain> <command>`), a row (name, function, help[, {flag:
    add_argument's keywords}]) a command: each takes --config (default `default_config`), its own flags, then every
    field of `config_cls` as a flag. Returns the domain's subparsers, for commands of another shape."""
    subcommands = domain.add_subparsers(dest=f"{domain.prog.split()[-1]}_command", required=True)
    for name, fn, text, *flags in rows:
        sub = subcommands.add_parser(name, help=text)
        sub.add_argument("--config", help=f"YAML config (default: {default_config} if present)")
        for flag, kwargs in (flags[0] if flags else {}).items():
            sub.add_argument(flag, **kwargs)
        add_config_arguments(sub, config_cls)
        sub.set_defaults(func=fn)
    return subcommands


def build_parser() -> argparse.ArgumentParser:
    from vla_razor.toy.config import ToyConfig

    parser = _Parser(prog="vla-razor", description="Fine-tune without forgetting: RL's Razor as a tool.")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: environment VLA_RAZOR_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    _config_commands(
        commands.add_parser("toy", help="the paper's ParityMNIST experiment (Appendix B.3)"),
        ToyConfig,
        DEFAULT_TOY_CONFIG,
        ("pretrain", cmd_toy_pretrain, "pretrain the base MLP on ParityMNIST + FashionMNIST"),
        ("sweep", cmd_toy_sweep, "fine-tune every method over the hyperparameter grid, then write the report"),
        (
            "report",
            cmd_toy_report,
            "rewrite the report from the experiment's run folders",
            {"--out": {"help": "report folder (default: <experiment>/report)"}},
        ),
    )

    from vla_razor.robot.config import RobotConfig

    policy = {"--policy": {"help": "policy folder to evaluate (default: the base itself)"}}
    robot_commands = _config_commands(
        commands.add_parser("robot", help="the main job: fine-tune a VLA on pick-can, measure drawer retention"),
        RobotConfig,
        DEFAULT_ROBOT_CONFIG,
        ("pipeline", cmd_robot_pipeline, "the main job: SFT demos, SFT, RL, evaluation of each, forgetting report"),
        ("collect", cmd_robot_collect, "collect the SFT demonstrations of the config's collect section (resumable)"),
        ("pretrain", cmd_robot_pretrain, "train the base policy by behaviour cloning on expert demonstrations"),
        ("sft", cmd_robot_sft, "fine-tune the base on pick-can demonstrations (paper, Appendix B.2)"),
        ("rl", cmd_robot_rl, "on-policy REINFORCE on pick-can with a reward-normalization baseline (B.2)"),
        (
            "eval",
            cmd_robot_eval,
            "pick-can success, drawer retention and KL to the base of one policy folder",
            {**policy, "--out": {"help": "also write the results to this JSON file"}},
        ),
        ("report", cmd_robot_report, "summary.json and the report over every finished run of the experiment"),
        (
            "variants",
            cmd_robot_variants,
            "SimplerEnv's variant aggregation or visual matching of one policy folder",
            policy,
        ),
    )
    export = robot_commands.add_parser(
        "export", help="a policy (or a run's policy/) as a folder OpenVLA's own code loads, LoRA merged"
    )
    export.add_argument("run", help="a policy folder, or a run folder holding policy/")
    export.add_argument("out", help="the folder to write (must not exist, or be empty)")
    export.add_argument(
        "--code-from",
        required=True,
        help="folder with OpenVLA's configuration/modeling/processing_prismatic.py (the openvla-7b "
        "folder, or prismatic/extern/hf of an OpenVLA clone): copied into the export",
    )
    export.set_defaults(func=cmd_robot_export)

    from vla_razor.llm.config import LLMConfig
    from vla_razor.llm.train import METHODS as LLM_METHODS

    _config_commands(
        commands.add_parser(
            "llm",
            help="fine-tune a causal LM on a verifiable task (GRPO, 1-0, SFT, SimPO), forgetting on lm-eval probes",
        ),
        LLMConfig,
        DEFAULT_LLM_CONFIG,
        ("pipeline", cmd_llm_pipeline, "base evaluation, each of the config's methods, summary.json and the report"),
        (
            "train",
            cmd_llm_train,
            "one run of one method (resumes an interrupted one), evaluated at the end",
            {"--method": {"required": True, "choices": LLM_METHODS, "help": "what to train"}},
        ),
        (
            "eval",
            cmd_llm_eval,
            "new-task accuracy, probes and forward KL of the base or a saved model",
            {
                "--model-dir": {"help": "a saved model folder (a run's model/); default: the base only"},
                "--out": {"help": "also write the results to this JSON file"},
            },
        ),
        ("report", cmd_llm_report, "summary.json and the report over every finished run of the experiment"),
        (
            "probe-size",
            cmd_llm_probe_size,
            "from the base's per-example probe scores: the examples per probe for a +-2-point paired forgetting "
            "interval",
            {
                "--base-eval": {"help": "a base_eval.json (default: the config's experiment's)"},
                "--half-width": {"type": float, "default": 0.02, "help": "target half-width (default 0.02)"},
                "--churn": {
                    "type": float,
                    "default": 0.25,
                    "help": "assumed fraction of examples whose score a fine-tuned model redraws (default 0.25)",
                },
            },
        ),
    )

    from vla_razor.sweep.config import SweepConfig

    sweep = commands.add_parser("sweep", help="an experiment's hyperparameter grid as Ray tasks (local or a cluster)")
    sweep.add_argument("config", help="sweep YAML (configs/sweep_*.yaml)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(sweep, SweepConfig)
    sweep.set_defaults(func=cmd_sweep)

    from data_collection.convert import ConvertConfig

    data = commands.add_parser("data", help="demonstration datasets in the field's formats (LeRobotDataset, RLDS)")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    convert = data_commands.add_parser(
        "convert", help="convert a dataset: ours <-> LeRobotDataset v3.0, RLDS (TFDS builder folder) -> either"
    )
    convert.add_argument("src", help="dataset folder to read (format detected from its files)")
    convert.add_argument("dst", help="folder to write (replaced whole, atomically)")
    convert.add_argument("--config", help="YAML config of the conversion (ConvertConfig fields)")
    add_config_arguments(convert, ConvertConfig)
    convert.set_defaults(func=cmd_data_convert)

    forecast = commands.add_parser(
        "forecast",
        help="fit retention = f(forward KL) on finished runs, with its error on held-out runs (forecast.json)",
    )
    forecast.add_argument("runs_dir", help="folder searched for run folders (summary.json)")
    forecast.add_argument("--out", help="forecast file (default: RUNS_DIR/forecast.json)")
    forecast.add_argument("--folds", type=int, default=5, help="folds of runs held out in turn (default 5)")
    forecast.set_defaults(func=cmd_forecast)

    curve = commands.add_parser(
        "curve", help="one run's learning curve (success and forward KL per iteration): learning_curve.json + .png"
    )
    curve.add_argument("run_dir", help="a run folder (metrics.jsonl, points.jsonl, summary.json)")
    curve.add_argument("--out", help="folder for learning_curve.json/.png (default: the run folder)")
    curve.add_argument("--command-note", default=None, help="the command that made the run, recorded in the JSON")
    curve.set_defaults(func=cmd_curve)

    report = commands.add_parser("report", help="forgetting report from any run folders (toy, robot, llm)")
    report.add_argument("runs_dir", help="folder searched for run folders (summary.json)")
    report.add_argument("--out", help="report folder (default: RUNS_DIR/report)")
    report.add_argument("--title", default=None, help="report title")
    report.add_argument(
        "--summary-out",
        default=None,
        help="also write RUNS_DIR's experiment summary.json here with n_runs / n_points of this report "
        "(the results' headline file, e.g. docs/results/robot/summary.json)",
    )
    report.set_defaults(func=cmd_report)
    return parser


# Errors of input the user can fix: one line, exit code 2 (argparse's own for bad flags).
BAD_INPUT_EXIT = 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from vla_razor.analysis.learning_curve import CurveError
    from vla_razor.analysis.report import NoRunsError
    from vla_razor.optim import NonFiniteError
    from vla_razor.policies.openvla.export import ExportError
    from vla_razor.policies.openvla.loading import CheckpointError
    from vla_razor.runs import CorruptFileError, RunLockedError

    return (
        ConfigError,
        UserError,
        FileNotFoundError,
        DatasetError,
        CheckpointError,
        CurveError,
        NonFiniteError,
        CorruptFileError,
        RunLockedError,
        NoRunsError,
        ExportError,
    )


def main(argv: list[str] | None = None) -> int:
    """Runs one command. Bad input is one line on stderr and exit code 2; any other error is one line naming its
    type and exit code 1, with the traceback under --debug: never a page of stack from deep inside."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # the command line, recorded beside what it makes
    debug = args.debug or os.environ.get("VLA_RAZOR_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("vla-razor: interrupted; finished runs are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 (the one place every error is turned into a line)
        if debug:
            raise
        line = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, _user_errors()):
            print(f"vla-razor: error: {line}", file=sys.stderr)
            return BAD_INPUT_EXIT
        print(
            f"vla-razor: internal error: {type(err).__name__}: {line} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        from vla_razor.runs import release_run_locks

        release_run_locks()  # the command is over: its runs are free for the next one, finished or not
    return 0


if __name__ == "__main__":
    sys.exit(main())
