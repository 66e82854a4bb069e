"""Fault injection: make a named call fail a given number of times, and record every call.

Operation names (what ``LocalHub.calls`` records and ``Faults.add`` takes): ``whoami``, ``list_models``,
``model_info``, ``tree``, ``resolve`` (HEAD and GET of a file), ``create_repo``, ``delete_repo``,
``settings``, ``validate_yaml``, ``preupload``, ``lfs_batch``, ``lfs_upload``, ``lfs_verify``, ``commit``,
``tag``, ``delete_tag``, ``branch``, ``delete_branch``, ``refs``, ``commits``, ``agent_harnesses`` (a registry
the client fetches once a day); ``unknown`` for a request no route matches (answered 404).

A status fault answers instead of the real handler (nothing changes in the store). A ``truncate`` fault runs
the real handler and cuts its body in half while keeping the full ``Content-Length``: over a socket the
client sees a connection closed mid-body, in-process it sees a short (for JSON: unparsable) body.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

OPERATIONS = frozenset(
    {
        "whoami", "list_models", "model_info", "tree", "resolve", "create_repo", "delete_repo", "settings",
        "validate_yaml", "preupload", "lfs_batch", "lfs_upload", "lfs_verify", "commit", "tag", "delete_tag",
        "branch", "delete_branch", "refs", "commits",
    }
)  # fmt: skip
_MESSAGES = {
    409: "Conflict: another operation is in progress (injected fault)",
    412: "A commit has happened since. Please refresh and try again. (injected fault)",
    429: "Too Many Requests (injected fault)",
    500: "Internal Error (injected fault)",
    502: "Bad Gateway (injected fault)",
    503: "Service Unavailable (injected fault)",
}


@dataclass
class Fault:
    operation: str
    status: int | None  # None for a truncated body
    remaining: int
    retry_after: float | None = None
    method: str | None = None

    @property
    def message(self) -> str:
        return _MESSAGES.get(self.status or 0, f"HTTP {self.status} (injected fault)")


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    path: str
    status: int


class Faults:
    """Thread-safe list of pending faults; each matching request consumes one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(
        self,
        operation: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``operation`` with ``status`` (429 gets Retry-After)."""
        if status == 429 and retry_after is None:
            retry_after = 0
        with self._lock:
            self._pending.append(Fault(operation, status, times, retry_after, method))

    def truncate(self, operation: str, *, times: int = 1, method: str | None = None) -> None:
        with self._lock:
            self._pending.append(Fault(operation, None, times, None, method))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, operation: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.operation == operation and fault.method in (None, method) and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._pending)
