"""Reading and writing a model folder in the layout of the released ``openvla/openvla-7b``.

A folder holds ``config.json`` (OpenVLA's fields: timm ids, image sizes, text_config, norm_stats,
n_action_bins, ...), the weights as safetensors shards ``model-0000k-of-0000n.safetensors`` and
``model.safetensors.index.json`` (``{"metadata": {"total_size"}, "weight_map": {key: shard}}``); a single
``model.safetensors`` without an index is read too. Only safetensors are read: pickled weights
(``*.bin``, ``*.pt``) can run code when loaded, so they are refused with a message saying how to convert.

Every mismatch is an error naming the file and the keys: a shard the index lists that is missing, keys the
model expects that no file holds (or the reverse), a tensor of the wrong shape or dtype. Weights are
loaded into a model built on the meta device (no double allocation of a 7B model), then assigned.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from vla_razor.policies.openvla.configuration_openvla import OpenVLAConfig
from vla_razor.policies.openvla.modeling_openvla import DTYPES, OpenVLAModel, build_model
from vla_razor.runs import atomic_write_json, save_tensors_atomic

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}


class CheckpointError(ValueError):
    """A model folder that does not match the model its config.json describes."""


def _listing(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_config(directory: Path) -> OpenVLAConfig:
    """The OpenVLAConfig of a model folder (config.json; preprocessor_config.json's means/stds if present)."""
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not an OpenVLA model folder")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg})") from None
    config = OpenVLAConfig.from_hf_dict(values, str(path))
    pre = directory / "preprocessor_config.json"
    if pre.is_file() and "vla_razor" not in values:
        extra = json.loads(pre.read_text())
        if "means" in extra and "stds" in extra:
            config.image_means = [list(m) for m in extra["means"]]
            config.image_stds = [list(s) for s in extra["stds"]]
    return config


def weight_map(directory: Path) -> dict[str, str]:
    """{key: shard file name} from the index, or from the single model.safetensors."""
    directory = Path(directory)
    index = directory / INDEX
    if index.is_file():
        try:
            values = json.loads(index.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{index}: not valid JSON ({err.msg})") from None
        if not isinstance(values.get("weight_map"), dict):
            raise CheckpointError(f"{index}: has no 'weight_map' object")
        return dict(values["weight_map"])
    single = directory / SINGLE
    if single.is_file():
        with safe_open(str(single), framework="pt") as f:
            return {key: SINGLE for key in f.keys()}
    pickled = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled:
        raise CheckpointError(
            f"{directory}: weights are only in pickle files ({', '.join(pickled)}); only safetensors are loaded. "
            "Convert once where you trust the file, e.g. with transformers' save_pretrained(safe_serialization=True)."
        )
    raise CheckpointError(f"{directory}: neither {INDEX} nor {SINGLE} found")


def load_state_dict(
    directory: Path, expected: dict[str, torch.Tensor], dtype: torch.dtype | None, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Reads every tensor of the folder, checking keys, shapes, finiteness and (when ``dtype`` is given) dtypes."""
    directory = Path(directory)
    mapping = weight_map(directory)
    source = directory / (INDEX if (directory / INDEX).is_file() else SINGLE)
    missing = sorted(set(expected) - set(mapping))
    unexpected = sorted(set(mapping) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys the model needs are not in the checkpoint: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} checkpoint keys the model does not have: {_listing(unexpected)}")
        raise CheckpointError(f"{source}: key mismatch with config.json's model. " + "; ".join(parts))
    by_shard: dict[str, list[str]] = defaultdict(list)
    for key, shard in mapping.items():
        by_shard[shard].append(key)
    absent = sorted(shard for shard in by_shard if not (directory / shard).is_file())
    if absent:
        keys = [k for shard in absent for k in by_shard[shard]]
        raise CheckpointError(
            f"{directory}: shard file(s) {', '.join(absent)} listed in {INDEX} are missing "
            f"({len(keys)} tensors, e.g. {_listing(keys, 4)})"
        )
    state: dict[str, torch.Tensor] = {}
    for shard, keys in sorted(by_shard.items()):
        path = directory / shard
        try:
            handle = safe_open(str(path), framework="pt", device=str(device))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own types for foreign files
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
        with handle as f:
            present = set(f.keys())
            lost = [k for k in keys if k not in present]
            if lost:
                raise CheckpointError(f"{path}: {INDEX} places {len(lost)} keys here that it lacks: {_listing(lost)}")
            for key in keys:
                piece = f.get_slice(key)
                found = SAFETENSORS_DTYPES.get(piece.get_dtype())
                shape = tuple(piece.get_shape())
                want = tuple(expected[key].shape)
                if shape != want:
                    raise CheckpointError(
                        f"{path}: tensor {key} has shape {list(shape)}, the model expects {list(want)}"
                    )
                if dtype is not None and found != dtype:
                    raise CheckpointError(
                        f"{path}: tensor {key} is {piece.get_dtype()}, config.json says "
                        f"{DTYPE_NAMES.get(dtype, dtype)} (torch_dtype); fix the config or pass dtype= to convert"
                    )
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise CheckpointError(
                        f"{path}: tensor {key} holds NaN or infinite values (a diverged or damaged "
                        "checkpoint); load another one"
                    )
                state[key] = tensor
    return state


def _restore_buffers(model: OpenVLAModel, device: torch.device) -> None:
    """Non-persistent buffers are not in the checkpoint: rebuild them (Llama's rotary frequencies)."""
    lm = model.language_model.model
    rotary_cls = type(lm.rotary_emb)
    with torch.device(device):  # the constructor's signature varies across transformers versions
        lm.rotary_emb = rotary_cls(config=model.language_model.config)
    stale = [name for name, buf in model.named_buffers() if buf.is_meta]
    if stale:
        raise CheckpointError(f"buffers not restored after loading: {_listing(stale)}")


def from_pretrained(
    directory: Path | str,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    config: OpenVLAConfig | None = None,
) -> OpenVLAModel:
    """Loads a model folder in the openvla-7b layout.

    ``dtype`` None checks every tensor against config.json's torch_dtype; a dtype converts after loading.
    """
    directory = Path(directory)
    config = config if config is not None else load_config(directory)
    target = DTYPES[dtype] if isinstance(dtype, str) else dtype
    model = build_model(config, device="meta")
    expected = model.state_dict()
    state = load_state_dict(directory, expected, None if target is not None else DTYPES[config.dtype], device)
    if target is not None:
        state = {k: v.to(target) for k, v in state.items()}
        config.dtype = {v: k for k, v in DTYPES.items()}[target]
    model.load_state_dict(state, strict=True, assign=True)
    _restore_buffers(model, torch.device(device))
    model.eval()
    return model


def save_pretrained(model: OpenVLAModel, directory: Path | str, max_shard_bytes: int = 5_000_000_000) -> list[Path]:
    """Writes config.json, safetensors shards of at most ``max_shard_bytes`` and the index; returns the shards.

    Shards are filled in state-dict order, as transformers does; every file is written atomically, the
    index last.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    n = len(shards)
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    atomic_write_json(directory / CONFIG, model.config.to_hf_dict())
    paths = []
    for name, tensors in zip(names, shards):
        save_tensors_atomic(directory / name, tensors, metadata={"format": "pt"})
        paths.append(directory / name)
    index: dict[str, Any] = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
        "weight_map": {key: name for name, tensors in zip(names, shards) for key in tensors},
    }
    atomic_write_json(directory / INDEX, index)
    return paths
