"""`pruna-hub recipes list|show|check|rank`: see which recipes the sync would use, validate new ones, and
measure which of a ``rank_by`` tie is fastest on this host.

Thin: loading, validation and ranking live in ``pruna_hub.recipes``; this module parses options and renders.
``check`` only plans (``determine_algorithm_order``); it never loads a model. ``rank`` smashes and times
random-weight models built from a config.json, as the sync does at discovery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from pruna_hub.cli.options import device_option, format_option, recipe_dir_option
from pruna_hub.errors import NoRecipeFilesError, RankingError, RecipeError
from pruna_hub.recipes import Recipe, RecipeBook, load_directory, load_recipes, parse_recipe_file
from pruna_hub.recipes.book import builtin_dir

_recipe_dirs = recipe_dir_option
_format = format_option()


@click.group("recipes")
def recipes() -> None:
    """List, show and check smash recipes."""


@recipes.command("list")
@_recipe_dirs
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Only recipes for this device.")
@_format
def list_recipes(recipe_dirs: tuple[Path, ...], device: str | None, fmt: str) -> None:
    """The recipes the sync would choose from, highest priority first per device."""
    book = load_recipes(recipe_dirs)
    chosen = [r for r in book if device is None or r.device == device]
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in chosen], indent=2))
        return
    headers = ("NAME", "DEVICE", "PRIORITY", "MATCHES", "ORDER", "HASH", "SOURCE")
    click.echo(render_table(headers, [_row(r) for r in chosen]))


@recipes.command("show")
@click.argument("name")
@_recipe_dirs
@_format
def show_recipe(name: str, recipe_dirs: tuple[Path, ...], fmt: str) -> None:
    """Everything about one recipe: match, algorithms in order with hyperparameters, gate, hash."""
    recipe = load_recipes(recipe_dirs).get(name)
    if fmt == "json":
        click.echo(json.dumps(recipe.to_dict(), indent=2))
        return
    click.echo("\n".join(describe(recipe)))


@recipes.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--builtin/--no-builtin", default=True, show_default=True, help="Also check for conflicts with built-ins."
)
@_format
@click.pass_context
def check_recipes(ctx: click.Context, paths: tuple[Path, ...], builtin: bool, fmt: str) -> None:
    """Validate recipe files or directories and print the planned algorithm order of each.

    Exits 1 when any recipe is invalid or two recipes tie for the same models, 2 when the folders hold no
    recipe file at all.
    """
    results: list[dict[str, Any]] = []
    valid: list[Recipe] = []
    files = _files(paths)
    if not files:
        raise NoRecipeFilesError([str(p) for p in paths])
    for path in files:
        try:
            recipe = parse_recipe_file(path)
        except RecipeError as e:
            results.append({"path": str(path), "ok": False, "field": e.field, "error": str(e)})
            continue
        valid.append(recipe)
        results.append({"path": str(path), "ok": True, "recipe": recipe.to_dict()})
    conflict = _conflict(valid, builtin)
    if conflict is not None:
        results.append({"path": conflict.path, "ok": False, "field": conflict.field, "error": str(conflict)})
    _render_check(results, fmt)
    if not all(r["ok"] for r in results):
        ctx.exit(1)


@recipes.command("rank")
@click.argument("config_path", type=click.Path(exists=True, path_type=Path))
@_recipe_dirs
@device_option
@click.option("--all", "every", is_flag=True, help="Time every matching recipe, not only the top tie.")
@click.option("--fresh", is_flag=True, help="Measure again instead of reading this host's stored timings.")
@_format
def rank_recipes(
    config_path: Path, recipe_dirs: tuple[Path, ...], device: str | None, every: bool, fresh: bool, fmt: str
) -> None:
    """Time the recipes that match CONFIG_PATH (a config.json or a folder holding one) on this host.

    Each recipe is smashed onto a random-weight model of that architecture and its decode timed; the sync
    makes the same measurement to decide a `rank_by` tie, and reuses what this stores.
    """
    from pruna_hub.recipes.ranking import TimingStore, choose, rank
    from pruna_hub.settings import Settings
    from pruna_hub.sync.steps import ModelSteps

    model_config = _read_config(config_path)
    device = device or Settings().resolved_device()
    book = load_recipes(recipe_dirs)
    tied = book.top_tier(model_config, device)
    candidates = book.matching(model_config, device) if every else tied
    if not candidates:
        book.select(model_config, device)  # raises NoRecipeError with what to do
    steps = ModelSteps()
    timings = rank(
        candidates,
        model_config,
        measure=lambda config, candidates: steps.time_decode(config, candidates, device=device),
        store=TimingStore(),
        device=device,
        fresh=fresh,
    )
    chosen = choose(tied, [t for t in timings if t.recipe in {r.name for r in tied}])
    if fmt == "json":
        data = {"chosen": chosen.name, "timings": [t.to_dict() for t in timings]}
        click.echo(json.dumps(data, indent=2))
        return
    rows = [
        (
            ("* " if t.recipe == chosen.name else "  ") + t.recipe,
            str(r.priority),
            f"{t.decode_ms:.2f}" if t.decode_ms is not None else "-",
            "stored" if t.cached else "measured",
            t.measured_at,
            t.error or "",
        )
        for t, r in zip(timings, candidates, strict=True)
    ]
    click.echo(render_table(("RECIPE", "PRIORITY", "DECODE_MS", "SOURCE", "AT", "ERROR"), rows))
    click.echo(f"* the sync chooses {chosen.name} for this model on this host")


def _read_config(path: Path) -> dict[str, Any]:
    file = path / "config.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RankingError(f"{file} is not a readable config.json ({e})", "Pass a model's config.json") from e
    if not isinstance(data, dict):
        raise RankingError(f"{file} holds a {type(data).__name__}, not a JSON object", "Pass a config.json.")
    return data


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    return files


def _conflict(recipes: list[Recipe], builtin: bool) -> RecipeError | None:
    """Duplicate names or ties among the checked recipes (and the built-ins they would join)."""
    try:
        RecipeBook([*(load_directory(builtin_dir(), builtin=True) if builtin else []), *recipes])
    except RecipeError as e:
        return e
    return None


def _render_check(results: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        if result["ok"]:
            data = result["recipe"]
            order = " -> ".join(data["order"])
            name, device, digest = data["name"], data["device"], data["content_hash"]
            click.echo(f"ok  {result['path']}: {name} ({device}) {order}  {digest}")
        else:
            click.echo(f"error: {result['error']}", err=True)


def _row(recipe: Recipe) -> tuple[str, ...]:
    matches = ", ".join(recipe.architectures + recipe.model_types)
    source = "builtin" if recipe.builtin else ("override" if recipe.overrides else "user")
    order = " -> ".join(recipe.order)
    digest = recipe.content_hash[:12]
    return (recipe.name, recipe.device, str(recipe.priority), matches, order, digest, source)


def describe(recipe: Recipe) -> list[str]:
    """Human-readable lines for ``recipes show``."""
    lines = [
        f"name:          {recipe.name} (version {recipe.version})",
        f"description:   {recipe.description}",
        f"source:        {recipe.source}" + (f" (overrides {recipe.overrides})" if recipe.overrides else ""),
        f"device:        {recipe.device}",
        f"priority:      {recipe.priority}" + (f" (ties: by {recipe.rank_by})" if recipe.rank_by else ""),
        f"architectures: {', '.join(recipe.architectures) or '(any)'}",
        f"model types:   {', '.join(recipe.model_types) or '(any)'}",
        "algorithms (in order):",
    ]
    for i, name in enumerate(recipe.order, 1):
        params = ", ".join(f"{k}={v!r}" for k, v in recipe.smash[name].items())
        lines.append(f"  {i}. {name}" + (f" ({params})" if params else ""))
    gate = ", ".join(f"{k}={v}" for k, v in recipe.quality_gate.to_dict().items())
    budget = ", ".join(f"{k}={v:,}" for k, v in recipe.budget.to_dict().items())
    evaluation = ", ".join(f"{k}={v!r}" for k, v in recipe.evaluation.items() if v is not None)
    lines += [
        f"evaluation:    {evaluation}",
        f"quality gate:  {gate}",
        f"budget:        {budget}",
        f"repo template: {recipe.repo_template}",
        f"content hash:  {recipe.content_hash}",
    ]
    return lines


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [headers, *rows])
    return "\n".join(line.rstrip() for line in lines)
