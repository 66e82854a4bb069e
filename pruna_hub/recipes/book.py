"""Loading recipe directories and choosing the recipe for a model.

Rules (also in the package docstring):
- The built-in recipes (``pruna_hub/recipes/builtin/*.toml``) load first, then each user directory.
- A user recipe whose name equals a built-in's replaces the built-in (``Recipe.overrides`` records which
  file it replaced); two user recipes of one name are an error, since nothing says which was meant.
- Selection: among the recipes for the device that match the model, the highest ``priority`` wins. Two
  recipes that could match the same model on the same device at the same priority are rejected when
  loaded, unless every one of them sets ``rank_by``: then the tie is theirs to have, and the sync decides
  it by measuring each on the host that runs it (``pruna_hub.recipes.ranking``). ``select`` alone never
  measures: it breaks such a tie by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pruna_hub.errors import NoRecipeError, RecipeConflictError, RecipeError
from pruna_hub.recipes.profile import profile_of
from pruna_hub.recipes.recipe import Recipe, parse_recipe_file


def builtin_dir() -> Path:
    return Path(str(resources.files("pruna_hub.recipes") / "builtin"))


def recipe_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of a directory, sorted by name (not recursive)."""
    if not directory.is_dir():
        raise RecipeError(
            str(directory), "(directory)", "is not a directory", "Pass an existing recipe directory."
        )
    return sorted(p for p in directory.iterdir() if p.suffix == ".toml" and p.is_file())


def load_directory(directory: Path, *, builtin: bool = False) -> list[Recipe]:
    return [parse_recipe_file(path, builtin=builtin) for path in recipe_files(directory)]


class RecipeBook:
    """A validated, conflict-free set of recipes, by name."""

    def __init__(self, recipes: Iterable[Recipe]) -> None:
        self._recipes: dict[str, Recipe] = {}
        for recipe in recipes:
            self._add(recipe)
        check_conflicts(self._recipes.values())

    def _add(self, recipe: Recipe) -> None:
        existing = self._recipes.get(recipe.name)
        if existing is not None:
            if not existing.builtin or recipe.builtin:
                raise RecipeError(
                    str(recipe.source),
                    "name",
                    f"recipe {recipe.name!r} is also defined in {existing.source}",
                    "Rename one of the files: only a built-in recipe may be overridden.",
                )
            recipe = dataclasses.replace(recipe, overrides=existing.source)
        self._recipes[recipe.name] = recipe

    def __iter__(self) -> Iterator[Recipe]:
        return iter(sorted(self._recipes.values(), key=lambda r: (r.device, -r.priority, r.name)))

    def __len__(self) -> int:
        return len(self._recipes)

    def __contains__(self, name: object) -> bool:
        return name in self._recipes

    def get(self, name: str) -> Recipe:
        try:
            return self._recipes[name]
        except KeyError:
            raise NoRecipeError(
                f"no recipe is named {name!r}; loaded: {', '.join(sorted(self._recipes)) or '(none)'}. "
                "Run `pruna-hub recipes list` to see them."
            ) from None

    def matching(self, model_config: Any, device: str) -> list[Recipe]:
        """Every recipe that matches, the one ``select`` picks first."""
        profile = profile_of(model_config)
        found = [r for r in self._recipes.values() if r.matches(profile, device)]
        return sorted(found, key=lambda r: (-r.priority, r.name))

    def top_tier(self, model_config: Any, device: str) -> list[Recipe]:
        """The matching recipes at the highest matching priority: one, or a ``rank_by`` tie (by name)."""
        found = self.matching(model_config, device)
        return [r for r in found if r.priority == found[0].priority]

    def select(self, model_config: Any, device: str) -> Recipe:
        """The recipe for a model (a config.json dict or a transformers config) on ``device``, a
        ``rank_by`` tie broken by name (``recipes.ranking`` breaks it by measurement instead)."""
        found = self.matching(model_config, device)
        if not found:
            raise NoRecipeError(
                f"no recipe for {device} matches {profile_of(model_config).describe()}; add a recipe "
                "directory with --recipe-dir, or see `pruna-hub recipes list`."
            )
        return found[0]


def model_signature(model_config: Any) -> tuple[tuple[str, ...], str | None]:
    """(architectures, model_type) from a config.json mapping or a config object; bad values are ignored."""
    if isinstance(model_config, Mapping):
        architectures, model_type = model_config.get("architectures"), model_config.get("model_type")
    else:
        architectures = getattr(model_config, "architectures", None)
        model_type = getattr(model_config, "model_type", None)
    names = (
        tuple(a for a in architectures if isinstance(a, str))
        if isinstance(architectures, list | tuple)
        else ()
    )
    return names, model_type if isinstance(model_type, str) else None


def check_conflicts(recipes: Iterable[Recipe]) -> None:
    """Reject two recipes that tie (same device and priority, some model matching both) unless both set
    ``rank_by``, which asks for the tie to be decided by measurement."""
    ordered = sorted(recipes, key=lambda r: (str(r.source), r.name))
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            ranked = first.rank_by is not None and second.rank_by is not None
            if first.priority == second.priority and first.overlaps(second) and not ranked:
                raise RecipeConflictError(
                    str(second.source),
                    "priority",
                    f"ties with {first.name!r} ({first.source}) at priority {first.priority} on "
                    f"{first.device} for the same models",
                    other=str(first.source),
                )


def load_recipes(dirs: Iterable[str | Path] = (), *, include_builtin: bool = True) -> RecipeBook:
    """The built-in recipes (unless ``include_builtin`` is false) plus each directory in ``dirs``."""
    recipes: list[Recipe] = load_directory(builtin_dir(), builtin=True) if include_builtin else []
    for directory in dirs:
        recipes.extend(load_directory(Path(directory)))
    return RecipeBook(recipes)
