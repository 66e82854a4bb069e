"""`pruna-hub bench MODEL_DIR --config CONFIG`: smash a model folder and print base vs smashed.

Thin: smashing is ``smash.smash``, measuring is ``smash.evaluation.evaluate``; this module parses options,
loads the folder and renders the table in the layout of the reference article (``--format json`` prints
the whole EvaluationReport for scripts). Progress goes to stderr, data to stdout.
"""

from __future__ import annotations

import os

# Before torch is imported: OpenMP spin-waiting made prefill 20x slower on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import tempfile
from pathlib import Path
from typing import Any

import click


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

    click.echo(f"loading {model_dir}", err=True)
    base, tokenizer = load_pretrained(model_dir)
    click.echo(f"smashing with {config.to_json()}", err=True)
    smashed = smash(base, config, tokenizer=tokenizer)
    with tempfile.TemporaryDirectory(prefix="pruna-bench-") as scratch:
        saved = smashed.save_pretrained(save_dir or Path(scratch) / "smashed")
        click.echo("measuring base and smashed", err=True)
        return evaluate(
            base, smashed, settings=settings, tokenizer=tokenizer, base_path=model_dir, smashed_path=saved
        )


@click.command("bench")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
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
@click.option("--device", type=click.Choice(["cpu", "cuda"]))
@click.option("--decode-path", type=click.Choice(["auto", "loop", "generate", "runtime"]))
@click.option("--eval-text", type=click.Path(exists=True, dir_okay=False), help="Text file for perplexity.")
@click.option("--quality-prompts", type=int, help="Use the first N shipped prompts (default: all).")
@click.option("--quality/--no-quality", default=True, show_default=True)
@click.option("--save-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep the smashed model.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the sweep plot (PNG).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def bench(
    model_dir: Path,
    config_text: str,
    save_dir: Path | None,
    output: Path | None,
    plot: Path | None,
    fmt: str,
    **options: Any,
) -> None:
    """Smash MODEL_DIR with --config and print base vs smashed (speed, memory, quality)."""
    from smash.evaluation import plot_sweep, report_table

    options["prompt_lengths"] = options["prompt_lengths"] or None
    options["generation_lengths"] = options["generation_lengths"] or None
    settings = build_settings(**options)
    report = run_bench(model_dir, parse_config(config_text), settings, save_dir=save_dir)
    if output is not None:
        output.write_text(report.to_json() + "\n")
    if plot is not None:
        plot_sweep(
            {report.base.label: report.base, report.smashed.label: report.smashed}, plot, title=model_dir.name
        )
    click.echo(report.to_json() if fmt == "json" else report_table(report))
