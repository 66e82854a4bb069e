"""`pruna-hub ui`: serve the read-only web catalogue (``pruna_hub.web``) with uvicorn.

Thin: the app opens the catalogue read-only before the port is bound, so a missing or outdated catalogue
is one error line naming `pruna-hub db upgrade`, through the CLI's single error handler.
"""

from __future__ import annotations

import click

from pruna_hub.cli.options import database_url_option, namespace_option


@click.command("ui")
@database_url_option
@namespace_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--hub-url",
    envvar="HF_ENDPOINT",
    help="Hub the artifacts were published to, for plot images and card links (default $HF_ENDPOINT).",
)
def ui(database_url: str | None, namespace: str, host: str, port: int, hub_url: str | None) -> None:
    """Browse the catalogue in a web page: artifacts, metrics, comparisons, the discovery log.

    Also serves /healthz (JSON) and /metrics (Prometheus). Reads only: the catalogue is never created
    or written.
    """
    import uvicorn

    from pruna_hub.web import create_app

    app = create_app(database_url, namespace=namespace, hub_url=hub_url)
    click.echo(f"serving the catalogue {app.state.catalogue.url} on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
