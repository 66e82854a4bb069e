"""A minimal WSGI toolkit for the store: request/response objects and a regex route table.

Kept separate from the handlers so each handler is a plain function ``(app, request, **groups) -> Response``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qs, urlencode

from pruna_hub.hubstore.errors import StoreError

_REASONS = {
    200: "OK",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
CHUNK = 1 << 20


class Request:
    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"].upper()
        self.path: str = environ.get("PATH_INFO") or "/"
        self.query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        self._body: bytes | None = None

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self.environ.get(key)
        return str(value) if value is not None else None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, []) + self.query.get(name + "[]", [])

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true", "yes")

    @property
    def base_url(self) -> str:
        host = self.header("Host") or f"{self.environ.get('SERVER_NAME')}:{self.environ.get('SERVER_PORT')}"
        return f"{self.environ.get('wsgi.url_scheme', 'http')}://{host}"

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return f"{self.base_url}{path}{query}"

    def stream(self) -> Iterator[bytes]:
        """The request body in chunks, whether sent with Content-Length or chunked."""
        stream: IO[bytes] = self.environ["wsgi.input"]
        if (self.header("Transfer-Encoding") or "").lower() == "chunked":
            yield from _dechunk(stream)
            return
        remaining = int(self.header("Content-Length") or 0)
        while remaining > 0:
            data = stream.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.stream())
        return self._body

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise StoreError(400, None, f"request body is not valid JSON: {e}") from e


def _dechunk(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return
        yield stream.read(size)
        stream.readline()


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.body, bytes) and self.length is None:
            self.length = len(self.body)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data).encode()
    return Response(status, body, {"Content-Type": "application/json", **(headers or {})})


def error_response(error: StoreError, extra: dict[str, str] | None = None) -> Response:
    headers = {"X-Error-Message": error.message.encode("ascii", "replace").decode(), **(extra or {})}
    if error.code:
        headers["X-Error-Code"] = error.code
    return json_response({**error.body, "error": error.message}, error.status, headers)


def status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Unknown')}"


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    operation: str
    handler: Handler


def route(methods: str, pattern: str, operation: str, handler: Handler) -> Route:
    """``pattern`` uses ``{name}`` for one path segment and ``{name:path}`` for the rest of the path."""
    regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", pattern)
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
    return Route(frozenset(methods.split("|")), re.compile(f"^{regex}$"), operation, handler)


def match(routes: Iterable[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in routes:
        found = candidate.pattern.match(path)
        if found and method in candidate.methods:
            return candidate, found.groupdict()
    return None
