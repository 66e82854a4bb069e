"""Every error the engine raises, in one place.

Errors carry the offending values as attributes so that callers (the CLI, the sync service) can record
them, and their messages end with what to do next. Input problems subclass ``ValueError``; failures while
running an algorithm subclass ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class SmashError(Exception):
    """Root of every error raised by ``smash``."""


# --- configuration ---------------------------------------------------------------------------------------


class SmashConfigError(SmashError, ValueError):
    """A SmashConfig (or its JSON form) is not valid."""


class UnknownAlgorithmError(SmashConfigError, LookupError):
    """An algorithm name is not registered."""

    def __init__(self, name: object, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown algorithm {name!r}; registered algorithms are: {', '.join(self.known) or '(none)'}. "
            "Use one of those names, or register a plugin under the 'smash.algorithms' entry point."
        )


class HyperparameterError(SmashConfigError):
    """A hyperparameter is unknown, of the wrong type or out of range."""

    def __init__(self, algorithm: str, field: str, value: object, allowed: str) -> None:
        self.algorithm = algorithm
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{algorithm}.{field} = {value!r} is not valid: {allowed}.")


class GroupConflictError(SmashConfigError):
    """Two algorithms of one exclusive group were requested together."""

    def __init__(self, group: str, algorithms: Sequence[str]) -> None:
        self.group = group
        self.algorithms = tuple(algorithms)
        super().__init__(
            f"at most one {group} may run, but the config asks for {', '.join(self.algorithms)}; "
            f"keep one of them."
        )


class IncompatibleAlgorithmsError(SmashConfigError):
    """Two requested algorithms declare that they cannot run together."""

    def __init__(self, first: str, second: str, reason: str = "") -> None:
        self.algorithms = (first, second)
        detail = f" ({reason})" if reason else ""
        super().__init__(f"algorithms {first!r} and {second!r} are incompatible{detail}; remove one of them.")


class OrderingCycleError(SmashConfigError):
    """The declared before/after constraints of the requested algorithms form a cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            f"the ordering constraints form a cycle: {' -> '.join(self.cycle)}; "
            "these algorithms cannot be ordered, remove one of them."
        )


class ConfigFormatError(SmashConfigError):
    """Serialized SmashConfig JSON has the wrong shape or format version."""

    def __init__(self, message: str, *, value: Any = None) -> None:
        self.value = value
        super().__init__(message)


# --- registry --------------------------------------------------------------------------------------------


class RegistryError(SmashError):
    """The algorithm registry was misused (a programming error, not user input)."""


class DuplicateAlgorithmError(RegistryError, ValueError):
    def __init__(self, name: str, existing: type, new: type) -> None:
        self.name = name
        super().__init__(
            f"algorithm name {name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}; "
            f"{new.__module__}.{new.__qualname__} must use another name."
        )


class AlgorithmDefinitionError(RegistryError, TypeError):
    """An algorithm class declares something impossible (unknown group, bad hyperparameter spec)."""


class PluginLoadError(RegistryError, ImportError):
    """A third-party algorithm entry point failed to import."""

    def __init__(self, entry_point: str, cause: BaseException) -> None:
        self.entry_point = entry_point
        super().__init__(
            f"the smash.algorithms entry point {entry_point!r} failed to load: {cause!r}; "
            "fix or uninstall the package that provides it."
        )


# --- applying --------------------------------------------------------------------------------------------


class NotApplicableError(SmashError, ValueError):
    """An algorithm cannot be applied to this model or on this device."""

    def __init__(self, algorithm: str, reason: str) -> None:
        self.algorithm = algorithm
        self.reason = reason
        super().__init__(f"algorithm {algorithm!r} does not apply: {reason}.")


class AlgorithmFailedError(SmashError, RuntimeError):
    """An algorithm raised while being applied; the smashed copy was discarded."""

    def __init__(self, algorithm: str, cause: BaseException, *, input_modified: bool) -> None:
        self.algorithm = algorithm
        self.input_modified = input_modified
        state = (
            "the input model was smashed in place and is now partially modified: reload it before reuse"
            if input_modified
            else "the input model is unchanged"
        )
        super().__init__(f"algorithm {algorithm!r} failed: {cause!r}; {state}.")


