"""The service's one door to a Hub: a small adapter over ``HfApi`` (huggingface.co or the local store).

Two jobs beyond calling huggingface_hub:
- ``translate``: huggingface_hub's typed errors (and dropped connections, truncated answers) become the
  outcomes of ``pruna_hub.errors`` in ONE place, so the sync service records ``not_found``, ``gated``,
  ``rate_limited``, ``transient``, ``conflict``... instead of parsing exceptions;
- ``RetryPolicy``: ONE retry layer. Bounded exponential backoff honouring ``Retry-After``, within a total
  time budget, for what huggingface_hub does not retry itself: every error of the calls it never retries
  (``model_info``, ``create_repo``, ``create_commit``, tags, refs), and for the calls it does retry
  (listing, tree, downloads) only a truncated JSON answer, which it cannot see. An endpoint that cannot be
  reached at all (connection refused, unknown host, malformed URL) is never retried: it fails at once as
  ``HubUnreachableError``, and discovery checks it with one unretried request before listing (listing is
  retried by huggingface_hub for ~24 s on a refused port). ``sleep`` is injectable so tests never wait.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, product, takewhile
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo, RepoFile

from pruna_hub import metrics
from pruna_hub.errors import (
    HubConflictError,
    HubError,
    HubGatedError,
    HubNotFoundError,
    HubPermissionError,
    HubRateLimitedError,
    HubRejectedError,
    HubTransientError,
    HubUnreachableError,
)

logger = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")
# What ``check_reachable`` asks for: any answer, a 404 included, says the endpoint is there.
PROBE_REPO = "pruna-hub/endpoint-check"
LIST_FIELDS = [
    "createdAt",
    "lastModified",
    "sha",
    "gated",
    "private",
    "pipeline_tag",
    "library_name",
    "tags",
    "safetensors",
    "config",
    "cardData",
]


def _or_none(values: Iterable[str]) -> list[str | None]:
    """No filter given = one query without that filter."""
    return list(values) or [None]


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes: huggingface_hub wraps some failures (``RuntimeError`` around an LFS upload
    error, ``LocalEntryNotFoundError`` around a failed HEAD, ``ValueError`` around a forced download)."""
    links: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in links and len(links) < 16:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def translate(
    error: BaseException, *, operation: str, repo_id: str | None, endpoint: str | None = None
) -> HubError | None:
    """The outcome for a failed Hub call; ``None`` for an error that is not about the Hub (a bug)."""
    links = _chain(error)
    for link in links:
        if isinstance(link, LocalEntryNotFoundError):
            continue  # only says "not in the cache either"; the Hub's reason, if any, is further down
        found = _translate_one(link, operation, repo_id, endpoint)
        if found is not None:
            return found
    if any(isinstance(link, LocalEntryNotFoundError) for link in links):
        return HubTransientError(
            operation,
            repo_id,
            "the Hub could not be reached and nothing is cached",
            "Retry when the Hub answers.",
        )
    return None


def _translate_one(
    error: BaseException, operation: str, repo_id: str | None, endpoint: str | None = None
) -> HubError | None:
    if isinstance(error, GatedRepoError):  # subclass of RepositoryNotFoundError: must come first
        return HubGatedError(
            operation, repo_id, "the repo is gated", "Request access with this token's user."
        )
    if isinstance(error, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError):
        return HubNotFoundError(operation, repo_id, type(error).__name__, "Check the id, revision and token.")
    if isinstance(error, HfHubHTTPError):
        return _from_status(error, operation, repo_id)
    if _unreachable(error):
        return HubUnreachableError(
            operation,
            repo_id,
            f"the endpoint {endpoint or ''} cannot be reached ({error!r})".replace("  ", " "),
            "Check the endpoint URL (HF_ENDPOINT, or hub_endpoint in the config file) and the network; "
            "for the offline store, start `pruna-hub hub serve` or pass --local-hub",
        )
    if isinstance(error, httpx2.TransportError | json.JSONDecodeError):
        return HubTransientError(
            operation, repo_id, f"connection or answer broken ({error!r})", "Retry later."
        )
    return None


def _unreachable(error: BaseException) -> bool:
    """A refused connection, an unknown host or an address httpx cannot use: no retry can fix these."""
    if isinstance(error, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
        return True
    if not isinstance(error, httpx2.ConnectError):
        return False
    return any(isinstance(link, ConnectionRefusedError | socket.gaierror) for link in _chain(error))


def _from_status(error: HfHubHTTPError, operation: str, repo_id: str | None) -> HubError:
    status = error.response.status_code if error.response is not None else 0
    detail = f"HTTP {status}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if status == 429:
        return HubRateLimitedError(
            operation, repo_id, detail, "Slow down.", retry_after=_retry_after(error.response)
        )
    if status in (409, 412):
        return HubConflictError(
            operation, repo_id, detail, "The repo changed meanwhile; re-read it and retry."
        )
    if status in (401, 403):
        return HubPermissionError(
            operation, repo_id, detail, "Use a token with write access to this namespace."
        )
    if status == 408 or status >= 500:
        return HubTransientError(operation, repo_id, detail, "Retry later.")
    return HubRejectedError(operation, repo_id, detail, "Fix the request; retrying will not help.")


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; waits ``base * 2**n`` capped at ``max_delay``, or ``Retry-After`` when the
    server says so (a Retry-After above ``max_delay`` is not waited for: the call fails as rate-limited)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    budget: float = 180.0  # seconds of waiting one call may spend in all, whatever the attempts left
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int, error: HubError, *, waited: float = 0.0) -> float | None:
        if not error.retryable or attempt + 1 >= self.attempts:
            return None
        wait = min(self.base_delay * 2**attempt, self.max_delay)
        if isinstance(error, HubRateLimitedError) and error.retry_after is not None:
            wait = error.retry_after if error.retry_after <= self.max_delay else float("inf")
        return wait if waited + wait <= self.budget else None


