"""The read-only web catalogue behind `pruna-hub ui`: see ``pruna_hub.web.app``."""

from __future__ import annotations

from pruna_hub.web.app import create_app

__all__ = ["create_app"]
