"""The model-side steps of a job: load the base, smash it with a recipe, evaluate both.

They sit behind one small class so that a load test can swap in a fast stand-in at exactly this job
boundary (``SyncContext.steps``) while claiming, leasing, recording, publishing and verifying stay real.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pruna_hub.errors import RankingError
from pruna_hub.recipes import Recipe

# Tied recipes (recipes.ranking) are timed in turns, one generation each per turn, after one warm-up
# (SmolLM2 with the built-in recipes: 3 x 127 decode steps each).
RANKING_TURNS = 3


class ModelSteps:
    """The real steps: transformers to load, smash to smash, smash.evaluation to measure."""

    def load_base(self, path: Path, *, device: str) -> tuple[Any, Any]:
        """The base model from a downloaded snapshot, never running remote code, and its tokenizer."""
        from smash.architectures import load_pretrained

        return load_pretrained(path, device=device)

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

    def time_decode(
        self, model_config: Mapping[str, Any], recipes: Sequence[Recipe], *, device: str
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Median seconds of one decode step of each recipe smashed onto a random-weight model built from
        ``model_config`` (a config.json mapping) on ``device``, and why any recipe could not be timed.

        All candidates are smashed first and then timed in turns (A B A B ...), so that a machine that
        slows down over the minutes the smashes take slows every candidate alike. They are held in memory
        together for that. Every one is timed at the same prompt and generation length, which all of their
        caches hold. Raises RankingError when the config itself cannot be built into a model.
        """
        from smash.architectures import architecture_class
        from smash.errors import SmashError

        config = transformers_config(model_config)
        try:
            model_cls = architecture_class(config, location="config.json")
        except SmashError as e:
            raise RankingError(str(e), "Only architectures that transformers ships are ranked.") from e
        smashed: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for recipe in recipes:
            try:
                smashed[recipe.name] = _smash_random(model_cls, config, recipe, device)
            except SmashError as e:
                errors[recipe.name] = f"{type(e).__name__}: {e}"
        settings = _ranking_settings(recipes, device)
        steps: dict[str, list[float]] = {name: [] for name in smashed}
        for turn in range(RANKING_TURNS):
            for name in list(smashed):
                try:
                    steps[name] += _decode_steps(smashed[name], replace(settings, warmup_runs=int(turn == 0)))
                except SmashError as e:  # e.g. the prompt does not fit this model: it cannot be ranked
                    errors[name] = f"{type(e).__name__}: {e}"
                    del smashed[name], steps[name]
        return {name: statistics.median(values) for name, values in steps.items() if values}, errors


def _smash_random(model_cls: Any, config: Any, recipe: Recipe, device: str) -> Any:
    import torch

    from smash import smash

    torch.manual_seed(0)
    dtype = config.dtype if isinstance(config.dtype, torch.dtype) else torch.float32
    model = model_cls._from_config(config, dtype=dtype).eval()
    return smash(model, recipe.smash_config(), device=device, inplace=True)


def _ranking_settings(recipes: Sequence[Recipe], device: str) -> Any:
    from smash.evaluation import Settings

    prompt = min(min(r.evaluation["prompt_lengths"]) for r in recipes)
    generation = min(max(r.evaluation["generation_lengths"]) for r in recipes)
    return Settings(
        prompt_lengths=(prompt,),
        generation_lengths=(generation,),
        measured_runs=1,
        quality=False,
        device=device,
    )


def _decode_steps(model: Any, settings: Any) -> list[float]:
    from smash.evaluation.efficiency import measure_efficiency

    report = measure_efficiency(model, settings, label="ranking")
    return [step for run in report.runs for step in run.step_latencies_s]


def transformers_config(model_config: Mapping[str, Any]) -> Any:
    """A transformers config object from a config.json mapping, never running remote code."""
    from transformers import AutoConfig

    model_type = str(model_config.get("model_type"))
    if model_config.get("auto_map"):
        raise RankingError("config.json asks for remote code (auto_map)", "Such models are not smashed.")
    fields = {k: v for k, v in model_config.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (ValueError, TypeError, KeyError) as e:
        raise RankingError(
            f"config.json (model_type {model_type!r}) is not a config transformers can build ({e})",
            "Only architectures that transformers ships are ranked.",
        ) from e


def evaluation_settings(recipe: Recipe) -> Any:
    from smash.evaluation import Settings

    return Settings(**{**dict(recipe.evaluation), "device": recipe.device})
