"""The model-side steps of a job: load the base, smash it with a recipe, evaluate both.

They sit behind one small class so that a load test can swap in a fast stand-in at exactly this job
boundary (``SyncContext.steps``) while claiming, leasing, recording, publishing and verifying stay real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruna_hub.recipes import Recipe


class ModelSteps:
    """The real steps: transformers to load, smash to smash, smash.evaluation to measure."""

    def load_base(self, path: Path, *, device: str) -> tuple[Any, Any]:
        """The base model from a downloaded snapshot, never running remote code, and its tokenizer."""
        from transformers import AutoConfig, AutoTokenizer

        from smash.architectures import architecture_class

        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        model_cls = architecture_class(config, location=str(path))
        model = model_cls.from_pretrained(path, trust_remote_code=False, use_safetensors=True)
        model = model.eval().to(device)
        tokenizer = None
        if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        return model, tokenizer

    def smash(self, base: Any, recipe: Recipe, *, tokenizer: Any, device: str) -> Any:
        from smash import smash

        return smash(base, recipe.smash_config(), device=device, tokenizer=tokenizer)

    def evaluate(
        self, base: Any, smashed: Any, recipe: Recipe, tokenizer: Any, *, base_path: Path, smashed_path: Path
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


def evaluation_settings(recipe: Recipe) -> Any:
    from smash.evaluation import Settings

    return Settings(**{**dict(recipe.evaluation), "device": recipe.device})
