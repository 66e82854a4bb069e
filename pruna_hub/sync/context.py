"""What every step of a sync needs: settings, the Hub adapter, the catalogue, the recipes, a reporter."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pruna_hub.hub_client import HubClient, RetryPolicy
from pruna_hub.recipes import Recipe, RecipeBook, load_recipes
from pruna_hub.settings import Settings
from pruna_hub.sync.steps import ModelSteps
from registry_db.store import ServiceStore, retry_unreachable

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
        catalogue = retry_unreachable(
            lambda: Catalogue.open(settings.database_url, namespace=settings.namespace), report=report
        )
        return cls(settings, hub, catalogue, book, settings.resolved_device(), report=report)

    @property
    def store(self) -> ServiceStore:
        """The catalogue's domain operations (each its own transaction, retried on a lost connection)."""
        return ServiceStore(self.catalogue, report=self.report)

    @property
    def lease_for(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def rank_recipes(self, recipes: Sequence[Recipe], model_config: Mapping[str, Any]) -> tuple[Recipe, str]:
        """The recipe of a ``rank_by`` tie that decodes fastest on this host, and why (recipes.ranking)."""
        from pruna_hub.recipes.ranking import TimingStore, choose, describe, rank

        names = ", ".join(r.name for r in recipes)
        self.report(f"ranking {names} by decode latency on this host (measured once per model shape)")
        timings = rank(
            recipes,
            model_config,
            measure=lambda config, candidates: self.steps.time_decode(config, candidates, device=self.device),
            store=TimingStore(),
            device=self.device,
        )
        chosen = choose(recipes, timings)
        why = describe(chosen, timings)
        self.report(f"chose {why}")
        return chosen, why

    def close(self) -> None:
        self.catalogue.dispose()
