"""The shipped prompt set and the token ids built from it.

Quality numbers are only comparable when every model saw the same prompts, so the set is package data
(``prompts.json``) rather than a parameter. Models without a tokenizer (random-weight test models) get
seeded random token ids instead, the same ones for base and smashed.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch


def load_prompts() -> list[str]:
    data = json.loads(resources.files("smash.evaluation").joinpath("prompts.json").read_text("utf-8"))
    prompts = data["prompts"]
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise RuntimeError("smash/evaluation/prompts.json is damaged: 'prompts' must be a list of strings")
    return prompts


def encode_prompt(tokenizer: Any, text: str, *, chat: bool) -> list[int]:
    """Token ids of one prompt, through the chat template when asked and available."""
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(text)["input_ids"]]


def quality_prompt_ids(
    tokenizer: Any, vocab_size: int, *, count: int | None, chat: bool, seed: int
) -> list[list[int]]:
    """One id list per prompt of the shipped set (the first ``count`` of them)."""
    prompts = load_prompts()[:count] if count is not None else load_prompts()
    if tokenizer is not None:
        return [encode_prompt(tokenizer, p, chat=chat) for p in prompts]
    generator = torch.Generator().manual_seed(seed)
    lengths = [8 + (len(p) % 24) for p in prompts]  # varied lengths, fixed by the prompt set
    return [torch.randint(0, vocab_size, (n,), generator=generator).tolist() for n in lengths]


def efficiency_input_ids(
    tokenizer: Any, vocab_size: int, *, length: int, batch_size: int, seed: int
) -> torch.Tensor:
    """(batch, length) ids: the prompt set's text cut to length (row i starts at prompt i), or random ids."""
    if tokenizer is None:
        generator = torch.Generator().manual_seed(seed + length)
        return torch.randint(0, vocab_size, (batch_size, length), generator=generator)
    prompts = load_prompts()
    rows = []
    for row in range(batch_size):
        ids: list[int] = []
        i = row
        while len(ids) < length:
            ids.extend(int(t) for t in tokenizer(prompts[i % len(prompts)] + "\n")["input_ids"])
            i += 1
        rows.append(ids[:length])
    return torch.tensor(rows, dtype=torch.long)
