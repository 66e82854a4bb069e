"""What an algorithm declares, and the two things it does: apply itself, and restore itself at load time.

An algorithm is a small class in its own module under ``smash/algorithms/``, registered with
``@registry.register``. Everything the engine needs to plan, validate, save and load is declared on the
class; nothing central knows about particular algorithms.

Ordering constraints name either algorithms (``"hqq"``) or whole groups (``"group:compiler"``), so that a
new quantizer automatically runs before every compiler without editing the compiler.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from smash.errors import AlgorithmDefinitionError, HyperparameterError


class Group(enum.StrEnum):
    """Algorithm families. The declaration order is the tie-break order of the scheduler."""

    PRUNER = "pruner"
    FACTORIZER = "factorizer"
    DISTILLER = "distiller"
    QUANTIZER = "quantizer"
    KERNEL = "kernel"
    CACHER = "cacher"
    BATCHER = "batcher"
    COMPILER = "compiler"


class SaveMode(enum.StrEnum):
    """How an algorithm's effect survives ``save_pretrained`` / ``from_pretrained``.

    WEIGHTS: the result lives in the saved tensors; at load the algorithm only rebuilds the module
    structure (``restore``) before the tensors are loaded into it.
    REAPPLY: nothing is saved; the algorithm runs again on the loaded model (torch.compile, caches).
    """

    WEIGHTS = "weights"
    REAPPLY = "reapply"


_SCALARS: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Hyperparameter:
    """One typed, bounded hyperparameter with a default."""

    name: str
    type: type
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in _SCALARS:
            raise AlgorithmDefinitionError(f"hyperparameter {self.name!r}: unsupported type {self.type!r}")

    def allowed(self) -> str:
        """Human-readable description of the accepted values, used in error messages and docs."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = _SCALARS[self.type]
            if self.minimum is not None and self.maximum is not None:
                text += f" in [{self.minimum}, {self.maximum}]"
            elif self.minimum is not None:
                text += f" >= {self.minimum}"
            elif self.maximum is not None:
                text += f" <= {self.maximum}"
        return text + (" or null" if self.nullable else "")

    def validate(self, algorithm: str, value: Any) -> Any:
        """Return the value, normalised (an int accepted for a float), or raise HyperparameterError."""
        if value is None and self.nullable:
            return None
        if not self._has_type(value):
            raise HyperparameterError(algorithm, self.name, value, self.allowed())
        if self.type is float:
            value = float(value)
            if not math.isfinite(value):  # NaN compares false with every bound and would pass them
                raise HyperparameterError(algorithm, self.name, value, self.allowed() + " (a finite number)")
        if self.choices is not None and value not in self.choices:
            raise HyperparameterError(algorithm, self.name, value, self.allowed())
        if self.minimum is not None and value < self.minimum:
            raise HyperparameterError(algorithm, self.name, value, self.allowed())
        if self.maximum is not None and value > self.maximum:
            raise HyperparameterError(algorithm, self.name, value, self.allowed())
        return value

    def _has_type(self, value: Any) -> bool:
        if self.type is bool:
            return isinstance(value, bool)
        if isinstance(value, bool):  # bool is an int subclass; never accept True as 1
            return False
        if self.type is float:
            return isinstance(value, int | float)
        return isinstance(value, self.type)


@dataclass
class SmashContext:
    """What an algorithm sees besides the model while it applies or restores itself.

    ``metadata`` is the algorithm's own JSON-serializable record: written by ``apply`` and saved in
    smash_config.json, handed back to ``restore`` at load time (e.g. which layers were quantized).
    """

    device: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Algorithm:
    """Base class of every algorithm. Subclasses set the class attributes and override ``apply``."""

    name: ClassVar[str]
    group: ClassVar[Group]
    description: ClassVar[str] = ""
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    hyperparameters: ClassVar[tuple[Hyperparameter, ...]] = ()
    # Algorithm names or "group:<group>" references.
    runs_before: ClassVar[frozenset[str]] = frozenset()
    runs_after: ClassVar[frozenset[str]] = frozenset()
    incompatible_with: ClassVar[frozenset[str]] = frozenset()
    # Most groups allow one algorithm at a time; an algorithm that composes with its group peers says so.
    exclusive: ClassVar[bool] = True
    save_mode: ClassVar[SaveMode] = SaveMode.WEIGHTS

    # --- declarations used by the planner -----------------------------------------------------------

    @classmethod
    def hyperparameter(cls, name: str) -> Hyperparameter | None:
        return next((h for h in cls.hyperparameters if h.name == name), None)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {h.name: h.default for h in cls.hyperparameters}

    @classmethod
    def validate_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults and validate every value; unknown keys are an error naming what exists."""
        known = {h.name for h in cls.hyperparameters}
        for key in params:
            if key not in known:
                allowed = "known hyperparameters are " + (", ".join(sorted(known)) or "(none)")
                raise HyperparameterError(cls.name, str(key), params[key], allowed)
        resolved = cls.defaults()
        for key, value in params.items():
            hp = cls.hyperparameter(key)
            assert hp is not None  # checked above
            resolved[key] = hp.validate(cls.name, value)
        cls.check_params(resolved)
        return resolved

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Cross-field checks; raise HyperparameterError. Override when fields constrain each other."""

    # --- behaviour ----------------------------------------------------------------------------------

    def applies_to(self, model: nn.Module, params: Mapping[str, Any]) -> str | None:
        """None when the algorithm can be applied to ``model``, otherwise the reason it cannot."""
        return None

    def apply(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        """Transform the model and return it (it may be the same object)."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def restore(self, model: nn.Module, params: Mapping[str, Any], ctx: SmashContext) -> nn.Module:
        """Rebuild at load time.

        WEIGHTS algorithms get the freshly built base architecture, before the saved tensors are loaded,
        and must give it the module structure (and dtypes) the saved tensors expect. REAPPLY algorithms
        get the fully loaded model. The default does nothing for WEIGHTS and re-applies for REAPPLY.
        """
        if self.save_mode is SaveMode.REAPPLY:
            return self.apply(model, params, ctx)
        return model
