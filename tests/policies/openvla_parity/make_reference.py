"""Runs in OpenVLA's own venv (transformers 4.40.1, timm 0.9.10: `make setup-openvla`), never in the project's.

Builds an OpenVLA with OpenVLA's own Hugging Face code (the configuration / modeling / processing_prismatic.py
files that the released openvla-7b folder ships, from OPENVLA_HF_CODE): the released vision side (fused DINOv2 +
SigLIP at 224 px, real shapes, random weights), a 2-layer Llama of width 64 with Llama-2's 32064-token vocabulary,
two action statistics. The output rows of non-action tokens are zeroed, so that greedy decoding over the whole
vocabulary picks action tokens, as a trained OpenVLA's does. It saves the model and processor as OpenVLA does
(`save_pretrained`), then records OpenVLA's own `predict_action` actions and the generated tokens with their logits
for a few images, instructions and both statistics keys:

    .venv-openvla/bin/python tests/policies/openvla_parity/make_reference.py OPENVLA_HF_CODE OUT
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WORDS = "In : What action should the robot take to pick coke can open the top drawer close ? Out".split()
PROMPT = "In: What action should the robot take to {}?\nOut:"
INSTRUCTIONS = ["pick coke can", "open the top drawer", "close the top drawer"]
STATS = {
    "fractal20220817_data": {
        "q01": [-0.22, -0.15, -0.23, -0.35, -0.42, -0.44, 0.0],
        "q99": [0.18, 0.15, 0.22, 0.59, 0.35, 0.45, 1.0],
    },
    "bridge_orig": {
        "q01": [-0.03, -0.04, -0.03, -0.08, -0.09, -0.13, 0.0],
        "q99": [0.03, 0.04, 0.04, 0.08, 0.08, 0.13, 1.0],
    },
}


def repair_torchvision() -> None:
    """The project's import helper (vla_razor/hf_imports.py, loaded by path: the project is not installed here):
    timm imports torchvision, whose PyPI wheel fails against the CPU torch build unless repaired."""
    path = Path(__file__).resolve().parents[3] / "vla_razor" / "hf_imports.py"
    spec = importlib.util.spec_from_file_location("hf_imports", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.import_timm()


def openvla_code(folder: Path):
    """OpenVLA's three HF files imported as one package (they import each other relatively)."""
    repair_torchvision()
    spec = importlib.machinery.ModuleSpec("openvla_hf", None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(folder)]
    sys.modules["openvla_hf"] = package
    return (
        importlib.import_module("openvla_hf.configuration_prismatic"),
        importlib.import_module("openvla_hf.modeling_prismatic"),
        importlib.import_module("openvla_hf.processing_prismatic"),
    )


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: 3 + i for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )


def main() -> None:
    code, out = Path(sys.argv[1]), Path(sys.argv[2])
    configuration, modeling, processing = openvla_code(code)
    torch.manual_seed(0)
    norm_stats = {key: {"action": {**s, "mask": [True] * 6 + [False]}} for key, s in STATS.items()}
    config = configuration.OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px",
        llm_backbone_id="llama2-7b-pure",
        arch_specifier="no-align+fused-gelu-mlp",
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        text_config={
            "model_type": "llama",
            "vocab_size": 32064,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "pad_token_id": 32000,
            "torch_dtype": "float32",
        },
        llm_max_length=2048,
        pad_token_id=32000,
        pad_to_multiple_of=64,
        norm_stats=norm_stats,
        n_action_bins=256,
        torch_dtype="float32",
    )
    model = modeling.OpenVLAForActionPrediction(config).eval()
    action_ids = torch.arange(32000 - 256, 32000)
    with torch.no_grad():
        head = model.language_model.lm_head.weight
        keep = head[action_ids].clone() * 8.0
        head.zero_()
        head[action_ids] = keep
    image_processor = processing.PrismaticImageProcessor(
        use_fused_vision_backbone=True,
        image_resize_strategy="resize-naive",
        input_sizes=[(3, 224, 224)] * 2,
        interpolations=["bicubic", "bicubic"],
        means=[(0.485, 0.456, 0.406), (0.5, 0.5, 0.5)],
        stds=[(0.229, 0.224, 0.225), (0.5, 0.5, 0.5)],
    )
    processor = processing.PrismaticProcessor(image_processor, word_tokenizer())
    model.save_pretrained(out / "model", safe_serialization=True)
    processor.save_pretrained(out / "model")

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (180, 240, 3), dtype=np.uint8) for _ in INSTRUCTIONS]
    records = []
    for image, instruction in zip(images, INSTRUCTIONS):
        inputs = processor(PROMPT.format(instruction), Image.fromarray(image))
        for key in STATS:
            with torch.no_grad():
                actions = model.predict_action(**inputs, unnorm_key=key, do_sample=False)
                ids = torch.cat([inputs["input_ids"], torch.tensor([[29871]])], dim=1)  # what predict_action appends
                generated = model.generate(
                    ids,
                    pixel_values=inputs["pixel_values"],
                    max_new_tokens=7,
                    do_sample=False,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            tokens = generated.sequences[0, -7:]
            logits = torch.stack([s[0] for s in generated.scores])  # [7, vocab]
            records.append(
                {
                    "instruction": instruction,
                    "unnorm_key": key,
                    "actions": np.asarray(actions).tolist(),
                    "tokens": tokens.tolist(),
                    "prompt_ids": ids[0].tolist(),
                }
            )
            np.save(out / f"logits_{len(records) - 1}.npy", logits.float().numpy())
    np.save(out / "images.npy", np.stack(images))
    (out / "reference.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
