"""Every error the service raises, in one place. Messages end with what to do next."""

from __future__ import annotations


class PrunaHubError(Exception):
    """Root of pruna_hub's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


# --- recipes ---------------------------------------------------------------------------------------------


class RecipeError(PrunaHubError, ValueError):
    """A recipe file is not valid; ``path`` and the dotted ``field`` (``smash.hqq.weight_bits``) say where."""

    def __init__(self, path: str, field: str, problem: str, hint: str = "Fix the recipe file.") -> None:
        self.path = path
        self.field = field
        self.problem = problem
        super().__init__(f"recipe {path}: {field}: {problem}. {hint}")


class RecipeConflictError(RecipeError):
    """Two recipes could both be chosen for one model and device with nothing to decide between them."""

    def __init__(self, path: str, field: str, problem: str, *, other: str) -> None:
        self.other = other
        super().__init__(path, field, problem, f"Give one of them (or {other}) a different `priority`.")


class NoRecipeError(PrunaHubError, LookupError):
    """No loaded recipe matches a model (a skip reason for discovery), or no recipe has a given name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


# --- model cards -----------------------------------------------------------------------------------------


class CardError(PrunaHubError, ValueError):
    """The data given to render a model card is not valid (names the field)."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"model card: {field} = {value!r}: {problem}.")
