"""The model-side steps of a job: load the base, smash it with a recipe, evaluate both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruna_hub.recipes import Recipe


def load_base(path: Path, *, device: str) -> tuple[Any, Any]:
    """The base model from a downloaded snapshot, never running remote code, and its tokenizer if any."""
    from transformers import AutoConfig, AutoTokenizer

    from smash.architectures import architecture_class

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model_cls = architecture_class(config, location=str(path))
    model = model_cls.from_pretrained(path, trust_remote_code=False, use_safetensors=True).eval().to(device)
    tokenizer = None
    if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return model, tokenizer


def smash_base(base: Any, recipe: Recipe, *, tokenizer: Any, device: str) -> Any:
    from smash import smash

    return smash(base, recipe.smash_config(), device=device, tokenizer=tokenizer)


def evaluation_settings(recipe: Recipe) -> Any:
    from smash.evaluation import Settings

    return Settings(**{**dict(recipe.evaluation), "device": recipe.device})


def evaluate_models(
    base: Any, smashed: Any, recipe: Recipe, tokenizer: Any, *, base_path: Path, smashed_path: Path
) -> Any:
    from smash.evaluation import evaluate

    return evaluate(
        base,
        smashed,
        settings=evaluation_settings(recipe),
        tokenizer=tokenizer,
        base_path=base_path,
        smashed_path=smashed_path,
    )
