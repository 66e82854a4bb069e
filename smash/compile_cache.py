"""Compiled graphs kept on this machine, so that loading a model here again does not compile again.

Compiling one graph of SmolLM2 costs 25-35 s on a 2-core CPU, and ``torch_compile`` compiles two at every
load. What makes that avoidable: ``torch_compile`` runs its warm-up with inductor's cache pointed at a
private directory, one per *key* (``$SMASH_COMPILE_CACHE_DIR/<key>``, default ``~/.cache/smash/compile``).
The key hashes everything that changes the graphs: torch and Python versions, platform, device kind and
CPU capability (or GPU name and compute capability), the model class, its config and dtype, the
compile hyperparameters and the runtime's shapes. It is recorded in the saved model's metadata, so a
later load of that model on this machine finds the same directory.

What the directory holds, plainly: torch's AOTAutograd and FX-graph cache entries (torch pickles them),
precompiled functions (``smash.precompiled``, pickles too), generated Python modules and compiled shared
libraries. Loading any of it runs code. So it is only ever read from this machine's own cache, and only
after ``smash.sealed_dir`` has verified that this machine wrote exactly those files (an HMAC seal under a
key kept in the cache root); a directory that does not verify is removed and compiled again. Nothing of
it is ever read from a model folder, a download or a repo: earlier versions packed it into
``torch_compile_cache.tar`` beside the weights, and a folder that still carries that archive (or any
other code-bearing file) has it ignored, with a warning. The key named in a model's metadata is
untrusted input too: it only selects which sealed local directory to use, and must be 32 hex digits.
``SMASH_COMPILE_CACHE=off`` makes smash keep no cache of its own (torch's own defaults then apply).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from smash import sealed_dir

log = logging.getLogger(__name__)

# What earlier versions wrote beside the weights (pickled graphs and shared libraries): never read, never
# published. Kept by name so that a folder still carrying them is warned about and a push leaves them out.
ARCHIVE_FILE = "torch_compile_cache.tar"
MANIFEST_FILE = "torch_compile_cache.json"
LOCAL_ONLY_FILES = frozenset({ARCHIVE_FILE, MANIFEST_FILE})
KEY_PATTERN = re.compile(r"[0-9a-f]{32}")


def enabled() -> bool:
    return os.environ.get("SMASH_COMPILE_CACHE", "on").lower() not in {"off", "0", "false", "no"}


def cache_root() -> Path:
    root = os.environ.get("SMASH_COMPILE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "smash" / "compile"


def directory_for(key: str) -> Path:
    return cache_root() / key


def environment(device: torch.device) -> dict[str, str]:
    """Everything outside the model that decides whether compiled kernels can be reused."""
    env = {
        "torch": torch.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": f"{sys.platform}-{platform.machine()}",
        "device": device.type,
    }
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        env["accelerator"] = f"{torch.cuda.get_device_name(device)} sm{major}{minor}"
    else:
        env["accelerator"] = str(torch.backends.cpu.get_cpu_capability())
    return env


def model_key(
    model: nn.Module, params: Mapping[str, Any], shapes: Mapping[str, Any], env: Mapping[str, str]
) -> str:
    """The cache key of one compiled model: environment + what shapes the graphs (not weight values)."""
    to_json = getattr(getattr(model, "config", None), "to_json_string", None)
    config_text = to_json(use_diff=False) if callable(to_json) else ""
    signature = {
        "environment": dict(env),
        "model": type(model).__qualname__,
        "config": hashlib.sha256(config_text.encode()).hexdigest(),
        "structure": _structure_hash(model),
        "compile": dict(params),
        "shapes": dict(shapes),
    }
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:32]


def _structure_hash(model: nn.Module) -> str:
    """Module classes and tensor names/shapes/dtypes: what a quantizer or pruner changed, not the values."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__};".encode())
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def compiling_into(key: str | None) -> Iterator[None]:
    """Point inductor's caches at the key's sealed directory while the warm-up compiles or loads.

    Held under a per-key file lock, so that a second process with the same key waits and then finds the
    first one's graphs. The directory is verified before torch reads it (an unverified one is removed)
    and sealed again after a successful warm-up; a failed one leaves it unsealed, so it is rebuilt.
    A no-op when disabled or for backends that generate no code (``key`` None).
    """
    if key is None or not enabled():
        yield
        return
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"compile cache key {key!r} is not 32 hex digits")
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    root, directory = cache_root(), directory_for(key)
    try:
        secret = sealed_dir.secret_key(root)
    except sealed_dir.UntrustedCacheRootError as e:
        log.warning("compile cache not used: %s", e)
        yield
        return
    with FileLock(str(root / f".{key}.lock")):
        sealed_dir.ensure_trusted(directory, secret)
        directory.mkdir(parents=True, exist_ok=True)
        with temporary_cache_dir(str(directory)):
            yield
        sealed_dir.seal(directory, secret)


def saved_key(metadata: Mapping[str, Any], env: Mapping[str, str], shapes: Mapping[str, Any]) -> str | None:
    """The key recorded at smash time (untrusted JSON: checked), if it was made in this environment for
    graphs of these shapes (which include the decode thread count, chosen again at load)."""
    key = metadata.get("compile_cache_key")
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        return None
    if metadata.get("compile_environment") != dict(env):
        return None
    if metadata.get("compile_shapes", dict(shapes)) != dict(shapes):  # artifacts before 2026-11 lack it
        return None
    return key
