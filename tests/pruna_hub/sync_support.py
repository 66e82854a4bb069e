"""Helpers for the sync tests: tiny base models published to the local store, a light test recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi

PRUNA = "hf_pruna_write"  # the service's token
ACME = "hf_acme_write"  # the base models' author

TEST_RECIPE = """
description = "tiny test recipe: 8-bit hqq, light evaluation"
version = 1
priority = 1000
device = "cpu"

[match]
architectures = ["LlamaForCausalLM"]

[smash.hqq]
weight_bits = {bits}
group_size = 64
compute_dtype = "float32"

[evaluation]
prompt_lengths = [8]
generation_lengths = [4, 8]
warmup_runs = 0
measured_runs = 1
quality_prompts = 3
quality_new_tokens = 4
use_chat_template = false

[quality_gate]
min_top1_agreement = {gate}

[budget]
max_parameters = {budget}

[publish]
repo_template = "{{target_org}}/{{name}}-smashed-test"
"""


def write_recipe(
    directory: Path, *, name: str = "tiny-llama", bits: int = 8, gate: float = 0.8, budget: int = 100_000_000
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(TEST_RECIPE.format(bits=bits, gate=gate, budget=budget))
    return directory


TIED_RECIPE = """
description = "tiny tie: {algorithm}, eager, static cache"
version = 1
priority = 1000
rank_by = "decode_latency"
device = "cpu"

[match]
architectures = ["LlamaForCausalLM"]

{smash}

[smash.static_cache]
max_cache_len = 64
prefill_chunk = 8

[evaluation]
prompt_lengths = [8]
generation_lengths = [4, 12]
quality_prompts = 2

[quality_gate]
{gate}

[budget]
max_parameters = 100_000_000

[publish]
repo_template = "{{target_org}}/{{name}}-{suffix}"
"""
TIED_SMASH = {
    "tiny-hqq8": ('[smash.hqq]\nweight_bits = 8\ngroup_size = 64\ncompute_dtype = "float32"', "hqq"),
    "tiny-int8": ("[smash.int8_weight]", "int8"),
}


PASSING_GATE = "min_top1_agreement = 0.5"
FAILING_GATE = "max_kl = 0.0"  # a quantized model's KL against its base is never exactly 0


def write_tied_recipes(directory: Path, *, failing: tuple[str, ...] = ()) -> Path:
    """Two eager tiny recipes tied at one priority with ``rank_by``: the sync measures which to use.
    The recipes named in ``failing`` get a quality gate no quantized model passes."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (smash, suffix) in TIED_SMASH.items():
        gate = FAILING_GATE if name in failing else PASSING_GATE
        text = TIED_RECIPE.format(algorithm=suffix, smash=smash, suffix=suffix, gate=gate)
        (directory / f"{name}.toml").write_text(text)
    return directory


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained in memory (300 tokens), so cards' snippets can run offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(["The capital of France is Paris.", "Hello, tiny world."] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>")


def tiny_llama(seed: int = 0) -> Any:
    """The published bases: tests/tiny_models.py's shape, but the tokenizer's 320 ids and an untied head.

    Defined here, not imported from there: worker subprocesses and benchmarks/worker_throughput.py
    import this module with only tests/pruna_hub on their path.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).eval()


def card(license_: str | None = "mit", **extra: Any) -> str:
    header: dict[str, Any] = {"pipeline_tag": "text-generation", "library_name": "transformers", **extra}
    if license_:
        header["license"] = license_
    lines = [f"{k}: {json.dumps(v)}" for k, v in header.items()]
    return "---\n" + "\n".join(lines) + "\n---\n# A tiny test model\n"


def publish_base(
    api: HfApi,
    repo_id: str,
    folder: Path,
    *,
    seed: int = 0,
    card_text: str | None = None,
    config_extra: dict[str, Any] | None = None,
    pickle_only: bool = False,
    extra_files: dict[str, str] | None = None,
) -> str:
    """Save a tiny Llama to ``folder`` and publish it as ``repo_id``; returns the commit sha."""
    model = tiny_llama(seed)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    if config_extra:
        config = json.loads((folder / "config.json").read_text())
        config.update(config_extra)
        (folder / "config.json").write_text(json.dumps(config))
    if pickle_only:
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    (folder / "README.md").write_text(card_text if card_text is not None else card())
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="base")
    return str(info.oid)


def local_store(root: Path) -> Any:
    """The local store the sync tests publish to: the service may write to PrunaAI, acme to its own."""
    from pruna_hub.hubstore import LocalHub, Principal

    return LocalHub(root, tokens={PRUNA: Principal("pruna", orgs=("PrunaAI",)), ACME: "acme"})


def open_context(
    endpoint: str, work: Path, *, recipe_dir: Path, database_url: str, namespace: str, **flags: Any
) -> Any:
    """A SyncContext on ``endpoint`` with the service's token, no retry waits and quiet progress."""
    from pruna_hub.hub_client import RetryPolicy
    from pruna_hub.settings import load_settings
    from pruna_hub.sync.context import SyncContext

    settings = load_settings(
        {
            "hub_endpoint": endpoint,
            "recipe_dirs": [recipe_dir],
            "database_url": database_url,
            "namespace": namespace,
            "work_dir": str(work),
            "device": "cpu",
            "retry_base_seconds": 0,
            "token": PRUNA,
            **flags,
        },
        environ={},
    )
    return SyncContext.open(settings, report=lambda message: None, retry=RetryPolicy(sleep=lambda s: None))
