"""Every error the service raises, in one place. Messages end with what to do next."""

from __future__ import annotations


class PrunaHubError(Exception):
    """Root of pruna_hub's errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1
