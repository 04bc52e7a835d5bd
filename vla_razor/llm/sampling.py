"""Prompts in, completions out: chat formatting, batched generation, and teacher-forcing batches.

A completion's token ids end with its stop token when the model stopped (so SFT and RL both train the stop),
and are cut at `max_new_tokens` otherwise. The stop tokens are the tokenizer's end-of-sequence token, the model's
own (generation_config.eos_token_id: Qwen2.5-Instruct ends on <|im_end|> or <|endoftext|>) and any configured
`sampling.stop_token_ids`. Generation is batched (left padding) through one of two engines of the same contract:
ours (vla_razor/llm/engine.py: a static K/V cache, CUDA graphs on a GPU) or transformers' `generate`.
(vLLM is not wired in: it cannot be installed or tested on the machines this project is built on; an engine
with the same contract is the place to add it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from vla_razor.config import ConfigError
from vla_razor.llm.engine import ENGINES, Engine, static_generate


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids the model sees for a user message: its chat template, or the text and a newline."""
    if getattr(tokenizer, "chat_template", None):
        formatted = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    else:
        formatted = text + "\n"
    return tokenizer(formatted, add_special_tokens=False).input_ids


def target_ids(tokenizer: Any, text: str) -> list[int]:
    """A reply's token ids, ended by the end-of-sequence token (the SFT / SimPO targets)."""
    return tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def stop_token_ids(model: Any, tokenizer: Any, extra: Sequence[int] = ()) -> list[int]:
    """The ids that end a completion: the tokenizer's eos, the model's generation_config eos id(s), and `extra`."""
    ids = {tokenizer.eos_token_id, *extra}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(int(i) for i in ids if i is not None)


def _trim(ids: list[int], stop_ids: Sequence[int], pad_id: int | None) -> list[int]:
    """Cut after the first stop token; drop trailing padding of a cut-off completion."""
    for k, token in enumerate(ids):
        if token in stop_ids:
            return ids[: k + 1]
    while ids and pad_id is not None and ids[-1] == pad_id and pad_id not in stop_ids:
        ids = ids[:-1]
    return ids


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    batch_size: int = 64,
    progress: str | None = None,
    engine: Engine = "static",
    extra_stop_ids: Sequence[int] = (),
) -> list[list[int]]:
    """One completion per prompt (repeat a prompt to get a group), sampled from the full distribution
    (no top-k / top-p: on-policy samples), or greedy; `engine` as `sampling.engine`."""
    if engine not in ENGINES:
        raise ConfigError(f"sampling.engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    stops = stop_token_ids(model, tokenizer, extra_stop_ids)
    completions: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=progress, unit="seq", leave=False) if progress else None
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        if engine == "static":
            made = static_generate(model, ids, mask, max_new_tokens, stops, pad_id, temperature, greedy).completions()
        else:
            kwargs: dict[str, Any] = (
                {"do_sample": False}
                if greedy
                else {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            )
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=stops,
                **kwargs,
            )
            made = [_trim(row, stops, pad_id) for row in out[:, width:].tolist()]
        for row, i in enumerate(chunk):
            completions[i] = made[row]
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    model.train(was_training)
    return completions


@dataclass
class TeacherForcing:
    """Prompt + completion sequences, right-padded, for scoring the completions' tokens.

    `logits(model)[:, t]` predicts `targets[:, t]`; `target_mask` marks the completion tokens (the prompt
    and padding are not scored).
    """

    input_ids: Tensor
    attention_mask: Tensor
    targets: Tensor
    target_mask: Tensor

    @classmethod
    def pack(
        cls, prompts: list[list[int]], completions: list[list[int]], pad_id: int, device: torch.device | str = "cpu"
    ) -> TeacherForcing:
        width = max(len(p) + len(c) for p, c in zip(prompts, completions))
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        scored = torch.zeros((len(prompts), width), dtype=torch.bool)
        for row, (p, c) in enumerate(zip(prompts, completions)):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            attention[row, : len(p) + len(c)] = 1
            scored[row, len(p) : len(p) + len(c)] = True
        return cls(ids.to(device), attention.to(device), ids[:, 1:].to(device), scored[:, 1:].to(device))

    def logits(self, model: Any) -> Tensor:
        out = model(input_ids=self.input_ids, attention_mask=self.attention_mask, use_cache=False)
        return out.logits[:, :-1].float()

    def hidden_states(self, model: Any) -> Tensor:
        """The decoder's last hidden states [B, T-1, H] aligned with `targets` (for chunked logits)."""
        out = model.get_decoder()(input_ids=self.input_ids, attention_mask=self.attention_mask, use_cache=False)
        return out.last_hidden_state[:, :-1]
