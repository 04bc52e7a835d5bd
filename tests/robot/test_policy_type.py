"""The robot stages take their policy from `policy.type`: a type registered here runs a real SFT stage; the KL refuses
a policy with continuous actions before computing anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vla_razor.cli.main import main as cli
from vla_razor.config import ConfigError
from vla_razor.policies.openvla import OpenVLAConfig
from vla_razor.policies.openvla.policy import OpenVLAPolicy
from vla_razor.policies.registry import POLICY_TYPES, register_policy
from vla_razor.robot.evaluate import KLObservations, _sample_prefixes, kl_to_base

from tests.policies.test_base import GaussianActionPolicy
from tests.robot.test_kl_budget import quick_args


class RecordedOpenVLA(OpenVLAPolicy):
    """OpenVLA under another type name, recording the folders it is loaded from."""

    loaded: list[Path] = []
    dtypes: list[str | None] = []

    @classmethod
    def from_pretrained(cls, directory, *args, **kw):
        cls.loaded.append(Path(directory))
        cls.dtypes.append(kw.get("dtype"))
        return super().from_pretrained(directory, *args, **kw)


@pytest.fixture
def recorded_type():
    register_policy("recorded_openvla", lambda: RecordedOpenVLA)
    RecordedOpenVLA.loaded, RecordedOpenVLA.dtypes = [], []
    yield "recorded_openvla"
    del POLICY_TYPES["recorded_openvla"]


def two_update_sft(tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path) -> list[str]:
    """`robot sft` of two updates on the angled demonstrations into experiment e under tmp_path/runs."""
    return [
        "robot",
        "sft",
        "--base",
        str(tiny_base),
        "--runs_dir",
        str(tmp_path / "runs"),
        "--experiment",
        "e",
        "--sft.datasets",
        json.dumps([str(demo_dirs["pick_can_angled"])]),
        "--sft.optim.batch_size",
        "4",
        "--sft.optim.max_steps",
        "2",
        *quick_args(),
    ]


def test_sft_loads_base_and_policy_through_the_configured_type(
    recorded_type: str, tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    args = two_update_sft(tiny_base, demo_dirs, tmp_path)
    assert cli([*args, "--policy.type", "octo"]) == 2
    assert "policy.type: unknown policy type 'octo'; known types: openvla, recorded_openvla" in capsys.readouterr().err
    assert cli([*args, "--policy.type", recorded_type]) == 0
    assert RecordedOpenVLA.loaded == [tiny_base, tiny_base], "the base, then the policy SFT trains"
    assert RecordedOpenVLA.dtypes == [None, None], "policy.dtype saved: each folder's own dtype"
    (run,) = [p.parent for p in (tmp_path / "runs" / "e" / "runs").glob("*/summary.json")]
    assert yaml.safe_load((run / "config.yaml").read_text())["policy"] == {"type": recorded_type, "dtype": "saved"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 2 and summary["predictors"]["forward_kl"] > 0


def test_policy_dtype_loads_base_and_runs_in_bfloat16(
    recorded_type: str, tiny_base: Path, demo_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """`policy.dtype bfloat16` converts every policy the stages load (the float32 base included), trains it with
    float32 master weights and saves the run's policy in bfloat16."""
    assert json.loads((tiny_base / "config.json").read_text())["text_config"]["torch_dtype"] == "float32"
    args = [
        *two_update_sft(tiny_base, demo_dirs, tmp_path),
        "--sft.optim.master_weights",
        "float32",
        "--policy.type",
        recorded_type,
        "--policy.dtype",
        "bfloat16",
    ]
    assert cli(args) == 0
    assert RecordedOpenVLA.dtypes and set(RecordedOpenVLA.dtypes) == {"bfloat16"}
    (run,) = [p.parent for p in (tmp_path / "runs" / "e" / "runs").glob("*/summary.json")]
    saved = OpenVLAPolicy.from_pretrained(run / "policy")
    assert {p.dtype for p in saved.model.parameters()} == {torch.bfloat16}
    base = OpenVLAPolicy.from_pretrained(tiny_base)
    changed = [
        name
        for (name, p), q in zip(saved.model.named_parameters(), base.model.parameters())
        if not torch.equal(p.float(), q.to(torch.bfloat16).float())
    ]
    assert changed, "two SFT updates changed the bfloat16 weights"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["predictors"]["forward_kl"] > 0
    base_eval = json.loads((tmp_path / "runs" / "e" / "base_eval.json").read_text())
    assert base_eval["settings"]["policy_dtype"] == "bfloat16", "a float32 base evaluation is not reused"


def test_the_kl_refuses_a_continuous_action_policy() -> None:
    cfg = OpenVLAConfig.tiny()
    cfg.image_sizes = [32, 32] if len(cfg.image_sizes) == 2 else [32]
    base = OpenVLAPolicy.from_config(cfg, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    tokens = _sample_prefixes(base, list(images), ["pick coke can"] * 2, 2, seed=0)
    obs = KLObservations(images, ["pick coke can"] * 2, tokens.numpy(), {"seed": 0})
    with pytest.raises(ConfigError, match="the KL to the base: the policy GaussianActionPolicy has continuous actions"):
        kl_to_base(base, GaussianActionPolicy(), obs)
    assert obs.base_logits is None, "refused before the base's logits are computed"
    with torch.no_grad():
        assert kl_to_base(base, base, obs)["forward_kl"] == pytest.approx(0.0, abs=1e-5)
