"""What every step of a sync needs: settings, the Hub adapter, the catalogue, the recipes, a reporter."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from pruna_hub.hub_client import HubClient, RetryPolicy
from pruna_hub.recipes import RecipeBook, load_recipes
from pruna_hub.settings import Settings
from pruna_hub.sync.steps import ModelSteps

if TYPE_CHECKING:
    from registry_db import Catalogue


def worker_name() -> str:
    """Unique per process: the lease owner recorded on claimed jobs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def stderr_reporter(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class SyncContext:
    settings: Settings
    hub: HubClient
    catalogue: Catalogue
    book: RecipeBook
    device: str
    owner: str = field(default_factory=worker_name)
    report: Callable[[str], None] = stderr_reporter
    steps: ModelSteps = field(default_factory=ModelSteps)

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        report: Callable[[str], None] = stderr_reporter,
        retry: RetryPolicy | None = None,
    ) -> SyncContext:
        from registry_db import Catalogue

        hub = HubClient(endpoint=settings.hub_endpoint, token=settings.token, retry=retry)
        book = load_recipes(settings.recipe_dirs)
        catalogue = Catalogue.open(settings.database_url, namespace=settings.namespace)
        return cls(settings, hub, catalogue, book, settings.resolved_device(), report=report)

    @property
    def lease_for(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def close(self) -> None:
        self.catalogue.dispose()
