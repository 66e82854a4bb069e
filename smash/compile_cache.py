"""Compiled graphs kept with a saved model, so loading it in the same environment does not compile again.

Compiling one graph of SmolLM2 costs 25-35 s on a 2-core CPU, and ``torch_compile`` compiles two at every
load. What makes that avoidable: ``torch_compile`` runs its warm-up with inductor's cache pointed at a
private directory, one per *key* (``$SMASH_COMPILE_CACHE_DIR/<key>``, default ``~/.cache/smash/compile``).
The key hashes everything that changes the graphs: torch and Python versions, platform, device kind and
CPU capability (or GPU name and compute capability), the model class, its config and dtype, the
compile hyperparameters and the runtime's shapes. ``save_pretrained`` packs that directory into
``torch_compile_cache.tar`` next to the weights, with ``torch_compile_cache.json`` (key, environment,
sha256); ``from_pretrained`` unpacks it when the environment matches, and the warm-up then finds every
graph in the cache. When it does not match, nothing is unpacked and the model compiles as usual.

Why a directory and not torch's mega-cache (``torch.compiler.save_cache_artifacts``): measured on the
tiny Llama, loading mega-cache artifacts skipped inductor's lowering but still rebuilt every C++ kernel
(22 s of a 30 s cold compile); the directory also holds the built kernels (cold 42 s -> 3.9 s).

What the archive contains, plainly: torch's AOTAutograd and FX-graph cache entries (torch pickles
them), generated Python modules and compiled shared libraries. Loading any of it runs code, exactly like
unpickling, so it is only ever taken from a folder the user loads from their own disk: ``smash.hub``
never downloads it (its allowlist holds config, tokenizer and safetensors files only). It is unpacked
only when the key's environment equals this one and the archive's sha256 matches its manifest; set
``SMASH_COMPILE_CACHE=off`` to never read or write it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

ARCHIVE_FILE = "torch_compile_cache.tar"
MANIFEST_FILE = "torch_compile_cache.json"
# Local-only files: the archive holds pickled graph entries and shared libraries (loading it runs code),
# so it is never published to a Hub; readers of a published repo compile at load instead.
LOCAL_ONLY_FILES = frozenset({ARCHIVE_FILE, MANIFEST_FILE})
MANIFEST_VERSION = 1
KEY_ATTR = "_smash_compile_cache_key"


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
    """Point inductor's caches at the key's directory while the warm-up compiles (a no-op if disabled)."""
    if key is None or not enabled():
        yield
        return
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    directory = directory_for(key)
    directory.mkdir(parents=True, exist_ok=True)
    with temporary_cache_dir(str(directory)):
        yield


# --- saving ----------------------------------------------------------------------------------------------


def saved_key(metadata: Mapping[str, Any], env: Mapping[str, str], shapes: Mapping[str, Any]) -> str | None:
    """The key recorded at smash time (untrusted JSON: checked), if it was made in this environment for
    graphs of these shapes (which include the decode thread count, chosen again at load)."""
    key = metadata.get("compile_cache_key")
    if not isinstance(key, str) or not key.isalnum() or metadata.get("compile_environment") != dict(env):
        return None
    if metadata.get("compile_shapes", dict(shapes)) != dict(shapes):  # artifacts before 2026-11 lack it
        return None
    return key


def write_archive(model: nn.Module, folder: Path) -> Path | None:
    """Pack the model's compile directory into ``folder``; None when there is nothing to pack."""
    key = model.__dict__.get(KEY_ATTR)
    if not isinstance(key, str) or not enabled() or not directory_for(key).is_dir():
        for stale in (ARCHIVE_FILE, MANIFEST_FILE):  # an earlier save into this folder must not linger
            (folder / stale).unlink(missing_ok=True)
        return None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    archive = folder / ARCHIVE_FILE
    with tarfile.open(archive, "w") as tar:
        for path in sorted(directory_for(key).rglob("*")):
            relative = path.relative_to(directory_for(key))
            if path.is_file() and not path.is_symlink() and not _is_lock(relative):
                tar.add(path, arcname=str(relative), recursive=False)
    manifest = {
        "format_version": MANIFEST_VERSION,
        "key": key,
        "environment": environment(device),
        "sha256": _sha256(archive),
        "bytes": archive.stat().st_size,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return archive


def _is_lock(relative: Path) -> bool:
    return relative.parts[0] == "locks" or relative.suffix == ".lock"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- loading ---------------------------------------------------------------------------------------------


def install_archive(folder: Path, device: torch.device) -> str | None:
    """Unpack ``folder``'s archive into the local cache; return its key, or None when it cannot be used.

    Every check failing means "compile instead": a missing or malformed manifest, another environment,
    a checksum mismatch, an unsafe member. None of them is an error, since compiling gives the same model.
    """
    manifest = _read_manifest(folder)
    if manifest is None or not enabled() or manifest["environment"] != environment(device):
        return None
    key, target = manifest["key"], directory_for(manifest["key"])
    if (target / ".complete").is_file():
        return key  # already unpacked on this machine
    archive = folder / ARCHIVE_FILE
    if not archive.is_file() or _sha256(archive) != manifest["sha256"]:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        with tarfile.open(archive, "r") as tar:
            tar.extractall(staging, filter="data")  # regular files only, no absolute or ../ paths
        (staging / ".complete").write_text("")
        if not target.exists():
            staging.rename(target)
        else:
            _merge_new_files(staging, target)
    except (tarfile.TarError, OSError):
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return key


def _merge_new_files(staging: Path, target: Path) -> None:
    """Move into ``target`` the files it lacks, leaving the ones it has untouched, ``.complete`` last.

    ``target`` may hold kernels this very process compiled and has loaded (smash, save, then load, as the
    sync does): copying over them would rewrite shared libraries that are mapped into memory, which
    crashed the process. Same key, same content: the existing files are kept.
    """
    for source in sorted(staging.rglob("*")):
        destination = target / source.relative_to(staging)
        if source.is_file() and source.name != ".complete" and not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, destination)  # a new inode: never writes into a file someone has open
    (target / ".complete").write_text("")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != MANIFEST_VERSION:
        return None
    key, env, sha = data.get("key"), data.get("environment"), data.get("sha256")
    if not (isinstance(key, str) and key.isalnum() and isinstance(env, dict) and isinstance(sha, str)):
        return None
    return data
