"""Errors of the web catalogue. Bad query parameters are a ``ValueError`` that says what is allowed."""

from __future__ import annotations

from pruna_hub.errors import PrunaHubError


class BadQueryError(PrunaHubError, ValueError):
    """A query parameter of a page cannot be used (shown to the user as a 400 page)."""

    exit_code = 2

    def __init__(self, parameter: str, value: str, allowed: str) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        super().__init__(f"query parameter {parameter}={value!r} is not valid; use {allowed}.")
