"""Running a store: ``LocalHub`` bundles storage and app, and points huggingface_hub at it.

Two ways, both context managers that restore huggingface_hub's settings on exit:

- ``hub.install()``: in-process, no socket. Sets huggingface_hub's client factory to an httpx2
  ``WSGITransport`` over the app and patches ``huggingface_hub.constants`` (endpoint, Xet off).
- ``hub.serve(port=0)``: a threaded WSGI server on 127.0.0.1; yields the endpoint. Combine with
  ``point_client_at(endpoint)`` to use it from this process, or pass ``HF_ENDPOINT`` to a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import socketserver
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pruna_hub.hubstore.app import HubApp
from pruna_hub.hubstore.auth import Principal
from pruna_hub.hubstore.faults import Call, Faults
from pruna_hub.hubstore.storage import Storage

IN_PROCESS_ENDPOINT = "http://hub.local"


def _checked_transport(app: Any, host: str) -> Any:
    """A WSGITransport that, like a socket client, fails a body shorter than its Content-Length.

    Without it an in-process truncated body would look complete, so the client could not react the way it
    does over a socket (resume with Range, or raise ``httpx2.RemoteProtocolError``). Requests for any other
    host fail to connect, as they would offline, instead of silently reaching the store.
    """
    import httpx2

    class _Checked(httpx2.SyncByteStream):
        def __init__(self, inner: Any, expected: int) -> None:
            self.inner, self.expected = inner, expected

        def __iter__(self) -> Iterator[bytes]:
            received = 0
            for chunk in self.inner:
                received += len(chunk)
                yield chunk
            if received < self.expected:
                raise httpx2.RemoteProtocolError(
                    f"peer closed connection without sending complete message body "
                    f"(received {received} bytes, expected {self.expected})"
                )

        def close(self) -> None:
            self.inner.close()

    class _Transport(httpx2.WSGITransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            if request.url.host != host:
                raise httpx2.ConnectError(f"in-process Hub store serves {host} only, not {request.url.host}")
            response = super().handle_request(request)
            length = response.headers.get("Content-Length")
            if request.method == "HEAD" or length is None:
                return response
            stream = _Checked(response.stream, int(length))
            return httpx2.Response(response.status_code, headers=response.headers, stream=stream)

    return _Transport(app=app)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # requests are in LocalHub.calls instead
        pass


@contextlib.contextmanager
def point_client_at(
    endpoint: str, *, transport_app: Any = None, cache_dir: str | None = None
) -> Iterator[str]:
    """Make huggingface_hub in this process talk to ``endpoint`` (through ``transport_app`` if given).

    Patches ``huggingface_hub.constants`` (ENDPOINT, the resolve URL template, HF_HUB_DISABLE_XET, and
    HF_HUB_CACHE when ``cache_dir`` is given), the default ``HfApi`` behind the top-level functions
    (``upload_file``, ``ModelCard.push_to_hub``...) and the client factory; all restored on exit. An
    ``HfApi`` created inside the block uses the endpoint; one created before keeps its own.
    """
    import httpx2
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    names = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HUB_DISABLE_XET", "HF_HUB_CACHE")
    saved = {name: getattr(constants, name) for name in names}
    saved_default_endpoint = hf_api.api.endpoint  # behind the top-level upload_file, create_commit, ...
    saved_factory = _http._GLOBAL_CLIENT_FACTORY
    saved_env = os.environ.get("HF_HUB_DISABLE_XET")
    constants.ENDPOINT = endpoint.rstrip("/")
    constants.HUGGINGFACE_CO_URL_TEMPLATE = constants.ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}"
    hf_api.api.endpoint = constants.ENDPOINT
    constants.HF_HUB_DISABLE_XET = True
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    if cache_dir is not None:
        constants.HF_HUB_CACHE = cache_dir
    if transport_app is not None:
        _http.set_client_factory(
            lambda: httpx2.Client(
                transport=_checked_transport(transport_app, httpx2.URL(constants.ENDPOINT).host),
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
            )
        )
    else:
        _http.set_client_factory(_http.default_client_factory)
    try:
        yield constants.ENDPOINT
    finally:
        for name, value in saved.items():
            setattr(constants, name, value)
        hf_api.api.endpoint = saved_default_endpoint
        _http.set_client_factory(saved_factory)
        if saved_env is None:
            os.environ.pop("HF_HUB_DISABLE_XET", None)
        else:
            os.environ["HF_HUB_DISABLE_XET"] = saved_env


class LocalHub:
    """A Hub-compatible store in ``root``; see the package docstring for the full API."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        tokens: Mapping[str, Principal | str] | None = None,
        page_size: int = 1000,
        tree_page_size: int = 1000,
        lfs_threshold: int = 10 * 1024 * 1024,
    ) -> None:
        self.storage = Storage(root)
        self.app = HubApp(
            self.storage,
            tokens=tokens,
            page_size=page_size,
            tree_page_size=tree_page_size,
            lfs_threshold=lfs_threshold,
        )

    @property
    def faults(self) -> Faults:
        return self.app.faults

    @property
    def calls(self) -> list[Call]:
        return self.app.calls

    def operations(self) -> list[str]:
        """The operation names of every call so far, in order (handy in assertions)."""
        return [call.operation for call in self.calls]

    @contextlib.contextmanager
    def install(self, *, endpoint: str = IN_PROCESS_ENDPOINT, cache_dir: str | None = None) -> Iterator[str]:
        """In-process: huggingface_hub's requests go straight to the app. Yields the endpoint to use."""
        with point_client_at(endpoint, transport_app=self.app, cache_dir=cache_dir) as url:
            yield url

    @contextlib.contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on a loopback port (0 = a free one) in a background thread; yields ``http://host:port``."""
        server = make_server(
            host, port, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="pruna-hub-store", daemon=True
        )
        thread.start()
        try:
            yield f"http://{host}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def serve_forever(self, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Blocking server for ``pruna-hub hub serve``."""
        with make_server(
            host, port, self.app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        ) as server:
            server.serve_forever()
