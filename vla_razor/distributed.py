"""Multi-process training under torchrun: the process group, FSDP2 sharding of the OpenVLA policy, and the
full-state gather / scatter that keeps a distributed run's training state the same file as a one-process run's.

    torchrun --nproc-per-node 8 -m vla_razor.cli robot sft --config configs/robot_embedded.yaml

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them the world is one process, and nothing here makes a
process group or shards anything, so the one-process path stays the plain one. Each rank holds 1 / world of
every parameter, gradient and AdamW moment (`torch.distributed.fsdp.fully_shard`, one unit per Llama decoder
layer and per ViT block); a checkpoint gathers them whole to rank 0 (`torch.distributed.checkpoint.state_dict`)
and writes `vla_razor.training_state`'s layout, which a run with any number of processes reads back. A
training loop's share of it: `check_distributed` before anything starts, `prepare_sharded` the policy,
`rank_share` of every batch, `clip_sharded_grad_norm`, `save_sharded_policy` at the end.
The torch.distributed submodules (FSDP2, DTensor, distributed checkpoints) are imported inside the
multi-process paths: a single-process run never loads them.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vla_razor.config import ConfigError
from vla_razor.runs import load_tensors, save_policy, save_tensors_atomic
from vla_razor.runtime import resolve_device
from vla_razor.training_state import read_training_state_meta, trainable_parameters

TIMEOUT = timedelta(minutes=60)
"""Collective timeout: long enough for rank 0 to write a 7B training state (~85 GB) while the others wait."""


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 outside torchrun), without a process group."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Distributed:
    """Where this process stands among torchrun's processes, and the few collectives training needs.

    `device` is where this rank computes: `cuda:LOCAL_RANK` on GPUs (NCCL), `cpu` otherwise (gloo). With
    world_size 1 every method is a no-op returning its input, and `device` is the one-process device string.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    _mesh: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls, device: str = "auto") -> Distributed:
        """Reads RANK / WORLD_SIZE / LOCAL_RANK; `device` is "auto" (CUDA if present), "cuda" or "cpu"."""
        rank, world, local = env_rank(), env_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device: expected 'auto', 'cuda' or 'cpu', got {device!r}")
        device = resolve_device(device)
        if world > 1 and device == "cuda":
            if local >= torch.cuda.device_count():
                raise ValueError(
                    f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible: "
                    "run torchrun with --nproc-per-node at most the GPU count"
                )
            device = f"cuda:{local}"
        return cls(rank=rank, world_size=world, local_rank=local, device=device)

    @property
    def enabled(self) -> bool:
        """True when training spans several processes (FSDP, collectives)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, checkpoints, the policy folder and prints."""
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def init(self) -> None:
        """Joins torchrun's process group (NCCL on CUDA, gloo on CPU) once per process; nothing for one process.

        The group then lives until the process exits (an atexit hook tears it down): a second group made in the
        same process after a destroy can read the first one's stale addresses from torchrun's store and hang,
        so stages run one after another in one process (tests/robot/torchrun_cli.py) share the first.
        """
        if not self.enabled or dist.is_initialized():
            return
        atexit.register(_destroy_process_group)
        if self.device_type == "cuda":
            # NVLink SHARP multicast off unless the user says otherwise: some hosts (the device machine among
            # them) hang or fail in NCCL's NVLS setup, and FSDP's all-gather / reduce-scatter barely use it.
            os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
            torch.cuda.set_device(self.local_rank)
            dist.init_process_group(
                "nccl", rank=self.rank, world_size=self.world_size, timeout=TIMEOUT, device_id=torch.device(self.device)
            )
        else:
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size, timeout=TIMEOUT)

    def teardown(self) -> None:
        """Leaves the process group now (it cannot be joined again by this process)."""
        if self.enabled:
            _destroy_process_group()
        self._mesh = None

    @property
    def mesh(self) -> Any:
        """The 1-D device mesh over every rank that FSDP shards across."""
        if self._mesh is None:
            from torch.distributed.device_mesh import init_device_mesh

            self._mesh = init_device_mesh(self.device_type, (self.world_size,))
        return self._mesh

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_mean(self, value: float | torch.Tensor) -> float:
        """The mean of a scalar over the ranks (logged metrics); the value itself for one process."""
        if not self.enabled:
            return float(value)
        t = torch.as_tensor(value, dtype=torch.float64, device=self.device if self.device_type == "cuda" else "cpu")
        t = t.detach().clone().reshape(())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / self.world_size

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (small picklable things: metadata, flags, errors)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def vision_transformers(model: nn.Module) -> list[nn.Module]:
    backbone = model.vision_backbone
    return [vit for vit in (backbone.featurizer, getattr(backbone, "fused_featurizer", None)) if vit is not None]


