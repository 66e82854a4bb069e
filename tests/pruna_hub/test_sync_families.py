"""The sync end to end for the decoder families of the Hub: tiny random-weight models of each family,
published to the local store, discovered, smashed, gated on greedy generations, published and verified.

The recipes here are the built-in CPU ones made light for a test (no inductor compile, a short
evaluation): the family matching, the runtime and the generation gate are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from family_models import family_config
from huggingface_hub import HfApi
from sync_support import ACME, card, local_store, open_context, tiny_tokenizer

from pruna_hub.sync.context import SyncContext
from pruna_hub.sync.service import sync_once

DECODERS = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma2",
    "gemma3_text",
    "phi3",
    "smollm3",
    "granite",
    "olmo2",
]
RECIPE = """
description = "test: {what}"
version = 1
priority = 1000
device = "cpu"

[match]
model_types = {model_types}
moe = false

{smash}

[smash.static_cache]
max_cache_len = 96
prefill_chunk = 8

[evaluation]
prompt_lengths = [8]
generation_lengths = [4, 8]
warmup_runs = 0
measured_runs = 1
quality_prompts = 3
quality_new_tokens = 16
use_chat_template = false

[quality_gate]
{gate}

[budget]
max_parameters = 100_000_000

[publish]
repo_template = "{{target_org}}/{{name}}-{suffix}"
"""


def write_recipes(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    recipes = {
        "decoders-int8": (DECODERS, "[smash.int8_weight]", "min_top1_agreement = 0.8", "int8"),
        # GPT-2's Conv1D layers are not quantized: the runtime alone, which is lossless
        "gpt2-runtime": (["gpt2"], "", "min_generation_agreement = 1.0", "runtime"),
    }
    for name, (types, smash, gate, suffix) in recipes.items():
        text = RECIPE.format(what=name, model_types=json.dumps(types), smash=smash, gate=gate, suffix=suffix)
        (directory / f"{name}.toml").write_text(text)
    return directory


def tiny_qwen3_moe_config() -> Any:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )  # fmt: skip


def publish_family(api: HfApi, family: str, folder: Path) -> str:
    """A tiny ``family`` model (the test tokenizer's 320 ids) as ``acme/tiny-<family>``."""
    import torch
    from transformers import AutoModelForCausalLM

    config = family_config(family) if family != "qwen3_moe" else tiny_qwen3_moe_config()
    config.vocab_size = 320
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    (folder / "README.md").write_text(card())
    repo_id = f"acme/tiny-{family.replace('_', '-')}"
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="base")
    return repo_id


@pytest.fixture
def ctx(tmp_path: Path, namespace: str) -> Iterator[SyncContext]:
    with local_store(tmp_path / "hub").install() as endpoint:
        context = open_context(
            endpoint,
            tmp_path / "work",
            recipe_dir=write_recipes(tmp_path / "recipes"),
            database_url=f"sqlite:///{tmp_path / 'catalogue.db'}",
            namespace=namespace,
            limit=50,
        )
        yield context
        context.close()


@pytest.mark.slow
def test_eleven_decoder_families_are_published_and_verified_and_moe_is_skipped_with_a_reason(
    ctx: SyncContext, tmp_path: Path
) -> None:
    api = HfApi(token=ACME)
    repos = {
        family: publish_family(api, family, tmp_path / family) for family in [*DECODERS, "gpt2", "qwen3_moe"]
    }
    summary = sync_once(ctx)
    decisions = {d.repo_id: d for d in summary.decisions}
    moe = decisions[repos["qwen3_moe"]]
    assert moe.action == "skipped" and moe.reason == "no_recipe", moe
    outcomes = {o.base_repo_id: o for o in summary.outcomes}
    published = {
        family for family, repo in repos.items() if getattr(outcomes.get(repo), "state", None) == "published"
    }
    failures = {
        f: (outcomes[r].state, outcomes[r].error)
        for f, r in repos.items()
        if r in outcomes and f not in published
    }
    assert published == {*DECODERS, "gpt2"}, failures
    for family in published:
        outcome = outcomes[repos[family]]
        assert outcome.metrics["generation_agreement"] > 0.0, family
        if family == "gpt2":
            assert outcome.metrics["generation_exact"] == 1.0  # lossless: token for token