class BrokenSmashedModelError(SmashError, RuntimeError):
    """The smashed model's forward pass fails: some layer kind is not served by the algorithms applied."""

    def __init__(self, algorithms: Sequence[str], cause: BaseException) -> None:
        self.algorithms = tuple(algorithms)
        self.cause = cause
        super().__init__(
            f"after {', '.join(self.algorithms)} the model's forward pass fails ({type(cause).__name__}: "
            f"{cause}); these algorithms do not support some layer of this architecture. Remove them from "
            "the config (or skip the failing modules); the input model is unchanged unless inplace=True."
        )


# --- saving and loading ----------------------------------------------------------------------------------


class ArtifactError(SmashError, ValueError):
    """A saved smashed model (folder or Hub repo) cannot be loaded."""

    def __init__(self, location: str, problem: str, hint: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location}: {problem}. {hint}")


class UnsafeArtifactError(ArtifactError):
    """The artifact only offers weights in a format that could execute code (pickle)."""


class RemoteCodeError(UnsafeArtifactError):
    """A file of the folder asks transformers to import the repo's own Python (``auto_map``)."""

    def __init__(self, location: str, file: str) -> None:
        self.file = file
        super().__init__(
            location,
            f"{file} asks for remote code (auto_map)",
            "Remote code is never run: only models whose classes and tokenizer transformers ships load.",
        )


class ModelTooLargeError(ArtifactError):
    """config.json describes a model over the load budget; refused before anything is allocated."""

    def __init__(
        self, location: str, *, unit: str, count: int, limit: int, hint: str, at_least: bool = False
    ) -> None:
        self.unit = unit
        self.count = count  # a lower bound when ``at_least``: counting stopped there
        self.limit = limit
        size = f"{'at least ' if at_least else ''}{count:,} {unit}"
        super().__init__(
            location, f"config.json describes a model of {size}, over the limit of {limit:,}", hint
        )


class LoadSettingError(SmashError, ValueError):
    """An environment setting that governs loading has a bad value."""

    def __init__(self, name: str, value: str, allowed: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name}={value!r} is not valid: {allowed}. Fix or unset {name}.")


# --- evaluation ------------------------------------------------------------------------------------------


class EvaluationError(SmashError):
    """Root of the errors raised by ``smash.evaluation``."""


class EvaluationSettingsError(EvaluationError, ValueError):
    """An evaluation setting (or a serialized report) has a bad value."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"evaluation setting {field} = {value!r} is not valid: {allowed}.")


class EvaluationInputError(EvaluationError, ValueError):
    """The models or files handed to ``evaluate`` cannot be compared as asked."""

    def __init__(self, problem: str, hint: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}. {hint}")


# --- generation runtime (static_cache / torch_compile) ---------------------------------------------------


class GenerationInputError(SmashError, ValueError):
    """A generate() request the static-cache runtime cannot serve (too long, too many rows, bad option)."""


class UnsupportedLayerTypesError(NotApplicableError):
    """The model has attention layer types the static-cache runtime has no exact cache layer for."""

    def __init__(self, algorithm: str, layer_types: Iterable[str], supported: Iterable[str]) -> None:
        self.layer_types = tuple(sorted(layer_types))
        self.supported = tuple(supported)
        super().__init__(
            algorithm,
            f"the model has {', '.join(self.layer_types)} layers, and the static-cache runtime only serves "
            f"{', '.join(self.supported)} layers exactly; smash without static_cache (and generate with "
            "transformers' own generate)",
        )


# --- Hub -------------------------------------------------------------------------------------------------


class InvalidRepoIdError(SmashError, ValueError):
    """A Hub repo id is malformed (checked before any request is made)."""

    def __init__(self, repo_id: object, reason: str) -> None:
        self.repo_id = repo_id
        super().__init__(
            f"invalid Hub repo id {repo_id!r}: {reason}. Use 'namespace/name' (letters, digits, '-', '_', "
            "'.'), or pass an existing local folder."
        )


# --- llama.cpp backend (llama_cpp) -----------------------------------------------------------------------


class LlamaCppError(SmashError, RuntimeError):
    """llama.cpp (through llama-cpp-python) failed to quantize, load or run a GGUF file."""

    def __init__(self, step: str, path: str, hint: str) -> None:
        self.step = step
        self.path = path
        super().__init__(f"llama.cpp could not {step} {path}. {hint}")
