"""The read-only web catalogue: artifacts, one page per artifact, comparisons, the discovery log, health.

Stack: Starlette + Jinja2, served by uvicorn. Starlette is a small, fully typed and actively maintained
ASGI toolkit (the core FastAPI is built on): plain routes, sync endpoints run in its thread pool (the
catalogue's SQLAlchemy reads are synchronous, so no async driver is needed), Jinja2 templating built in.
Jinja2 autoescapes everything the catalogue holds (repo ids, skip reasons and cards come from the Hub and
are untrusted). uvicorn is Starlette's reference server and is what the tests run. Flask + waitress would
have served as well; Starlette was chosen for its typing and because the project already speaks ASGI/WSGI
through httpx2 transports in tests.

Pages (every one a GET; nothing here writes):

| URL | page |
|---|---|
| ``/`` | artifacts, newest first, filtered by the query (below) |
| ``/artifacts/{id}`` | one artifact: card, metrics base vs smashed, plot, config, lineage, its base's jobs |
| ``/bases/{id}/compare`` | the artifacts of one base side by side (``artifact=ID``, repeated, picks some) |
| ``/discovery`` | jobs discovery queued, skipped (why) or that failed; operators' actions; ``state`` |
| ``/healthz`` | JSON: database reachable, schema at head, last discovery pass; 503 when not healthy |
| ``/metrics`` | Prometheus text: jobs by state, last discovery pass, ``pruna_hub.metrics.REGISTRY`` |

The list's query: ``q`` (repo id text), ``family``, ``algorithm``, ``device``, ``state``,
``max_decode_ms``, ``min_top1``, ``min_generation`` (thresholds), ``offset``, ``limit``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from pruna_hub.metrics import CatalogueSnapshot, scrape_registry
from pruna_hub.web.errors import BadQueryError
from pruna_hub.web.format import FILTERS
from registry_db import browse
from registry_db.errors import CatalogueError, CatalogueValueError, DatabaseUnreachableError, NotFoundError
from registry_db.migrate import SchemaState, schema_status
from registry_db.models import DEFAULT_NAMESPACE, JobState
from registry_db.session import Catalogue

# Query parameter -> (metric, which bound): the list's metric thresholds.
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_decode_ms": ("decode_latency_ms", "high"),
    "min_top1": ("top1_agreement", "low"),
    "min_generation": ("generation_agreement", "low"),
}
PAGE_SIZE = 50


@dataclass(frozen=True)
class Site:
    """What every page needs: the open catalogue, its namespace, where the Hub is (for links and plots)."""

    catalogue: Catalogue
    namespace: str
    hub_url: str | None
    templates: Jinja2Templates

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context |= {"namespace": self.namespace, "hub_url": self.hub_url}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)


def create_app(
    database_url: str | None, *, namespace: str = DEFAULT_NAMESPACE, hub_url: str | None = None
) -> Starlette:
    """The app over the catalogue at ``database_url`` (None: ``PRUNA_HUB_DATABASE_URL`` or the default).

    The catalogue is opened here, read-only, so a missing or outdated one fails before a port is bound:
    ``CatalogueMissingError`` or ``SchemaBehindError``, both naming `pruna-hub db upgrade`.
    """
    catalogue = browse.open_read_only(database_url, namespace=namespace)
    site = Site(catalogue, namespace, hub_url.rstrip("/") if hub_url else None, _templates())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            catalogue.dispose()

    routes = [
        Route("/", _page(site, artifacts_page), name="artifacts"),
        Route("/artifacts/{artifact_id:int}", _page(site, artifact_page), name="artifact"),
        Route("/bases/{base_id:int}/compare", _page(site, compare_page), name="compare"),
        Route("/discovery", _page(site, discovery_page), name="discovery"),
        Route("/healthz", _page(site, healthz), name="healthz"),
        Route("/metrics", _page(site, metrics), name="metrics"),
        # Browsers ask for it beside plain-text and JSON pages; an empty answer is not an error.
        Route("/favicon.ico", lambda _request: Response(status_code=204), name="favicon"),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: _handler(site, None),
        BadQueryError: _handler(site, 400),
        CatalogueValueError: _handler(site, 400),
        NotFoundError: _handler(site, 404),
        DatabaseUnreachableError: _handler(site, 503),
        CatalogueError: _handler(site, 500),
        DBAPIError: _handler(site, 503),  # e.g. a SQLite file removed while the UI runs
    }
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.catalogue = catalogue
    return app


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pruna_hub.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


def _page(site: Site, endpoint: Callable[[Site, Request], Response]) -> Callable[[Request], Response]:
    """A sync endpoint bound to the site (Starlette runs it in its thread pool)."""

    def page(request: Request) -> Response:
        return endpoint(site, request)

    page.__name__ = endpoint.__name__
    return page


def _handler(site: Site, status: int | None) -> Callable[[Request, Exception], Response]:
    def handle(request: Request, error: Exception) -> Response:
        code = status or (error.status_code if isinstance(error, HTTPException) else 500)
        message = error.detail if isinstance(error, HTTPException) else _first_line(error)
        return site.render(request, "error.html", status_code=code, code=code, message=message)

    return handle


# --- pages --------------------------------------------------------------------------------------------------


def artifacts_page(site: Site, request: Request) -> Response:
    params = request.query_params
    filters = list_filters(params, site.namespace)
    offset = _int(params, "offset", 0, minimum=0)
    limit = _int(params, "limit", PAGE_SIZE, minimum=1, maximum=browse.MAX_LIMIT)
    with site.catalogue.read_session() as session:
        page = browse.list_artifacts(session, filters, offset=offset, limit=limit)
        choices = browse.filter_choices(session, site.namespace)
    query = {k: v for k, v in params.items() if k not in ("offset",) and v}
    return site.render(
        request,
        "artifacts.html",
        page=page,
        choices=choices,
        states=[s.value for s in JobState],
        params=params,
        query=query,
        metrics=browse.LIST_METRICS,
    )


def list_filters(params: Any, namespace: str) -> browse.ArtifactFilters:
    """The list's query parameters as filters; a bad number is a BadQueryError that says what is allowed."""
    bounds = []
    for parameter, (metric, side) in THRESHOLDS.items():
        value = _float(params, parameter)
        if value is not None:
            bounds.append(browse.MetricBound(metric, **{side: value}))
    return browse.ArtifactFilters(
        namespace=namespace,
        search=params.get("q") or None,
        family=params.get("family") or None,
        algorithm=params.get("algorithm") or None,
        device=params.get("device") or None,
        state=params.get("state") or None,
        bounds=tuple(bounds),
    )


