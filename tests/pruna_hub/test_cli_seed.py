"""`pruna-hub seed --model-dir DIR --repo-id ID`: any Hub-style folder into the local store."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner
from huggingface_hub import HfApi

from pruna_hub.cli import cli
from pruna_hub.hubstore import LocalHub


def test_seed_a_model_folder(tiny_llama: torch.nn.Module, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    tiny_llama.save_pretrained(folder)
    (folder / "pickled.bin").write_bytes(b"not uploaded")
    store = tmp_path / "store"
    result = CliRunner().invoke(
        cli, ["seed", "--local-hub", str(store), "--model-dir", str(folder), "--repo-id", "acme/tiny"]
    )
    assert result.exit_code == 0, result.output
    with LocalHub(store).install():
        files = set(HfApi().list_repo_files("acme/tiny"))
    assert {"config.json", "model.safetensors"} <= files and "pickled.bin" not in files

    result = CliRunner().invoke(cli, ["seed", "--local-hub", str(store), "--repo-id", "acme/tiny"])
    assert result.exit_code == 2 and "go together" in result.output
