"""`pruna-hub bench MODEL --config CONFIG`: smash a model folder or Hub repo and print base vs smashed.

Thin: smashing is ``smash.smash``, measuring is ``smash.evaluation.evaluate``; a Hub repo id is downloaded
through the project's ``HubClient`` with the files the sync downloads (``pruna_hub.sync.job.BASE_PATTERNS``).
This module parses options, loads the folder and renders the table in the layout of the reference
article (``--format json`` prints the whole EvaluationReport for scripts). Progress is logged (stderr),
data goes to stdout.
"""

from __future__ import annotations

import os

# Before torch is imported: OpenMP spin-waiting made prefill 20x slower on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import click

from pruna_hub.cli.options import device_option, format_option, local_hub_endpoint, local_hub_option

log = logging.getLogger("pruna_hub.bench")


def resolve_model(model: str, *, revision: str | None, local_hub: Path | None) -> tuple[Path, str]:
    """A local folder as it is; otherwise ``model`` is a Hub repo id, downloaded (pinned to
    ``revision``, default main) with the files a sync downloads. Returns (folder, name for the plot)."""
    folder = Path(model)
    if folder.is_dir():
        if revision is not None:
            raise click.BadParameter("--revision is for a Hub repo id, not a folder", param_hint="--revision")
        return folder, folder.name
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError as e:
        raise click.BadParameter(
            f"{model!r} is neither a folder nor a Hub repo id ({e})", param_hint="MODEL"
        ) from e
    with local_hub_endpoint(local_hub) as endpoint:
        return _download(model, revision or "main", endpoint), model


def _download(repo_id: str, revision: str, endpoint: str | None) -> Path:
    from pruna_hub.hub_client import HubClient
    from pruna_hub.settings import load_settings
    from pruna_hub.sync.job import BASE_PATTERNS

    settings = load_settings({"hub_endpoint": endpoint} if endpoint else None)
    hub = HubClient(endpoint=settings.hub_endpoint, token=settings.token)
    log.info("downloading %s@%s", repo_id, revision)
    return hub.download(repo_id, revision=revision, allow_patterns=BASE_PATTERNS)


def parse_config(text: str) -> Any:
    """A SmashConfig from inline JSON or from the path of a JSON file (either form of SmashConfig JSON)."""
    from smash import SmashConfig

    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise click.BadParameter(
                f"{text!r} is neither inline JSON nor an existing file", param_hint="--config"
            )
        source = path.read_text("utf-8")
    try:
        data = json.loads(source)
    except ValueError as e:
        raise click.BadParameter(f"not valid JSON ({e})", param_hint="--config") from e
    if isinstance(data, dict) and "format_version" in data:
        return SmashConfig.from_dict(data)
    return SmashConfig(data)


def build_settings(**options: Any) -> Any:
    from smash.evaluation import Settings

    return Settings(**{k: v for k, v in options.items() if v is not None})


def run_bench(model_dir: Path, config: Any, settings: Any, *, save_dir: Path | None) -> Any:
    """Load, smash, save (for on-disk bytes) and evaluate; returns the EvaluationReport."""
    from smash import smash
    from smash.architectures import load_pretrained
    from smash.evaluation import evaluate

    log.info("loading %s", model_dir)
    base, tokenizer = load_pretrained(model_dir)
    log.info("smashing with %s", config.to_json())
    smashed = smash(base, config, tokenizer=tokenizer)
    with tempfile.TemporaryDirectory(prefix="pruna-bench-") as scratch:
        saved = smashed.save_pretrained(save_dir or Path(scratch) / "smashed")
        log.info("measuring base and smashed")
        return evaluate(
            base, smashed, settings=settings, tokenizer=tokenizer, base_path=model_dir, smashed_path=saved
        )


@click.command("bench")
@click.argument("model")
@click.option(
    "--config", "config_text", required=True, help="SmashConfig as inline JSON or a JSON file path."
)
@click.option(
    "--prompt-length", "prompt_lengths", type=int, multiple=True, help="Prompt tokens (repeatable)."
)
@click.option("--gen-length", "generation_lengths", type=int, multiple=True, help="New tokens (repeatable).")
@click.option("--warmup", "warmup_runs", type=int, help="Untimed runs before measuring.")
@click.option("--runs", "measured_runs", type=int, help="Timed runs per length.")
@click.option("--batch-size", type=int)
@click.option("--threads", type=int, help="torch threads (default: torch's).")
@device_option
@click.option("--revision", help="Branch, tag or commit of a Hub repo id (default main).")
@local_hub_option
@click.option("--decode-path", type=click.Choice(["auto", "loop", "generate", "runtime"]))
@click.option("--eval-text", type=click.Path(exists=True, dir_okay=False), help="Text file for perplexity.")
@click.option("--quality-prompts", type=int, help="Use the first N shipped prompts (default: all).")
@click.option("--quality/--no-quality", default=True, show_default=True)
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep the smashed model.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the sweep plot (PNG).")
@format_option()
def bench(
    model: str,
    config_text: str,
    revision: str | None,
    local_hub: Path | None,
    save_dir: Path | None,
    output: Path | None,
    plot: Path | None,
    fmt: str,
    **options: Any,
) -> None:
    """Smash MODEL (a model folder, or a Hub repo id such as HuggingFaceTB/SmolLM2-135M-Instruct) with
    --config and print base vs smashed (speed, memory, quality)."""
    from smash.evaluation import plot_sweep, report_table

    config = parse_config(config_text)
    model_dir, name = resolve_model(model, revision=revision, local_hub=local_hub)
    options["prompt_lengths"] = options["prompt_lengths"] or None
    options["generation_lengths"] = options["generation_lengths"] or None
    settings = build_settings(**options)
    report = run_bench(model_dir, config, settings, save_dir=save_dir)
    if output is not None:
        output.write_text(report.to_json() + "\n")
    if plot is not None:
        plot_sweep({report.base.label: report.base, report.smashed.label: report.smashed}, plot, title=name)
    click.echo(report.to_json() if fmt == "json" else report_table(report))
