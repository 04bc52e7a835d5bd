"""The OpenVLA policy as the trainers see it: for a batch of (image, instruction) contexts, the logits of
given action tokens (teacher forcing) over the 256 bins, and sampled actions.

    policy = OpenVLAPolicy.from_config(OpenVLAConfig.tiny())          # random tiny model
    policy = OpenVLAPolicy.from_pretrained("/data/openvla-7b")         # a local copy of the checkpoint
    batch = policy.encode(images, instructions)
    sample = policy.sample(batch, temperature=1.0)                     # actions, tokens, log-probs, logits
    logits = policy.action_logits(batch, sample.tokens)                # [B, 7, 256], with gradients
    logp = policy.token_logprobs(batch, sample.tokens)                 # [B, 7]

The restricted vocabulary (``vocab_ids``, 256 ids in bin order) is what vla_razor.core's objectives and
divergences take as ``vocab_ids``; logits returned here are already restricted, so pass them without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vla_razor import core
from vla_razor.config import load_config as load_yaml_config
from vla_razor.lora import LoraOptions, apply_lora, has_lora, merge_lora
from vla_razor.policies.base import ActionSample
from vla_razor.policies.openvla.action_tokenizer import ActionStats, ActionTokenizer, action_stats
from vla_razor.policies.openvla.configuration_openvla import OpenVLAConfig
from vla_razor.policies.openvla.generation import ActionTokens, Engine, generate_action_tokens, sample_parallel_tokens
from vla_razor.policies.openvla.loading import from_pretrained, load_config, save_pretrained
from vla_razor.policies.openvla.modeling_openvla import DTYPES, OpenVLAModel, build_model
from vla_razor.policies.openvla.parallel import is_sharded, query_logits
from vla_razor.policies.openvla.processor_openvla import OpenVLAProcessor


class OpenVLAPolicy:
    """OpenVLA as a vla_razor.policies.base.TokenPolicy (registered as policy.type "openvla")."""

    def __init__(self, model: OpenVLAModel, processor: OpenVLAProcessor, dataset: str | None = None) -> None:
        self.model = model
        self.config: OpenVLAConfig = model.config
        self.processor = processor
        self.tokenizer = ActionTokenizer(self.config.vocab_end, self.config.n_action_bins)
        self.dataset = dataset if dataset is not None else self.config.default_dataset
        self.stats: ActionStats = action_stats(self.config.norm_stats, self.dataset)
        self.action_dim = self.stats.action_dim

    @classmethod
    def from_config(cls, config: OpenVLAConfig, device: str = "cpu", seed: int | None = 0, **kw: Any) -> OpenVLAPolicy:
        if seed is not None:
            torch.manual_seed(seed)
        model = build_model(config, device=device)
        return cls(model, OpenVLAProcessor.from_config(config), **kw)

    @classmethod
    def from_config_file(cls, path: Path | str, device: str = "cpu", seed: int | None = 0, **kw: Any) -> OpenVLAPolicy:
        """A fresh model from an OpenVLAConfig YAML (configs/policy_tiny.yaml)."""
        return cls.from_config(load_yaml_config(OpenVLAConfig, path), device=device, seed=seed, **kw)

    @classmethod
    def from_pretrained(
        cls, directory: Path | str, device: str = "cpu", dtype: str | None = None, **kw: Any
    ) -> OpenVLAPolicy:
        # the tokenizer first: a folder without one fails in a second, not after loading 15 GB of weights
        processor = OpenVLAProcessor.from_config(load_config(Path(directory)), directory)
        model = from_pretrained(directory, device=device, dtype=dtype)
        processor.config = model.config
        return cls(model, processor, **kw)

    def set_action_statistics(self, norm_stats: dict[str, Any], dataset: str) -> None:
        """Makes `norm_stats[dataset]` the action statistics (kept in config.json's norm_stats, the default key)."""
        self.config.norm_stats = {**(self.config.norm_stats or {}), **norm_stats}
        self.config.default_dataset = dataset
        self.dataset = dataset
        self.stats = action_stats(self.config.norm_stats, dataset)
        self.action_dim = self.stats.action_dim

    def add_adapters(self, options: LoraOptions) -> None:
        """LoRA adapters on the model (OpenVLA's recipe by default); only they train."""
        self.model = apply_lora(self.model, options)

    def merge_adapters(self) -> None:
        """Folds LoRA adapters, if any, into the weights (in place): the model saves in the plain openvla layout."""
        if has_lora(self.model):
            self.model = merge_lora(self.model)

    def save_pretrained(self, directory: Path | str, max_shard_bytes: int = 5_000_000_000) -> list[Path]:
        """config.json, the weights and the tokenizer's files: a folder `from_pretrained` loads on its own."""
        shards = save_pretrained(self.model, directory, max_shard_bytes)
        self.processor.save(directory)
        return shards

    def with_weights(self, state: dict[str, Tensor]) -> OpenVLAPolicy:
        """A plain model built from this config carrying `state` in the config's dtype (FSDP's bf16 mixed precision
        trains float32 master weights), with this processor and dataset: for save_pretrained (built on the meta
        device, so no 7B random init; the rotary buffers stay unmade, so it does not run)."""
        dtype = DTYPES[self.config.dtype]
        plain = build_model(self.config, device="meta")
        plain.load_state_dict(
            {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True, assign=True
        )
        return OpenVLAPolicy(plain, self.processor, dataset=self.dataset)

    @property
    def device(self) -> torch.device:
        return self.model.projector.fc1.weight.device

    @property
    def vocab_ids(self) -> Tensor:
        """[n_bins] action token ids in bin order (column k of every restricted logit tensor)."""
        return self.tokenizer.token_ids.to(self.device)

    @property
    def gripper(self) -> str:
        """The config's gripper convention (absolute or relative)."""
        return self.config.gripper

    def bin_index(self, tokens: Tensor) -> Tensor:
        """Action token ids -> bin indices (columns of the restricted logits), on the tokens' device."""
        return self.tokenizer.bin_index(tokens)

    def encode(self, images: list[Any], instructions: list[str]) -> dict[str, Tensor]:
        """Model inputs for a batch of contexts, on the model's device."""
        return {k: v.to(self.device) for k, v in self.processor(images, instructions).items()}

    @property
    def parallel(self) -> bool:
        """Whether the D action tokens come from one forward pass (config.action_decoding == "parallel")."""
        return self.config.action_decoding == "parallel"

    def action_query_ids(self, dim: int) -> Tensor:
        """The D token ids a parallel-decoding policy appends after the prompt, one per action dimension: the pad
        rows after the pad id (never text, never padding, each with its own trained embedding row, as OpenVLA-OFT's
        learned action queries; no parameter outside OpenVLA's layout)."""
        first = self.config.pad_token_id + 1
        if first + dim > int(self.config.text_config["vocab_size"]):
            raise ValueError(
                f"parallel decoding needs {dim} embedding rows after pad_token_id {self.config.pad_token_id}; "
                f"text_config.vocab_size is {self.config.text_config['vocab_size']}"
            )
        return torch.arange(first, first + dim, device=self.device)

    def action_logits(self, batch: dict[str, Tensor], action_tokens: Tensor) -> Tensor:
        """Teacher-forced logits [B, D, n_bins] of the D given action tokens (gradients flow). A parallel-decoding
        policy's logits do not depend on the tokens (each dimension is independent given the context), only on
        their number."""
        action_tokens = action_tokens.to(self.device)
        dim = action_tokens.shape[1]
        if self.parallel:
            return self._parallel_logits(batch, dim)
        input_ids = torch.cat([batch["input_ids"], action_tokens], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(action_tokens)], dim=1)
        embeds, full_mask, positions = self.model.multimodal_inputs(input_ids, mask, batch["pixel_values"])
        out = self.model.language_model(
            inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, logits_to_keep=dim + 1
        )
        # position t predicts token t + 1: the last prompt position predicts action token 0, ...
        return core.restrict_logits(out.logits[:, :dim].float(), self.vocab_ids)

    def _parallel_logits(self, batch: dict[str, Tensor], dim: int) -> Tensor:
        """[B, D, n_bins]: the prompt followed by the D query ids, one forward pass (parallel.py), the logits at the
        queries (query d's logits are dimension d's). The queries attend causally, so query d sees queries < d,
        which carry nothing about the action: the dimensions stay independent given the context."""
        rows = batch["input_ids"].shape[0]
        queries = self.action_query_ids(dim).expand(rows, dim)
        input_ids = torch.cat([batch["input_ids"], queries], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones_like(queries)], dim=1)
        embeds, full_mask, positions = self.model.multimodal_inputs(input_ids, mask, batch["pixel_values"])
        lm = self.model.language_model
        if is_sharded(lm):  # FSDP gathers a layer's weights in the layer's own forward, which query_logits skips
            out = lm(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, logits_to_keep=dim)
            return core.restrict_logits(out.logits.float(), self.vocab_ids)
        logits = query_logits(lm, embeds, full_mask, positions, dim)
        return core.restrict_logits(logits.float(), self.vocab_ids)

    def token_logprobs(self, batch: dict[str, Tensor], action_tokens: Tensor) -> Tensor:
        """log pi(action token d | context, tokens < d), [B, D], over the bins."""
        logits = self.action_logits(batch, action_tokens)
        return core.token_logprobs(logits, self.tokenizer.bin_index(action_tokens.cpu()).to(logits.device))

    def sample(
        self,
        batch: dict[str, Tensor],
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        uniform_noise: Tensor | None = None,
        engine: Engine = "auto",
        fused_projections: bool = True,
    ) -> ActionSample:
        """Generates D action tokens per row (temperature 0: greedy) and decodes them to actions; sampling uses
        `generator`, or each row's own `uniform_noise` [B, D, n_bins]. `engine`: see generation.py (auto: CUDA
        graphs on a GPU, the static-cache decoder elsewhere); `fused_projections`: q / k / v and gate / up as single
        products there. A parallel-decoding policy makes one forward pass (engine and fusion do not apply)."""
        if self.parallel:
            with torch.no_grad():
                logits = self._parallel_logits(batch, self.action_dim)
            gen = sample_parallel_tokens(logits, self.vocab_ids, temperature, generator, uniform_noise)
            return self._action_sample(gen)
        gen = generate_action_tokens(
            self.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["pixel_values"],
            self.vocab_ids,
            self.action_dim,
            temperature,
            generator,
            uniform_noise,
            engine,
            fused_projections,
        )
        return self._action_sample(gen)

    def _action_sample(self, gen: ActionTokens) -> ActionSample:
        normalized = self.tokenizer.decode(gen.tokens.cpu())
        return ActionSample(
            actions=self.stats.unnormalize(normalized),
            normalized=normalized,
            tokens=gen.tokens,
            logprobs=gen.logprobs,
            logits=gen.logits,
        )

    def encode_actions(self, actions: np.ndarray) -> Tensor:
        """Raw actions [B, D] (e.g. demonstrations) -> target token ids [B, D] for SFT."""
        return self.tokenizer.encode_actions(actions, self.stats).to(self.device)
