"""Keeps a job's lease alive while a long step (download, smash, compile, evaluate) runs."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from registry_db.errors import CatalogueError, LeaseLostError
from registry_db.store import DEFAULT_LEASE, Lease, ServiceStore

if TYPE_CHECKING:
    from registry_db import Catalogue

logger = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread renewing ``lease`` every third of its duration, in its own transaction.

    A lost lease is remembered (``lost``) and stops the thread; the job's next catalogue write then
    raises LeaseLostError in the worker. A database outage is logged and retried at the next beat: the
    lease only expires if the outage outlasts it.
    """

    def __init__(self, catalogue: Catalogue, lease: Lease, *, lease_for: timedelta = DEFAULT_LEASE) -> None:
        self.catalogue = catalogue
        self.lease = lease
        self.lease_for = lease_for
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{lease.job_id}", daemon=True)

    def _run(self) -> None:
        interval = self.lease_for.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.lease = ServiceStore(self.catalogue).renew(self.lease, lease_for=self.lease_for)
            except LeaseLostError as e:
                self.lost = e
                return
            except CatalogueError as e:
                logger.warning("heartbeat of job %s failed, retrying: %s", self.lease.job_id, e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
