"""PrunaModel: a smashed model with the config that made it, saved as safetensors plus two JSON files.

A saved folder holds:
- ``config.json`` (and ``generation_config.json``, tokenizer files): the base model's own files;
- ``smash_config.json``: the SmashConfig (``SmashConfig.to_json``);
- ``smash_artifact.json``: the applied order, each algorithm's metadata, tensor aliases, versions;
- ``model.safetensors``: every tensor of the smashed model, quantized ones included. Never pickle.

Nothing else in the folder is read: files that could run code when loaded (pickles, archives, shared
libraries, Python) are ignored with a warning, and compiled graphs come only from this machine's sealed
compile cache (``smash.compile_cache``).

Loading rebuilds the base architecture from config.json, lets each WEIGHTS algorithm rebuild its module
structure (``Algorithm.restore``) in the saved order, loads the tensors strictly, then re-applies the
REAPPLY algorithms (torch.compile, caches).

An algorithm whose result is a file of its own rather than torch tensors (llama_cpp's GGUF) declares
``save_files(model, folder, params, ctx)`` and ``load_files(folder, params, ctx) -> nn.Module``
(``FileBackedAlgorithm``): the first writes its files beside the others, the second replaces building
the base and the WEIGHTS replay; model.safetensors then holds what the rebuilt module has (nothing, for
a GGUF) and still loads strictly. Its files must be data formats named in ``LOADER_PATTERNS``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from smash import architectures, compile_cache
from smash.algorithms.base import SaveMode, SmashContext
from smash.artifact_files import ARTIFACT_FILE, CODE_SUFFIXES, CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE
from smash.config import SmashConfig
from smash.errors import ArtifactError, UnsafeArtifactError
from smash.ordering import determine_algorithm_order
from smash.runtime import attached_runtime

ARTIFACT_FORMAT_VERSION = 1

log = logging.getLogger(__name__)
_ARTIFACT_KEYS = frozenset({"format_version", "order", "metadata", "aliases", "versions"})


@runtime_checkable
class FileBackedAlgorithm(Protocol):
    """An algorithm that saves its result as files of its own and builds the model from them at load."""

    def save_files(
        self, model: nn.Module, folder: Path, params: Mapping[str, Any], ctx: SmashContext
    ) -> None: ...

    def load_files(self, folder: Path, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module: ...


class PrunaModel:
    """Wraps a smashed ``nn.Module``; calls, ``generate`` and attribute access reach the wrapped model."""

    def __init__(
        self,
        model: nn.Module,
        smash_config: SmashConfig,
        *,
        metadata: Mapping[str, dict[str, Any]] | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.__dict__["model"] = model
        self.__dict__["smash_config"] = smash_config
        self.__dict__["metadata"] = dict(metadata or {})
        self.__dict__["tokenizer"] = tokenizer

    model: nn.Module
    smash_config: SmashConfig
    metadata: dict[str, dict[str, Any]]
    tokenizer: Any

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        runtime = attached_runtime(self.model)  # static_cache's fixed-shape runtime, when configured
        if runtime is not None:
            return runtime.generate(*args, **kwargs)
        return self.model.generate(*args, **kwargs)  # type: ignore[operator]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)

    def __repr__(self) -> str:
        return f"PrunaModel({type(self.model).__name__}, {self.smash_config!r})"

    @property
    def order(self) -> list[str]:
        return determine_algorithm_order(self.smash_config)

    # --- saving -------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write the folder described in the module docstring and return its path."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        base_config = getattr(self.model, "config", None)
        if base_config is None:
            raise ArtifactError(
                str(path),
                "the wrapped model has no transformers `config`",
                "Only transformers models (PreTrainedModel) can be saved and loaded back.",
            )
        if not getattr(base_config, "architectures", None):
            base_config = copy.deepcopy(base_config)
            base_config.architectures = [type(self.model).__name__]
        base_config.save_pretrained(path)
        generation_config = getattr(self.model, "generation_config", None)
        if generation_config is not None:
            generation_config.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)
        tensors, aliases = _deduplicated_state(self.model)
        save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": "pt"})
        (path / CONFIG_FILE).write_text(self.smash_config.to_json(indent=2) + "\n")
        for name, algorithm in _file_backed(self.smash_config, self.order):
            ctx = SmashContext("cpu", dict(self.metadata.get(name, {})))
            algorithm.save_files(self.model, path, self.smash_config[name], ctx)
        artifact = {
            "format_version": ARTIFACT_FORMAT_VERSION,
            "order": self.order,
            "metadata": self.metadata,
            "aliases": aliases,
            "versions": _versions(),
        }
        (path / ARTIFACT_FILE).write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")
        for stale in compile_cache.LOCAL_ONLY_FILES:  # an older smash's archive must not linger
            (path / stale).unlink(missing_ok=True)
        return path

    # --- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike[str],
        *,
        revision: str | None = None,
        token: str | None = None,
        device: str | torch.device | None = None,
        load_tokenizer: bool = True,
    ) -> PrunaModel:
        """Load from a local folder or, for an ``org/name`` that is not a folder, from a Hub repo."""
        path = Path(path_or_repo_id)
        if not path.is_dir():
            from smash.hub import download_artifact  # huggingface_hub only imported when needed

            path = download_artifact(str(path_or_repo_id), revision=revision, token=token)
        return load_folder(path, device=device, load_tokenizer=load_tokenizer)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool = False,
        commit_message: str = "Upload smashed model",
        revision: str | None = None,
        card: Any = None,
    ) -> str:
        """Publish to a Hub repo (created if needed) in ONE commit; returns the commit sha (see smash.hub)."""
        from smash.hub import push_to_hub

        return push_to_hub(
            self,
            repo_id,
            token=token,
            private=private,
            commit_message=commit_message,
            revision=revision,
            card=card,
        )


def _deduplicated_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict with tensors that share storage saved once; ``aliases`` maps dropped -> kept key."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], torch.dtype], str] = {}
    for key, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        identity = (
            tensor.untyped_storage().data_ptr(),
            int(tensor.storage_offset()),
            tuple(tensor.shape),
            tensor.dtype,
        )
        if tensor.numel() > 0 and identity in seen:
            aliases[key] = seen[identity]
            continue
        seen[identity] = key
        tensors[key] = tensor.detach().contiguous().cpu()
    return tensors, aliases


def _versions() -> dict[str, str]:
    import transformers

    import smash

    return {"smash": smash.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _read_json(path: Path) -> Any:
    return architectures.read_json(path)


def read_artifact(path: Path) -> dict[str, Any]:
    """The validated contents of smash_artifact.json (untrusted: checked field by field)."""
    data = _read_json(path / ARTIFACT_FILE)
    hint = "The file was not written by a compatible smash; re-save the model."
    if not isinstance(data, dict) or set(data) - _ARTIFACT_KEYS:
        raise ArtifactError(str(path), f"{ARTIFACT_FILE} has unexpected fields", hint)
    if data.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(
            str(path), f"{ARTIFACT_FILE} format_version {data.get('format_version')!r} is not supported", hint
        )
    metadata, aliases = data.get("metadata", {}), data.get("aliases", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, dict) for v in metadata.values()):
        raise ArtifactError(str(path), f"{ARTIFACT_FILE} metadata must map names to objects", hint)
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise ArtifactError(str(path), f"{ARTIFACT_FILE} aliases must map tensor names to tensor names", hint)
    return data


def check_weights_present(path: Path) -> Path:
    weights = path / WEIGHTS_FILE
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeArtifactError(
            str(path),
            f"only pickle weights are present ({', '.join(pickles)})",
            "Pickle can execute code when loaded and is never read; re-save the model as safetensors.",
        )
    raise ArtifactError(str(path), f"{WEIGHTS_FILE} is missing", "Re-save the model with save_pretrained.")


def warn_about_code_files(path: Path) -> list[str]:
    """Name the files in ``path`` that could run code if loaded; they are ignored, never read."""
    found = sorted(
        p.name
        for p in path.iterdir()
        if p.name in compile_cache.LOCAL_ONLY_FILES or p.suffix.lower() in CODE_SUFFIXES
    )
    if found:
        log.warning(
            "%s holds files that could run code if loaded (%s); they are ignored: only safetensors and "
            "JSON are read from a model folder, compiled graphs only from this machine's sealed cache",
            path,
            ", ".join(found),
        )
    return found


def build_base(path: Path) -> nn.Module:
    """The base architecture named by config.json, without running remote code.

    config.json is checked as JSON, then its model is counted on the meta device against the size budget
    (``architectures.check_size_budget``) before anything is allocated. Its parameters are allocated but
    not initialised (``no_init_weights``): the strict ``load_state_dict`` that follows overwrites every one
    of them, and SmolLM2's random init alone took 2.8-8.5 s of a load. Non-persistent buffers (rotary
    frequencies) are still computed by the modules' constructors.
    """
    from transformers.initialization import no_init_weights

    base_config = architectures.read_base_config(path)
    model_cls = architectures.architecture_class(base_config, location=str(path))
    architectures.check_size_budget(model_cls, base_config, location=str(path))
    dtype = getattr(base_config, "dtype", None)
    try:
        with no_init_weights():
            model = model_cls._from_config(
                base_config, dtype=dtype if isinstance(dtype, torch.dtype) else None
            )
    except architectures.CONSTRUCTION_ERRORS as e:  # within budget, but more than this machine can hold
        raise ArtifactError(
            str(path),
            f"the model described by config.json cannot be built ({e})",
            "A genuine model of that size needs a machine with more memory; otherwise re-save the model.",
        ) from e
    model.eval()
    return model


def load_tensors(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(weights))
    except Exception as e:  # safetensors raises its own SafetensorError or OSError on corrupt files
        raise ArtifactError(
            str(weights.parent), f"{weights.name} is not a readable safetensors file ({e})", "Re-download it."
        ) from e


def load_folder(
    path: Path, *, device: str | torch.device | None = None, load_tokenizer: bool = True
) -> PrunaModel:
    weights = check_weights_present(path)  # first: a pickle-only folder is refused whatever else it holds
    config = SmashConfig.from_dict(_read_json(path / CONFIG_FILE))
    artifact = read_artifact(path)
    order = determine_algorithm_order(config)
    metadata: dict[str, dict[str, Any]] = artifact.get("metadata", {})
    target = torch.device(device) if device is not None else torch.device("cpu")
    model = _rebuild(path, config, order, metadata, target)
    tensors = load_tensors(weights)
    for alias, kept in artifact.get("aliases", {}).items():
        if kept in tensors:
            tensors[alias] = tensors[kept]
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:
        raise ArtifactError(
            str(path), f"the saved tensors do not fit the rebuilt model ({e})", "Re-save the model."
        ) from e
    tie_weights = getattr(model, "tie_weights", None)
    if callable(tie_weights):
        tie_weights()
    model = model.to(target)
    warn_about_code_files(path)
    model = _replay(model, config, order, metadata, target, SaveMode.REAPPLY)
    tokenizer = architectures.load_tokenizer(path) if load_tokenizer else None
    return PrunaModel(model, config, metadata=metadata, tokenizer=tokenizer)


def _file_backed(config: SmashConfig, order: list[str]) -> list[tuple[str, FileBackedAlgorithm]]:
    """The algorithms of ``order`` that save files of their own, as (name, instance)."""
    algorithms = [(name, config.registry.create(name)) for name in order]
    return [(name, a) for name, a in algorithms if isinstance(a, FileBackedAlgorithm)]


def _rebuild(
    path: Path,
    config: SmashConfig,
    order: list[str],
    metadata: Mapping[str, dict[str, Any]],
    target: torch.device,
) -> nn.Module:
    """The model before its tensors are loaded: from the last file-backed algorithm's files, whose result
    holds every earlier algorithm's effect, or the base architecture with the WEIGHTS replay."""
    owners = _file_backed(config, order)
    if owners:
        name, algorithm = owners[-1]
        return algorithm.load_files(
            path, config[name], SmashContext(target.type, dict(metadata.get(name, {})))
        )
    return _replay(build_base(path), config, order, metadata, target, SaveMode.WEIGHTS)


def _replay(
    model: nn.Module,
    config: SmashConfig,
    order: list[str],
    metadata: Mapping[str, dict[str, Any]],
    target: torch.device,
    mode: SaveMode,
) -> nn.Module:
    """Run ``restore`` of the algorithms saved in ``mode``, in the planned order."""
    for name in order:
        algorithm = config.registry.create(name)
        if algorithm.save_mode is mode:
            ctx = SmashContext(target.type, dict(metadata.get(name, {})))
            model = algorithm.restore(model, config[name], ctx)
    return model
