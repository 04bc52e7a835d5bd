from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from vla_razor.config import ConfigError, from_dict, load_config, option, to_dict


@dataclass
class Inner:
    lr: float = option(1e-3, "learning rate")
    steps: int = option(10, "steps")


@dataclass
class Outer:
    name: str = option("x", "name")
    mode: Literal["a", "b"] = option("a", "mode")
    inner: Inner = option(Inner(), "inner")
    sizes: list[int] = option([1, 2], "sizes")
    limit: float | None = option(None, "optional limit")
    out: Path = option(Path("runs"), "output")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_loads_nested_values_and_defaults(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "name: y\ninner:\n  steps: 3\nsizes: [4]\nlimit: 2\n"))
    assert cfg.name == "y" and cfg.inner.steps == 3 and cfg.inner.lr == 1e-3
    assert cfg.sizes == [4] and cfg.limit == 2.0 and isinstance(cfg.limit, float)
    assert cfg.out == Path("runs")


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "inner:\n  stepz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Outer, path)
    assert "inner.stepz" in str(err.value) and str(path) in str(err.value) and "steps" in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, "inner:\n  steps: three\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:inner.steps: expected an integer"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match=r"mode: expected one of \['a', 'b'\]"):
        load_config(Outer, write(tmp_path, "mode: c\n"))
    with pytest.raises(ConfigError, match="expected true or false"):
        from vla_razor.toy.config import ToyConfig

        load_config(ToyConfig, write(tmp_path, "save_weights: 3\n"))


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 3e-6 as a string; a float field still takes it.
    assert load_config(Outer, write(tmp_path, "inner:\n  lr: 3e-6\n")).inner.lr == 3e-6


def test_dotted_overrides_win_over_file(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "inner:\n  steps: 3\n"), {"inner.steps": 7, "name": "z"})
    assert cfg.inner.steps == 7 and cfg.name == "z"
    with pytest.raises(ConfigError, match="unknown key inner.nope"):
        load_config(Outer, None, {"inner.nope": 1})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "absent.yaml")


def test_round_trip_through_dict(tmp_path):
    cfg = Outer(name="q", inner=Inner(lr=0.5, steps=2))
    import yaml

    again = load_config(Outer, write(tmp_path, yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


def test_shipped_toy_configs_load():
    from vla_razor.toy.config import ToyConfig

    for path in ("configs/toy_parity_mnist.yaml", "configs/toy_quick.yaml"):
        cfg = load_config(ToyConfig, Path(__file__).parents[1] / path)
        assert cfg.sweep.methods
    paper = load_config(ToyConfig, Path(__file__).parents[1] / "configs/toy_parity_mnist.yaml")
    lrs = paper.sweep.learning_rates()
    assert len(lrs) == 15 and lrs[0] == pytest.approx(3e-6) and lrs[-1] == pytest.approx(1e-3)


def test_bare_off_reads_as_the_literal_off(tmp_path):
    # YAML 1.1 (and so a `--wandb off` flag) reads a bare off as false; a field whose choices include "off" takes it.
    from vla_razor.toy.config import ToyConfig

    assert load_config(ToyConfig, write(tmp_path, "wandb: off\n")).wandb == "off"
    with pytest.raises(ConfigError, match=r"mode: expected one of \['a', 'b'\], got False"):
        load_config(Outer, write(tmp_path, "mode: off\n"))


@dataclass
class WithTunedSection:
    inner: Inner = option(Inner(lr=0.5, steps=7), "a section whose default differs from Inner's own")


def test_a_section_given_in_part_keeps_the_fields_own_defaults(tmp_path):
    cfg = load_config(WithTunedSection, write(tmp_path, "inner:\n  steps: 3\n"))
    assert cfg.inner.steps == 3 and cfg.inner.lr == 0.5
    assert load_config(WithTunedSection, None, {"inner.lr": 0.25}).inner.steps == 7


def _config_class(name: str) -> type:
    """The dataclass a shipped YAML file is read into, from its name's prefix."""
    from data_collection.collect import CollectConfig
    from data_collection.convert import ConvertConfig
    from vla_razor.llm.config import LLMConfig
    from vla_razor.policies.openvla import OpenVLAConfig
    from vla_razor.robot.config import RobotConfig
    from vla_razor.sweep.config import SweepConfig
    from vla_razor.toy.config import ToyConfig

    prefixes = {
        "robot_": RobotConfig,
        "libero_": RobotConfig,  # the robot pipeline on LIBERO
        "llm_": LLMConfig,
        "toy_": ToyConfig,
        "sweep_": SweepConfig,
        "collect_": CollectConfig,
        "convert_": ConvertConfig,
        "policy_": OpenVLAConfig,
    }
    found = [cls for prefix, cls in prefixes.items() if name.startswith(prefix)]
    assert found, f"configs/{name}: no config class for this name; add its prefix here"
    return found[0]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    """Each file in configs/ reads into its dataclass, and what it resolves to reads back the same (the run
    folders' config.yaml)."""
    cfg = load_config(_config_class(path.name), path)
    assert from_dict(type(cfg), to_dict(cfg)) == cfg


def test_a_long_choice_list_is_shortened_in_the_help_but_still_checked() -> None:
    """`--task` has one choice per task id (LIBERO brings ~130): the help names a few and the count, the value is
    still checked against all of them."""
    import argparse
    import re

    from envs.tasks import TASKS
    from vla_razor.config import add_config_arguments
    from vla_razor.robot.config import RobotConfig

    parser = argparse.ArgumentParser(prog="t")
    add_config_arguments(parser, RobotConfig)
    text = parser.format_help()
    task_line = next(line for line in text.splitlines() if line.strip().startswith("--task "))
    listed = re.search(r"\.\.\. (\d+) in all", task_line)
    assert listed and int(listed.group(1)) >= len(TASKS) and "'libero_90_89'" not in text  # task ids and suites
    assert "{'embedded' | 'simpler' | 'libero'}" in text, "short choice lists stay whole"