def shard_model(
    model: nn.Module,
    mesh: Any,
    *,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """Shards an OpenVLAModel in place with FSDP2: one unit per ViT block, per Llama decoder layer, the token
    embeddings, the language model's rest (final norm, head), and the root (ViT stems, projector).

    The policy's teacher-forced path calls `model.multimodal_inputs` and `model.language_model` rather than
    `model.forward`, so `multimodal_inputs` is registered as the root's forward method and the embeddings and
    the language model are units of their own: every parameter is gathered by the unit whose forward uses it.
    `param_dtype` / `reduce_dtype` make a MixedPrecisionPolicy (e.g. bfloat16 compute on float32 master
    weights, gradients reduced in float32); `reshard_after_forward` frees each unit's gathered weights after
    its forward (less memory, one more all-gather in backward). Returns `model`.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    lm = model.language_model
    if lm.config.tie_word_embeddings:
        raise ValueError("shard_model: tied input / output embeddings are not supported (OpenVLA's are untied)")
    options: dict[str, Any] = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype),
    }
    for vit in vision_transformers(model):
        for block in vit.blocks:
            fully_shard(block, reshard_after_forward=reshard_after_forward, **options)
    for layer in lm.model.layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(lm.model.embed_tokens, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(lm, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(model, **options)  # the root: kept gathered from forward to backward (FSDP's default for it)
    register_fsdp_forward_method(model, "multimodal_inputs")
    return model


def _full_options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every entry of the sharded model's state dict, whole and on the CPU, on rank 0 ({} elsewhere).
    Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True))


def save_sharded_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], ctx: Distributed
) -> None:
    """`save_training_state` for a sharded model: the same tensors under the same names (model.<name>,
    optim.<i>.<key>, rng.torch) and JSON meta, gathered to rank 0, which writes the file. Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    weights = full_model_state(model)
    moments = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if ctx.is_main:
        names = list(trainable_parameters(model))  # the optimizer's one group, in this order
        index = {name: i for i, name in enumerate(names)}
        tensors: dict[str, torch.Tensor] = {f"model.{name}": weights[name] for name in names}
        for name, values in moments["state"].items():
            for key, value in values.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{index[name]}.{key}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        save_tensors_atomic(path, tensors, metadata={"state": json.dumps(state)})
    ctx.barrier()


def _read_full_state(
    path: Path, names: list[str]
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Rank 0's read of a training-state file: its meta, weights by name and optimizer tensors by name."""
    tensors = load_tensors(path)
    meta = read_training_state_meta(path)
    missing = [n for n in names if f"model.{n}" not in tensors]
    if missing:
        raise ValueError(f"{path}: training state lacks parameters {missing[:5]} (a different model or config?)")
    weights = {n: tensors[f"model.{n}"] for n in names}
    moments: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            if int(i) >= len(names):
                raise ValueError(f"{path}: optimizer state for parameter {i}, the model has {len(names)}")
            moments.setdefault(names[int(i)], {})[name] = value
    if "rng.torch" not in tensors:
        raise ValueError(f"{path}: training state lacks rng.torch (not written by vla_razor.training_state?)")
    meta["_rng"] = tensors["rng.torch"]
    return meta, weights, moments


def load_sharded_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: Distributed
) -> dict[str, Any] | None:
    """Restores a training-state file written by any number of processes into the sharded `model` and
    `optimizer`: rank 0 reads it, each tensor is broadcast and every rank keeps its shard. Returns the saved
    meta (None when rank 0 finds no file). Collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    names = list(trainable_parameters(model))
    params = trainable_parameters(model)
    header: dict[str, Any] | None = None
    weights: dict[str, torch.Tensor] = {}
    moments: dict[str, dict[str, torch.Tensor]] = {}
    if ctx.is_main:
        try:
            if Path(path).is_file():
                meta, weights, moments = _read_full_state(path, names)
                bad = [
                    f"{n}: {tuple(weights[n].shape)} vs {tuple(params[n].shape)}"
                    for n in names
                    if weights[n].shape != params[n].shape
                ]
                if bad:
                    raise ValueError(f"{path}: parameter shapes differ from the model's ({'; '.join(bad[:3])})")
                header = {"meta": meta, "with_state": sorted(moments)}
        except ValueError as err:
            header = {"error": str(err)}
    header = ctx.broadcast_object(header)
    if header is None:
        return None
    if "error" in header:
        raise ValueError(header["error"])
    options = _full_options(broadcast_from_rank0=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    full = {"state": moments, "param_groups": [{**group, "params": names}]} if ctx.is_main else {}
    set_optimizer_state_dict(model, optimizer, full, options=options)
    # DCP first gives every parameter a zero AdamW state; a one-process run has none for parameters that never
    # had a gradient (e.g. the unused last ViT block), and neither should this run's later checkpoints.
    with_state = set(header["with_state"])
    for name, p in params.items():
        if name not in with_state:
            optimizer.state.pop(p, None)
    meta = dict(header["meta"])
    torch.set_rng_state(meta.pop("_rng"))
    return meta


def check_distributed(optim: Any, ctx: Distributed, has_hooks: bool = False) -> None:
    """What a multi-process run with `optim` (its `batch_size`) cannot do, said before anything is sharded (the
    stages call it before they write anything). ConfigError is a ValueError the CLI prints without a traceback."""
    if optim.batch_size % ctx.world_size:
        raise ConfigError(
            f"optim.batch_size ({optim.batch_size}) must be a multiple of the number of processes "
            f"({ctx.world_size}): each takes an equal share of every batch; use e.g. "
            f"{ctx.world_size * max(1, round(optim.batch_size / ctx.world_size))}"
        )
    if getattr(optim, "master_weights", "none") != "none":
        raise ConfigError(
            "optim.master_weights: float32 master weights under torchrun come from FSDP's mixed precision: "
            "leave optim.master_weights at 'none' and set fsdp.mixed_precision: bf16"
        )
    if has_hooks:
        raise ConfigError(
            "mid-training evaluations and live KL checks (eval.during_training_every, eval.kl_every, "
            "kl_budget) need the whole policy on one process: run them with one process"
        )


def prepare_sharded(policy: Any, ctx: Distributed, fsdp: Any) -> None:
    """Shards `policy.model` across the ranks with `fsdp`'s options (vla_razor.robot.config.FSDPConfig); mixed
    precision bf16 first makes float32 master weights."""
    param_dtype = reduce_dtype = None
    if fsdp.mixed_precision == "bf16":
        policy.model.float()
        param_dtype, reduce_dtype = torch.bfloat16, torch.float32
    elif fsdp.mixed_precision != "none":
        raise ValueError(f"fsdp.mixed_precision: expected 'none' or 'bf16', got {fsdp.mixed_precision!r}")
    shard_model(
        policy.model,
        ctx.mesh,
        param_dtype=param_dtype,
        reduce_dtype=reduce_dtype,
        reshard_after_forward=fsdp.reshard_after_forward,
    )


def rank_share(rows: np.ndarray, ctx: Distributed) -> tuple[np.ndarray, float]:
    """This rank's contiguous share of a batch's rows and the factor on its mean loss that makes FSDP's
    gradient average (sum over ranks / world) equal to the gradient of the whole batch's mean loss.

    Shares differ by at most one row (an epoch's last, shorter batch); a rank left without rows computes on
    the batch's first row with factor 0, so that every rank still takes part in the collectives.
    """
    if not ctx.enabled:
        return rows, 1.0
    share = np.array_split(rows, ctx.world_size)[ctx.rank]
    if len(share) == 0:
        return rows[:1], 0.0
    return share, len(share) * ctx.world_size / len(rows)


def clip_sharded_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ over DTensor gradient shards: the global norm (gathered with full_tensor) scales all."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def save_sharded_policy(policy: Any, directory: Path, ctx: Distributed) -> None:
    """The sharded policy's weights gathered whole to rank 0 and saved as `save_policy` does, in the policy
    config's dtype (bf16 mixed precision trains float32 master weights; `policy.with_weights`). Collective."""
    full = full_model_state(policy.model)
    if ctx.is_main:
        save_policy(policy.with_weights(full), directory)
    ctx.barrier()
