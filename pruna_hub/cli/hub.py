"""`pruna-hub hub serve`: run the Hub-compatible local store on a loopback port.

Point any huggingface_hub client at it with ``HF_ENDPOINT=http://127.0.0.1:PORT HF_HUB_DISABLE_XET=1``.
Thin: the store lives in ``pruna_hub.hubstore``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import click

from pruna_hub.errors import ServeError
from pruna_hub.hubstore import LocalHub, Principal


def parse_token(spec: str) -> tuple[str, Principal]:
    """``TOKEN:USER[:ORG,ORG...]`` -> (token, principal with write access)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise click.BadParameter(f"{spec!r} is not TOKEN:USER or TOKEN:USER:ORG1,ORG2", param_hint="--token")
    orgs = tuple(o for o in parts[2].split(",") if o) if len(parts) == 3 else ()
    return parts[0], Principal(parts[1], orgs=orgs)


@click.group("hub")
def hub() -> None:
    """The local Hub-compatible model store."""


@hub.command("serve")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder holding the store (created if missing).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="TOKEN:USER[:ORGS]",
    help="A write token (repeatable). Without any, the store is open: anyone may write.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="OPERATION:STATUS[:TIMES[:RETRY_AFTER]]",
    help="Answer the next TIMES (default 1) calls of OPERATION (model_info, list_models, tree, resolve, "
    "commit, tag, ...) with HTTP STATUS, for testing clients against failures (repeatable).",
)
@click.option(
    "--truncate",
    "truncations",
    multiple=True,
    metavar="OPERATION[:TIMES]",
    help="Cut the body of the next TIMES answers of OPERATION short (repeatable).",
)
def serve(
    root: Path,
    host: str,
    port: int,
    tokens: tuple[str, ...],
    faults: tuple[str, ...],
    truncations: tuple[str, ...],
) -> None:
    """Serve the store until interrupted."""
    store = LocalHub(root, tokens=dict(parse_token(t) for t in tokens) if tokens else None)
    for spec in faults:
        operation, status, times, retry_after = parse_fault(spec)
        store.faults.add(operation, status, times=times, retry_after=retry_after)
    for spec in truncations:
        operation, _, times, _ = parse_fault(f"{spec.split(':')[0]}:200:{spec.partition(':')[2] or 1}")
        store.faults.truncate(operation, times=times)
    _check_free(host, port)
    click.echo(
        f"serving {root} at http://{host}:{port} (set HF_ENDPOINT to it and HF_HUB_DISABLE_XET=1)", err=True
    )
    try:
        store.serve_forever(host=host, port=port)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except OSError as e:  # taken between the check and the bind
        raise ServeError(host, port, e.strerror or str(e)) from e


def parse_fault(spec: str) -> tuple[str, int, int, float | None]:
    """``OPERATION:STATUS[:TIMES[:RETRY_AFTER]]`` -> its parts, or a usage error saying what is allowed."""
    from pruna_hub.hubstore.faults import OPERATIONS

    parts = spec.split(":")
    try:
        if not 2 <= len(parts) <= 4:
            raise ValueError("wrong number of parts")
        operation, status = parts[0], int(parts[1])
        times = int(parts[2]) if len(parts) > 2 else 1
        retry_after = float(parts[3]) if len(parts) > 3 else None
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; known: {', '.join(sorted(OPERATIONS))}")
        if not 100 <= status <= 599 or times < 1 or (retry_after is not None and not 0 <= retry_after < 1e6):
            raise ValueError("STATUS is an HTTP status, TIMES >= 1, RETRY_AFTER seconds >= 0")
    except ValueError as e:
        raise click.BadParameter(
            f"{spec!r}: {e} (expected OPERATION:STATUS[:TIMES[:RETRY_AFTER]])",
            param_hint="--fault/--truncate",
        ) from e
    return operation, status, times, retry_after


def _check_free(host: str, port: int) -> None:
    """Bind once before saying "serving", so a busy port or a bad host is one clear error, not a
    message that the store is up followed by a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            probe.bind(address)
    except OSError as e:
        raise ServeError(host, port, e.strerror or str(e)) from e