@dataclass(frozen=True)
class BaseCard:
    """What the service copies from a base model's card; ``license`` is never defaulted."""

    license: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Publication:
    repo_id: str
    commit_sha: str
    tag: str
    tag_created: bool


class HubClient:
    """``HubClient(endpoint=..., token=...)``; every method raises only ``pruna_hub.errors.HubError``s."""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.api = HfApi(endpoint=endpoint, token=token)
        self.token = token
        self.retry = retry or RetryPolicy()
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self._reachable = False  # checked once, before the first call huggingface_hub retries itself

    def call(
        self, operation: str, repo_id: str | None, fn: Callable[[], T], *, retried_by_client: bool = False
    ) -> T:
        """Run ``fn`` with translation and retries; the one place errors become outcomes.

        ``retried_by_client``: huggingface_hub already retried this call's transport errors, 5xx and 429,
        so only what it cannot see (a truncated JSON answer) is retried here.
        """
        if retried_by_client and not self._reachable:
            self.check_reachable()  # before huggingface_hub spends ~24 s retrying a refused port
        attempt, waited = 0, 0.0
        while True:
            try:
                return fn()
            except Exception as e:
                error = translate(e, operation=operation, repo_id=repo_id, endpoint=self.api.endpoint)
                if error is None:
                    raise
                truncated = any(isinstance(link, json.JSONDecodeError) for link in _chain(e))
                wait = (
                    None
                    if retried_by_client and not truncated
                    else self.retry.delay(attempt, error, waited=waited)
                )
                if wait is None:
                    metrics.hub_error(error)
                    raise error from e
                logger.info(
                    "%s %s failed (%s); retry %d in %.1fs",
                    operation,
                    repo_id,
                    error.outcome,
                    attempt + 1,
                    wait,
                )
                self.retry.sleep(wait)
                attempt, waited = attempt + 1, waited + wait

    def check_reachable(self) -> None:
        """One request huggingface_hub does not retry, so an endpoint that cannot be reached fails in
        seconds (``HubUnreachableError``) before a listing or download that the client would retry for
        ~24 s. Any answer of the Hub, a 404 for the probe's made-up repo included, means it is reachable.
        The probe is tried once: any other failure of it is left to the call behind it."""
        try:
            self.api.model_info(PROBE_REPO)
        except Exception as e:
            error = translate(e, operation="check_endpoint", repo_id=None, endpoint=self.api.endpoint)
            if isinstance(error, HubUnreachableError):
                metrics.hub_error(error)
                raise error from e
        self._reachable = True

    # --- discovery ----------------------------------------------------------------------------------

    def list_new_models(
        self,
        *,
        authors: Iterable[str] = (),
        pipeline_tags: Iterable[str] = (),
        libraries: Iterable[str] = (),
        search: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ModelInfo]:
        """Models matching any author x pipeline tag x library, newest first, created at or after ``since``.

        huggingface_hub 2.x's ``list_models`` takes one author and one pipeline tag and has no ``library=``:
        libraries go through ``filter=``, and the combinations are queried one by one and merged.
        """
        found: dict[str, ModelInfo] = {}
        for author, tag, library in product(_or_none(authors), _or_none(pipeline_tags), _or_none(libraries)):
            query = functools.partial(self._list_one, author, tag, library, search, since, limit)
            for info in self.call("list_models", None, query, retried_by_client=True):
                found.setdefault(info.id, info)
        ordered = sorted(found.values(), key=lambda i: (i.created_at or _EPOCH, i.id), reverse=True)
        return ordered[:limit] if limit is not None else ordered

    def _list_one(
        self,
        author: str | None,
        tag: str | None,
        library: str | None,
        search: str | None,
        since: datetime | None,
        limit: int | None,
    ) -> list[ModelInfo]:
        items: Iterator[ModelInfo] = iter(
            self.api.list_models(
                author=author,
                pipeline_tag=tag,
                filter=library,
                search=search,
                sort="created_at",
                expand=LIST_FIELDS,  # type: ignore[arg-type]
            )
        )
        if since is not None:
            items = takewhile(lambda i: i.created_at is None or i.created_at >= since, items)
        return list(islice(items, limit))

    def model_info(self, repo_id: str, *, revision: str | None = None) -> ModelInfo:
        return self.call(
            "model_info",
            repo_id,
            lambda: self.api.model_info(repo_id, revision=revision, files_metadata=True),
        )

    def base_card(self, repo_id: str, *, revision: str | None = None) -> BaseCard:
        """License and YAML metadata of a model's card at a revision (empty when it has no card)."""
        info = self.model_info(repo_id, revision=revision)
        metadata = info.card_data.to_dict() if info.card_data is not None else {}
        license_ = metadata.get("license")
        return BaseCard(license=license_ if isinstance(license_, str) else None, metadata=metadata)

    # --- files --------------------------------------------------------------------------------------

    def download(self, repo_id: str, *, revision: str, allow_patterns: list[str] | None = None) -> Path:
        """A pinned snapshot in the cache; ``revision`` should be a commit sha from ``model_info``."""
        return self.call(
            "download",
            repo_id,
            retried_by_client=True,
            fn=lambda: Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    token=self.token,
                    allow_patterns=allow_patterns,
                    cache_dir=self.cache_dir,
                    endpoint=self.api.endpoint,
                )
            ),
        )

    def tag_target(self, repo_id: str, tag: str) -> str | None:
        """The commit a tag points at, or ``None``: lets the service skip what it already published."""
        try:
            refs = self.call("refs", repo_id, lambda: self.api.list_repo_refs(repo_id))
        except HubNotFoundError:
            return None
        return next((t.target_commit for t in refs.tags if t.name == tag), None)

    def commits(self, repo_id: str) -> list[Any]:
        """The commits of ``main``, newest first (``GitCommitInfo``: ``commit_id``, ``title``...)."""
        return self.call(
            "commits", repo_id, lambda: self.api.list_repo_commits(repo_id), retried_by_client=True
        )

    def file_sizes(self, repo_id: str, *, revision: str) -> dict[str, int]:
        """Every file of ``repo_id`` at ``revision`` with its size in bytes."""
        tree = self.call(
            "list_tree",
            repo_id,
            lambda: list(self.api.list_repo_tree(repo_id, revision=revision, recursive=True)),
            retried_by_client=True,
        )
        return {entry.path: int(entry.size) for entry in tree if isinstance(entry, RepoFile)}

    def tag(self, repo_id: str, tag: str, *, revision: str) -> None:
        """Point ``tag`` at ``revision``; a tag already there is left as it is."""
        self.call(
            "create_tag",
            repo_id,
            lambda: self.api.create_tag(repo_id, tag=tag, revision=revision, exist_ok=True),
        )

    def head(self, repo_id: str) -> str:
        """The commit ``main`` points at now."""
        return str(self.model_info(repo_id).sha)

    def publish_folder(
        self,
        repo_id: str,
        folder: str | Path,
        *,
        tag: str,
        commit_message: str,
        private: bool = False,
        fence: Callable[[], None] | None = None,
    ) -> Publication:
        """Make ``main`` hold exactly ``folder`` in ONE commit and tag it (tag = the base revision).

        The commit names the head it was built on as its parent, so a commit made by anyone since then
        is a 412 (``HubConflictError``), never silently built upon; ``fence`` runs right before each
        commit attempt (the sync checks there that it still holds the job's lease). Re-running with the
        same folder creates no commit (the client skips unchanged files) and finds the tag in place; a tag
        that already points elsewhere is a ``HubConflictError``.
        """
        folder = Path(folder)
        self.call(
            "create_repo", repo_id, lambda: self.api.create_repo(repo_id, private=private, exist_ok=True)
        )
        parent = self.head(repo_id)
        remote = self.call(
            "list_files",
            repo_id,
            lambda: self.api.list_repo_files(repo_id, revision=parent),
            retried_by_client=True,
        )
        from smash.hub import replace_with_folder  # here: importing smash loads torch

        def commit() -> Any:  # operations built anew for each attempt: they carry their upload state
            if fence is not None:
                fence()
            return self.api.create_commit(
                repo_id,
                replace_with_folder(folder, remote),
                commit_message=commit_message,
                parent_commit=parent,
            )

        sha = str(self.call("create_commit", repo_id, commit).oid)
        created = self._tag_once(repo_id, tag, sha)
        return Publication(repo_id, sha, tag, tag_created=created)

    def _tag_once(self, repo_id: str, tag: str, sha: str, *, tries: int = 3) -> bool:
        """Point ``tag`` at ``sha`` unless it already does; True when this call created it. A 409 whose
        tag is not there afterwards (a transient conflict, an answer lost) is tried again."""
        for _ in range(tries):
            existing = self.tag_target(repo_id, tag)
            if existing == sha:
                return False
            if existing is not None:
                raise HubConflictError(
                    "create_tag",
                    repo_id,
                    f"tag {tag} already points at {existing}, not {sha}",
                    "Publish under a new tag, or delete the old one first.",
                )
            try:
                self.call("create_tag", repo_id, lambda: self.api.create_tag(repo_id, tag=tag, revision=sha))
                return True
            except HubConflictError:
                continue
        raise HubConflictError(
            "create_tag", repo_id, f"tag {tag} could not be created in {tries} tries", "Retry the job later."
        )
