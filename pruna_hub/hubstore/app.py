"""The WSGI application: route, apply injected faults, authenticate, call the handler, render errors."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pruna_hub.hubstore import api_files, api_repos, api_upload
from pruna_hub.hubstore.auth import Principal, normalize_tokens, principal_for
from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.faults import Call, Fault, Faults
from pruna_hub.hubstore.storage import Storage
from pruna_hub.hubstore.wsgi import Request, Response, error_response, match, status_line

logger = logging.getLogger(__name__)
ROUTES = [*api_upload.ROUTES, *api_files.ROUTES, *api_repos.ROUTES]
StartResponse = Callable[..., Any]


class HubApp:
    """A WSGI app over one ``Storage``. Page sizes and the LFS threshold are small-able for tests."""

    def __init__(
        self,
        storage: Storage,
        *,
        tokens: Mapping[str, Principal | str] | None = None,
        page_size: int = 1000,
        tree_page_size: int = 1000,
        lfs_threshold: int = 10 * 1024 * 1024,
    ) -> None:
        self.storage = storage
        self.tokens = normalize_tokens(tokens)
        self.page_size = page_size
        self.tree_page_size = tree_page_size
        self.lfs_threshold = lfs_threshold
        self.faults = Faults()
        self.secret = secrets.token_bytes(32)
        self._calls: list[Call] = []
        self._calls_lock = threading.Lock()

    @property
    def calls(self) -> list[Call]:
        with self._calls_lock:
            return list(self._calls)

    def clear_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        req = Request(environ)
        response, operation = self._respond(req)
        with self._calls_lock:
            self._calls.append(Call(operation, req.method, req.path, response.status))
        headers = dict(response.headers)
        if response.length is not None:
            headers["Content-Length"] = str(response.length)
        start_response(status_line(response.status), list(headers.items()))
        body = [response.body] if isinstance(response.body, bytes) else response.body
        if req.method == "HEAD":
            return []
        return body

    def _respond(self, req: Request) -> tuple[Response, str]:
        found = match(ROUTES, req.method, req.path)
        if found is None:
            return error_response(StoreError(404, None, f"no route for {req.method} {req.path}")), "unknown"
        route, groups = found
        fault = self.faults.take(route.operation, req.method)
        if fault is not None and fault.status is not None:
            return _fault_response(fault), route.operation
        try:
            who = principal_for(req.header("Authorization"), self.tokens)
            response = route.handler(self, req, who, **groups)
        except StoreError as e:
            response = error_response(e)
        except Exception as e:  # a bug in the store must still answer like a server, not kill the thread
            logger.exception("hub store failed on %s %s", req.method, req.path)
            response = error_response(StoreError(500, None, f"internal error: {e!r}"))
        if fault is not None:
            response = _truncated(response)
        return response, route.operation


def _fault_response(fault: Fault) -> Response:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(int(fault.retry_after))
    return error_response(StoreError(fault.status or 500, None, fault.message), headers)


def _truncated(response: Response) -> Response:
    """Same headers and Content-Length, half the body."""
    data = response.body if isinstance(response.body, bytes) else b"".join(response.body)
    length = response.length if response.length is not None else len(data)

    def half() -> Iterator[bytes]:
        yield data[: len(data) // 2]

    return Response(response.status, half(), response.headers, length=length)
