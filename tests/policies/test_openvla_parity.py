"""Our OpenVLA against OpenVLA's own code: a model built and saved by OpenVLA's Hugging Face files in OpenVLA's
pinned venv (openvla_parity/make_reference.py) loads here, and our greedy tokens, logits and actions, under both
statistics keys, are OpenVLA's `predict_action`'s.

Needs `make setup-openvla` (.venv-openvla: transformers 4.40.1, timm 0.9.10) and OPENVLA_HF_CODE, a folder holding
OpenVLA's configuration_prismatic.py, modeling_prismatic.py and processing_prismatic.py (the released openvla-7b
folder has them, as does prismatic/extern/hf in OpenVLA's repository); skipped without them (CI has neither)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv-openvla" / "bin" / "python"
CODE = os.environ.get("OPENVLA_HF_CODE")

pytestmark = pytest.mark.skipif(
    not VENV_PYTHON.is_file() or not CODE or not (Path(CODE) / "modeling_prismatic.py").is_file(),
    reason="needs .venv-openvla (make setup-openvla) and OPENVLA_HF_CODE (OpenVLA's HF code folder)",
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("openvla_reference")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(VENV_PYTHON), str(Path(__file__).parent / "openvla_parity" / "make_reference.py"), CODE, str(out)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_our_policy_acts_as_openvla_code(reference: Path) -> None:
    from vla_razor.policies.openvla import OpenVLAPolicy

    records = json.loads((reference / "reference.json").read_text())
    images = np.load(reference / "images.npy")
    for i, record in enumerate(records):
        policy = OpenVLAPolicy.from_pretrained(reference / "model", dataset=record["unnorm_key"])
        image = Image.fromarray(images[i // 2])  # PIL, as OpenVLA's processor takes it
        batch = policy.encode([image], [record["instruction"]])
        assert batch["input_ids"][0].tolist() == record["prompt_ids"]  # BOS, prompt, the "▁" OpenVLA appends
        with torch.no_grad():
            sample = policy.sample(batch, temperature=0.0)
        assert sample.tokens[0].tolist() == record["tokens"]
        theirs = torch.from_numpy(np.load(reference / f"logits_{i}.npy"))[:, policy.vocab_ids]
        torch.testing.assert_close(sample.logits[0], theirs, atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(sample.actions[0], np.asarray(record["actions"]), atol=1e-6)


def test_export_loads_in_openvla_code_with_the_fine_tunes_statistics(reference: Path, tmp_path: Path) -> None:
    """A fine-tune of that model (LoRA adapters moved off zero, merged; its own action statistics under a new
    key), exported by `vla-razor robot export`, loads in OpenVLA's code through AutoModelForVision2Seq /
    AutoProcessor with remote code, and OpenVLA's predict_action with the new key gives our actions."""
    from vla_razor.cli.main import main as cli
    from vla_razor.policies.openvla import OpenVLAPolicy
    from vla_razor.lora import LoraOptions
    from vla_razor.lora import apply_lora

    torch.manual_seed(0)
    policy = OpenVLAPolicy.from_pretrained(reference / "model")
    policy.model = apply_lora(policy.model, LoraOptions(enabled=True, r=4, alpha=8, target_modules="language"))
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    policy.merge_adapters()
    stats = {
        "q01": [-0.05, -0.06, -0.07, -0.2, -0.2, -0.3, 0.0],
        "q99": [0.05, 0.06, 0.07, 0.2, 0.2, 0.3, 1.0],
        "mask": [True] * 6 + [False],
    }
    policy.config.norm_stats = {**policy.config.norm_stats, "vla_razor_embedded": {"action": stats}}
    policy.save_pretrained(tmp_path / "finetuned")

    assert cli(["robot", "export", str(tmp_path / "finetuned"), str(tmp_path / "export"), "--code-from", CODE]) == 0
    instructions = [r["instruction"] for r in json.loads((reference / "reference.json").read_text())[::2]]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [
            str(VENV_PYTHON),
            str(Path(__file__).parent / "openvla_parity" / "run_export.py"),
            str(tmp_path / "export"),
            str(reference / "images.npy"),
            "vla_razor_embedded",
            str(tmp_path / "theirs.json"),
            *instructions,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.asarray(json.loads((tmp_path / "theirs.json").read_text()))

    ours = OpenVLAPolicy.from_pretrained(tmp_path / "export", dataset="vla_razor_embedded")
    images = np.load(reference / "images.npy")
    with torch.no_grad():
        sample = ours.sample(ours.encode([Image.fromarray(i) for i in images], instructions), temperature=0.0)
    np.testing.assert_allclose(sample.actions, theirs, atol=1e-6)
    before = OpenVLAPolicy.from_pretrained(reference / "model", dataset="fractal20220817_data")
    assert not np.allclose(
        sample.normalized,
        before.sample(before.encode([Image.fromarray(images[0])], instructions[:1]), 0.0).normalized[0],
    )
