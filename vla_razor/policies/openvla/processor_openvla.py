"""Inputs of the OpenVLA policy: images -> per-ViT normalized pixels, instructions -> left-padded prompt ids.

Images: each ViT gets its own copy, resized to its square size (``resize-naive``: no crop, no letterbox)
with bicubic interpolation and normalized with its own mean/std (DINOv2: ImageNet statistics; SigLIP: 0.5),
stacked on channels -> ``pixel_values [B, 3 * n_vits, S, S]``. PIL images are resized by PIL (bit-identical
to OpenVLA's processor); arrays and tensors (H x W x 3 uint8, or float in [0, 1]) by torch's antialiased
bicubic, which differs from PIL by rounding only.

Prompt: ``config.prompt_template``, OpenVLA's ``"In: What action should the robot take to {instruction}?\\nOut:"``
unless a policy was trained with another (a small CPU base: the bare instruction), tokenized with BOS, followed
by ``action_prefix_token_ids`` (OpenVLA's Llama tokenizer: the empty "▁" token 29871, which its training
prompts end with). Batches are left-padded with ``pad_token_id`` so that every row's next token is its
first action token.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vla_razor.policies.openvla.configuration_openvla import OPENVLA_PROMPT, OpenVLAConfig
from vla_razor.hf_imports import import_transformers

PROMPT = OPENVLA_PROMPT


def build_prompt(instruction: str, template: str = PROMPT) -> str:
    """The prompt for one instruction (OpenVLA's by default), used verbatim (callers lowercase it if their data
    did)."""
    return template.format(instruction=instruction)


class ByteTokenizer:
    """UTF-8 bytes as tokens: 0 <unk>, 1 <s> (BOS), 2 </s>, byte b -> 3 + b. For tiny models, no files."""

    bos_token_id, eos_token_id, offset = 1, 2, 3

    def encode(self, text: str) -> list[int]:
        return [self.bos_token_id] + [self.offset + b for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i - self.offset for i in ids if self.offset <= i < self.offset + 256).decode("utf-8", "replace")

    def save(self, directory: Path | str) -> None:
        """Nothing to write: the byte tokenizer has no files."""


TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
"""What a Hugging Face tokenizer folder may hold (the released openvla-7b ships all five)."""


class PretrainedTokenizer:
    """A transformers tokenizer from a local folder (the checkpoint's Llama tokenizer), BOS added."""

    def __init__(self, directory: Path | str) -> None:
        transformers = import_transformers()
        folder = self.directory = Path(directory)
        if (folder / "tokenizer.model").is_file() and not (folder / "tokenizer.json").is_file():
            if importlib.util.find_spec("sentencepiece") is None:
                raise FileNotFoundError(
                    f"{folder}: its tokenizer is tokenizer.model (SentencePiece), which needs the "
                    "sentencepiece package: pip install sentencepiece"
                )
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(directory), local_files_only=True, trust_remote_code=False
            )
        except Exception as err:  # noqa: BLE001 - transformers raises many kinds for a missing tokenizer
            raise FileNotFoundError(
                f"{directory}: no tokenizer could be loaded ({err}); the openvla-7b folder ships tokenizer.model"
                " and tokenizer_config.json, or use tokenizer: bytes for tiny models"
            ) from None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def save(self, directory: Path | str) -> None:
        """The tokenizer's files, copied as they are from the folder it was loaded from, into `directory`: a saved
        policy folder loads on its own, and OpenVLA's code (transformers 4.40) reads them as it read the originals
        (a re-save by another transformers version renames the tokenizer class)."""
        for name in TOKENIZER_FILES:
            if (self.directory / name).is_file() and self.directory.resolve() != Path(directory).resolve():
                shutil.copyfile(self.directory / name, Path(directory) / name)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))


def _to_float_chw(image: Any) -> Tensor:
    """An H x W x 3 (or 3 x H x W) uint8 / [0, 1] float image -> float32 [3, H, W] in [0, 1]."""
    tensor = torch.as_tensor(np.asarray(image)) if not isinstance(image, Tensor) else image
    if tensor.dim() != 3:
        raise ValueError(f"expected an image of 3 dims (H, W, 3) or (3, H, W), got shape {tuple(tensor.shape)}")
    if tensor.shape[-1] == 3 and tensor.shape[0] != 3:
        tensor = tensor.permute(2, 0, 1)
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    return tensor.float()


class ImageProcessor:
    """Per-ViT resize and normalization (see the module docstring)."""

    def __init__(self, config: OpenVLAConfig) -> None:
        if config.image_resize_strategy != "resize-naive":
            raise ValueError(
                f"image_resize_strategy {config.image_resize_strategy!r} is not supported (OpenVLA uses resize-naive)"
            )
        n = config.num_backbones
        self.sizes = list(config.image_sizes[:n])
        self.means = [torch.tensor(m, dtype=torch.float32).view(3, 1, 1) for m in config.image_means[:n]]
        self.stds = [torch.tensor(s, dtype=torch.float32).view(3, 1, 1) for s in config.image_stds[:n]]

    def _resized(self, image: Any, size: int) -> Tensor:
        if type(image).__module__.startswith("PIL."):
            from PIL import Image  # optional (the sim extra): only PIL images need it

            resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            return _to_float_chw(np.asarray(resized))
        chw = _to_float_chw(image)
        if tuple(chw.shape[-2:]) == (size, size):
            return chw
        return F.interpolate(chw[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]

    def __call__(self, images: Sequence[Any]) -> Tensor:
        out = []
        for image in images:
            parts = [
                (self._resized(image, size) - mean) / std for size, mean, std in zip(self.sizes, self.means, self.stds)
            ]
            out.append(torch.cat(parts, dim=0))
        return torch.stack(out)


class OpenVLAProcessor:
    """(images, instructions) -> {"input_ids", "attention_mask", "pixel_values"} for the model."""

    def __init__(self, config: OpenVLAConfig, tokenizer: Any) -> None:
        self.config = config
        self.images = ImageProcessor(config)
        self.tokenizer = tokenizer
        self.pad_token_id = config.pad_token_id

    @classmethod
    def from_config(cls, config: OpenVLAConfig, directory: Path | str | None = None) -> OpenVLAProcessor:
        if config.tokenizer == "bytes":
            return cls(config, ByteTokenizer())
        if directory is None:
            raise ValueError("tokenizer: pretrained needs the model folder that holds the tokenizer files")
        return cls(config, PretrainedTokenizer(directory))

    def save(self, directory: Path | str) -> None:
        """What the processor needs besides config.json (the tokenizer's files) into a policy folder."""
        self.tokenizer.save(directory)

    def prompt_ids(self, instruction: str) -> list[int]:
        prompt = build_prompt(instruction, self.config.prompt_template)
        return self.tokenizer.encode(prompt) + list(self.config.action_prefix_token_ids)

    def tokenize(self, instructions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Left-padded ids [B, T] and attention mask [B, T] (1 on real tokens)."""
        rows = [self.prompt_ids(text) for text in instructions]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = 1
        return ids, mask

    def __call__(self, images: Sequence[Any], instructions: Sequence[str]) -> dict[str, Tensor]:
        if len(images) != len(instructions):
            raise ValueError(f"got {len(images)} images and {len(instructions)} instructions; need one of each per row")
        input_ids, attention_mask = self.tokenize(instructions)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": self.images(images)}
