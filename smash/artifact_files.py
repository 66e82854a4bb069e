"""The files of a saved smashed model, named once: what ``save_pretrained`` writes, what a download fetches,
and which formats are never read. ``smash.model`` writes and reads them, ``smash.hub`` moves them."""

from __future__ import annotations

CONFIG_FILE = "smash_config.json"
ARTIFACT_FILE = "smash_artifact.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# Formats whose loading runs code: never read from a model folder, whatever their name.
CODE_SUFFIXES = (*PICKLE_SUFFIXES, ".pickle", ".tar", ".zip", ".so", ".dylib", ".dll", ".py", ".pyc")

# llama_cpp's weights: one GGUF file (data, parsed by llama.cpp) named after its llama.cpp weight type.
# Exact names rather than "*.gguf": pruna_hub's base snapshot reuses these patterns, and many base repos
# carry a dozen GGUF quantizations that must not be downloaded with them.
GGUF_TYPES = ("F32", "F16", "Q8_0", "Q4_K_M", "Q4_0")


def gguf_file(quant_type: str) -> str:
    return f"model-{quant_type}.gguf"


GGUF_FILES = [gguf_file(t) for t in GGUF_TYPES]

# What a download fetches: exactly the files the folder loader reads (data formats only).
LOADER_PATTERNS = [
    CONFIG_FILE,
    ARTIFACT_FILE,
    "config.json",
    "generation_config.json",
    "*.safetensors",
    *GGUF_FILES,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
]