def artifact_page(site: Site, request: Request) -> Response:
    artifact_id = int(request.path_params["artifact_id"])
    with site.catalogue.read_session() as session:
        detail = browse.artifact_detail(session, artifact_id, namespace=site.namespace)
    artifact = detail["artifact"]
    plot_url = None
    if detail["plot_file"] and site.hub_url:
        plot_url = (
            f"{site.hub_url}/{artifact['repo_id']}/resolve/{artifact['commit_sha']}/{detail['plot_file']}"
        )
    return site.render(request, "artifact.html", d=detail, plot_url=plot_url)


def compare_page(site: Site, request: Request) -> Response:
    base_id = int(request.path_params["base_id"])
    picked = [_parse_int("artifact", v) for v in request.query_params.getlist("artifact") if v]
    with site.catalogue.read_session() as session:
        comparison = browse.compare_artifacts(session, base_id, picked, namespace=site.namespace)
    return site.render(request, "compare.html", c=comparison)


def discovery_page(site: Site, request: Request) -> Response:
    state = request.query_params.get("state") or None
    with site.catalogue.read_session() as session:
        jobs = browse.discovery_log(session, namespace=site.namespace, state=state)
        events = browse.recent_events(session, namespace=site.namespace)
        counts = browse.job_counts(session, namespace=site.namespace)
        last = browse.last_discovery_at(session, namespace=site.namespace)
    return site.render(
        request, "discovery.html", jobs=jobs, events=events, counts=counts, last=last, state=state
    )


def healthz(site: Site, _request: Request) -> Response:
    """200 when the database answers and its schema is this code's head; 503 (with why) otherwise."""
    body: dict[str, Any] = {"namespace": site.namespace, "database": {"url": site.catalogue.url}}
    try:
        status = schema_status(site.catalogue.engine)
        with site.catalogue.read_session() as session:
            last = browse.last_discovery_at(session, namespace=site.namespace)
    except (CatalogueError, DBAPIError) as e:
        body |= {"status": "error", "error": _first_line(e), "schema": None, "last_discovery_at": None}
        body["database"]["reachable"] = False
        return JSONResponse(body, status_code=503)
    at_head = status.state is SchemaState.CURRENT
    body["database"]["reachable"] = True
    body |= {
        "status": "ok" if at_head else "error",
        "schema": status.to_dict() | {"at_head": at_head},
        "last_discovery_at": None if last is None else last.isoformat(),
    }
    return JSONResponse(body, status_code=200 if at_head else 503)


def metrics(site: Site, _request: Request) -> Response:
    def read() -> CatalogueSnapshot:
        with site.catalogue.read_session() as session:
            return CatalogueSnapshot(
                browse.job_counts(session, namespace=site.namespace),
                browse.last_discovery_at(session, namespace=site.namespace),
            )

    return Response(generate_latest(scrape_registry(read)), media_type=CONTENT_TYPE_LATEST)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


# --- query parameters ---------------------------------------------------------------------------------------


def _float(params: Any, name: str) -> float | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadQueryError(name, raw, "a number such as 20 or 0.9") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadQueryError(name, raw, "a finite number")
    return value


def _int(params: Any, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    value = _parse_int(name, raw)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise BadQueryError(name, raw, f"an integer at least {minimum}{upper}")
    return value


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise BadQueryError(name, raw, "an integer") from None
