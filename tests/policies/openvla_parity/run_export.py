"""Runs in OpenVLA's own venv: loads an export (`vla-razor robot export`) the way OpenVLA's README does,
AutoModelForVision2Seq / AutoProcessor with trust_remote_code, and writes predict_action's actions for the given
images and instructions under one unnorm key:

    .venv-openvla/bin/python tests/policies/openvla_parity/run_export.py EXPORT IMAGES.npy UNNORM_KEY OUT.json "instr" ...
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    spec = importlib.util.spec_from_file_location("make_reference", Path(__file__).with_name("make_reference.py"))
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    helper.repair_torchvision()
    from transformers import AutoModelForVision2Seq, AutoProcessor

    export, images, key, out, instructions = sys.argv[1], np.load(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
    processor = AutoProcessor.from_pretrained(export, trust_remote_code=True)
    model = AutoModelForVision2Seq.from_pretrained(export, trust_remote_code=True, torch_dtype=torch.float32).eval()
    actions = []
    for image, instruction in zip(images, instructions):
        inputs = processor(helper.PROMPT.format(instruction), Image.fromarray(image))
        with torch.no_grad():
            actions.append(np.asarray(model.predict_action(**inputs, unnorm_key=key, do_sample=False)).tolist())
    Path(out).write_text(json.dumps(actions))


if __name__ == "__main__":
    main()
