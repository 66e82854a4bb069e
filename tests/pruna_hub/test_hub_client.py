"""HubClient against the local store: discovery, info, download, publish, and every fault at every call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pruna_hub.errors import (
    HubConflictError,
    HubError,
    HubGatedError,
    HubNotFoundError,
    HubPermissionError,
    HubRateLimitedError,
    HubTransientError,
    HubUnreachableError,
)
from pruna_hub.hub_client import HubClient, RetryPolicy, translate
from pruna_hub.hubstore import LocalHub, Principal, point_client_at

TOKEN = "tok-pruna"
CARD = (
    "---\nlicense: llama3.2\nlibrary_name: transformers\npipeline_tag: text-generation\n"
    "tags: [x]\n---\n# base\n"
)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalHub]:
    store = LocalHub(
        tmp_path / "store",
        tokens={
            TOKEN: Principal("pruna", orgs=("PrunaAI", "meta")),
            "tok-read": Principal("alice", write=False),
        },
        page_size=2,
        lfs_threshold=2048,
    )
    with store.install(cache_dir=str(tmp_path / "cache")):
        yield store


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(hub: LocalHub, tmp_path: Path, sleeps: list[float]) -> HubClient:
    return HubClient(
        token=TOKEN,
        retry=RetryPolicy(attempts=5, base_delay=1.0, max_delay=30.0, sleep=sleeps.append),
        cache_dir=tmp_path / "cache",
    )


def seed(client: HubClient, repo_id: str, card: str = CARD) -> str:
    client.api.create_repo(repo_id, exist_ok=True)
    info = client.api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)
    client.api.upload_file(path_or_fileobj=b"\0" * 4096, path_in_repo="model.safetensors", repo_id=repo_id)
    return str(info.oid)


def artifact(folder: Path, weights: bytes = b"w" * 4096) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "smash_config.json").write_text('{"format_version": 1, "algorithms": {}}')
    (folder / "README.md").write_text("---\nlicense: llama3.2\n---\n# smashed\n")
    return folder


def test_list_new_models_merges_filters_newest_first(client: HubClient) -> None:
    seed(client, "meta/old")
    cutoff = datetime.now(UTC)
    seed(client, "meta/new-1")
    seed(client, "PrunaAI/new-2")
    seed(client, "PrunaAI/other-lib", card="---\nlibrary_name: gguf\n---\n")
    models = client.list_new_models(authors=["meta", "PrunaAI"], libraries=["transformers"])
    assert [m.id for m in models] == ["PrunaAI/new-2", "meta/new-1", "meta/old"]
    assert all(m.sha is not None and m.pipeline_tag == "text-generation" for m in models)
    recent = client.list_new_models(authors=["meta", "PrunaAI"], since=cutoff - timedelta(milliseconds=1))
    assert {m.id for m in recent} == {"meta/new-1", "PrunaAI/new-2", "PrunaAI/other-lib"}
    assert [m.id for m in client.list_new_models(pipeline_tags=["text-generation"], limit=2)] == [
        "PrunaAI/new-2",
        "meta/new-1",
    ]


def test_model_info_card_and_pinned_download(client: HubClient) -> None:
    first = seed(client, "meta/base")
    client.api.upload_file(path_or_fileobj=b"later", path_in_repo="later.txt", repo_id="meta/base")
    info = client.model_info("meta/base", revision=first)
    assert info.sha == first
    card = client.base_card("meta/base", revision=first)
    assert card.license == "llama3.2" and card.metadata["pipeline_tag"] == "text-generation"
    folder = client.download("meta/base", revision=first)
    assert sorted(p.name for p in folder.iterdir()) == [".gitattributes", "README.md"]  # pinned: no later.txt
    seed(client, "meta/no-card", card="# no metadata\n")
    assert client.base_card("meta/no-card").license is None  # never defaulted


def test_publish_is_one_commit_with_a_tag_and_idempotent(
    client: HubClient, hub: LocalHub, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a")
    first = client.publish_folder("PrunaAI/smashed", folder, tag="base-rev-1", commit_message="publish")
    assert first.tag_created and hub.operations().count("commit") == 1
    assert client.tag_target("PrunaAI/smashed", "base-rev-1") == first.commit_sha
    again = client.publish_folder("PrunaAI/smashed", folder, tag="base-rev-1", commit_message="publish")
    assert again.commit_sha == first.commit_sha and not again.tag_created
    assert hub.operations().count("commit") == 1
    (folder / "model.safetensors").write_bytes(b"v" * 4096)
    with pytest.raises(HubConflictError) as e:
        client.publish_folder("PrunaAI/smashed", folder, tag="base-rev-1", commit_message="changed")
    assert e.value.outcome == "conflict"
    newer = client.publish_folder("PrunaAI/smashed", folder, tag="base-rev-2", commit_message="new base")
    assert newer.commit_sha != first.commit_sha and newer.tag_created


def test_typed_outcomes_without_faults(client: HubClient, hub: LocalHub, tmp_path: Path) -> None:
    with pytest.raises(HubNotFoundError):
        client.model_info("meta/missing")
    seed(client, "meta/gated")
    hub.storage.update_repo("meta/gated", gated="manual")
    reader = HubClient(token="tok-read", retry=client.retry, cache_dir=tmp_path / "c2")
    with pytest.raises(HubGatedError) as gated:  # GatedRepoError is a RepositoryNotFoundError: caught first
        reader.download("meta/gated", revision="main")
    assert gated.value.outcome == "gated"
    with pytest.raises(HubPermissionError):
        reader.publish_folder("meta/mine", artifact(tmp_path / "r"), tag="t", commit_message="m")


Call = Callable[[HubClient, Path], Any]


def _model_info(c: HubClient, tmp: Path) -> Any:
    return c.model_info("meta/base")


def _list(c: HubClient, tmp: Path) -> Any:
    assert [m.id for m in c.list_new_models(authors=["meta"])] == ["meta/base"]


def _download(c: HubClient, tmp: Path) -> Any:
    assert (c.download("meta/base", revision="main") / "model.safetensors").stat().st_size == 4096


def _publish(c: HubClient, tmp: Path) -> Any:
    published = c.publish_folder("PrunaAI/out", artifact(tmp / "out"), tag="base-1", commit_message="m")
    assert len(c.api.list_repo_commits("PrunaAI/out")) == 2  # initial + ONE publish, even after retries
    assert c.tag_target("PrunaAI/out", "base-1") == published.commit_sha


CALLS: dict[str, tuple[Call, tuple[str, ...]]] = {
    "model_info": (_model_info, ("model_info",)),
    "list_new_models": (_list, ("list_models",)),
    "download": (_download, ("tree", "resolve")),
    "publish_folder": (
        _publish,
        ("create_repo", "tree", "preupload", "lfs_batch", "lfs_upload", "commit", "refs", "tag"),
    ),
}
RECOVERABLE = [("429", 429), ("500", 500), ("503", 503), ("truncated", None)]
FAULT_CASES = [
    (call, op, name, status) for call, (_, ops) in CALLS.items() for op in ops for name, status in RECOVERABLE
]


@pytest.mark.parametrize(
    ("call", "operation", "fault", "status"), FAULT_CASES, ids=[f"{c}-{o}-{f}" for c, o, f, _ in FAULT_CASES]
)
def test_recoverable_fault_is_retried_to_success(
    call: str,
    operation: str,
    fault: str,
    status: int | None,
    client: HubClient,
    hub: LocalHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At each call (twice in a row; a truncated answer once, as the work behind it is done): retried by
    huggingface_hub or by the adapter until it succeeds, without duplicating a commit or a tag."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's own retry waits
    seed(client, "meta/base")
    if status is None:
        hub.faults.truncate(operation, times=1)
    else:
        hub.faults.add(operation, status, times=2, retry_after=3)
    CALLS[call][0](client, tmp_path)
    assert hub.faults.pending == 0, f"{operation} was never called by {call}"


@pytest.mark.parametrize("status", [409, 412])
@pytest.mark.parametrize(
    ("call", "operation"),
    [
        ("model_info", "model_info"),
        ("list_new_models", "list_models"),
        ("publish_folder", "commit"),
    ],
)
def test_conflicts_surface_as_conflict(
    call: str,
    operation: str,
    status: int,
    client: HubClient,
    hub: LocalHub,
    tmp_path: Path,
    sleeps: list[float],
) -> None:
    seed(client, "meta/base")
    hub.faults.add(operation, status, times=1)
    with pytest.raises(HubConflictError):
        CALLS[call][0](client, tmp_path)
    assert sleeps == []  # a conflict needs a decision, not a retry


@pytest.mark.parametrize("status", [409, 412])
def test_a_transient_conflict_on_the_tag_is_tried_again_and_a_persistent_one_surfaces(
    status: int, client: HubClient, hub: LocalHub, tmp_path: Path
) -> None:
    """A 409 whose tag is not there afterwards was transient (or its answer was lost): look and try
    again, up to three times; the publication is still one commit with one tag."""
    seed(client, "meta/base")
    hub.faults.add("tag", status, times=2)
    _publish(client, tmp_path)
    hub.faults.add("tag", status, times=3)
    with pytest.raises(HubConflictError, match="could not be created in 3 tries"):
        client.publish_folder("PrunaAI/other", artifact(tmp_path / "o"), tag="base-1", commit_message="m")


def test_a_commit_on_a_moved_head_is_a_conflict_and_the_fence_runs_before_it(
    client: HubClient, hub: LocalHub, tmp_path: Path
) -> None:
    """The parent of the publishing commit is the head read before it: someone else's commit in between
    (a successor worker) makes it a 412, not a commit on top of theirs."""
    folder = artifact(tmp_path / "out")
    client.publish_folder("PrunaAI/out", folder, tag="base-1", commit_message="first")
    fenced: list[str] = []

    def successor_commits_first() -> None:
        fenced.append(client.head("PrunaAI/out"))
        client.api.upload_file(path_or_fileobj=b"theirs", path_in_repo="theirs.txt", repo_id="PrunaAI/out")

    (folder / "new.txt").write_text("mine")
    with pytest.raises(HubConflictError):
        client.publish_folder(
            "PrunaAI/out", folder, tag="base-2", commit_message="second", fence=successor_commits_first
        )
    assert len(fenced) == 1  # a conflict is not retried
    assert "new.txt" not in client.api.list_repo_files("PrunaAI/out")
    assert client.tag_target("PrunaAI/out", "base-2") is None


def test_rate_limit_waits_retry_after_then_succeeds(
    client: HubClient, hub: LocalHub, sleeps: list[float]
) -> None:
    seed(client, "meta/base")
    hub.faults.add("model_info", 429, times=2, retry_after=7)
    assert client.model_info("meta/base").id == "meta/base"
    assert sleeps == [7.0, 7.0]


def test_retries_are_bounded_with_exponential_backoff(
    client: HubClient, hub: LocalHub, sleeps: list[float]
) -> None:
    seed(client, "meta/base")
    hub.faults.add("model_info", 503, times=100)
    with pytest.raises(HubTransientError) as e:
        client.model_info("meta/base")
    assert e.value.outcome == "transient" and e.value.repo_id == "meta/base"
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # 5 attempts
    assert hub.operations().count("model_info") == 5


def test_retry_after_beyond_the_budget_is_rate_limited(
    client: HubClient, hub: LocalHub, sleeps: list[float]
) -> None:
    seed(client, "meta/base")
    hub.faults.add("create_repo", 429, times=1, retry_after=3600)
    with pytest.raises(HubRateLimitedError) as e:
        client.publish_folder("PrunaAI/x", Path("."), tag="t", commit_message="m")
    assert e.value.retry_after == 3600 and e.value.outcome == "rate_limited" and sleeps == []
    assert isinstance(e.value, HubError) and e.value.retryable


PERSISTENT = [(call, op) for call, (_, ops) in CALLS.items() for op in ops]


@pytest.mark.parametrize(("call", "operation"), PERSISTENT, ids=[f"{c}-{o}" for c, o in PERSISTENT])
@pytest.mark.parametrize(("status", "outcome"), [(503, HubTransientError), (429, HubRateLimitedError)])
def test_persistent_fault_surfaces_as_its_outcome(
    call: str,
    operation: str,
    status: int,
    outcome: type[HubError],
    client: HubClient,
    hub: LocalHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the retry budget (huggingface_hub's and the adapter's), the outcome is typed, never a crash."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    seed(client, "meta/base")
    hub.faults.add(operation, status, times=10_000, retry_after=1)
    with pytest.raises(outcome) as e:
        CALLS[call][0](client, tmp_path)
    assert e.value.retryable


def test_faults_over_a_real_socket(
    tmp_path: Path, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body cut short on the wire is a dropped connection to the client: retried like in-process."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    store = LocalHub(
        tmp_path / "store", tokens={TOKEN: Principal("pruna", orgs=("meta",))}, lfs_threshold=2048
    )
    with store.serve() as endpoint, point_client_at(endpoint, cache_dir=str(tmp_path / "cache")):
        client = HubClient(endpoint=endpoint, token=TOKEN, retry=RetryPolicy(sleep=sleeps.append))
        sha = seed(client, "meta/base")
        store.faults.truncate("model_info")
        store.faults.add("model_info", 503)
        assert client.model_info("meta/base").sha is not None
        assert sleeps == [1.0, 2.0]
        store.faults.truncate("resolve", method="GET")
        store.faults.truncate("list_models")
        assert (client.download("meta/base", revision=sha) / "README.md").read_text() == CARD
        assert [m.id for m in client.list_new_models(authors=["meta"])] == ["meta/base"]
        assert store.faults.pending == 0


# --- one retry layer, with a time budget; an endpoint that cannot be reached fails at once ----------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "endpoint",
    [f"http://127.0.0.1:{_closed_port()}", "htp:/malformed"],
    ids=["refused", "malformed"],
)
@pytest.mark.parametrize("call", ["model_info", "list_new_models", "download"])
def test_an_endpoint_that_cannot_be_reached_fails_at_once_with_a_hint(
    endpoint: str, call: str, sleeps: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No retry can fix a refused port, an unknown host or a malformed URL: no waiting, by the adapter or
    (for listing, which huggingface_hub retries for ~24 s on a refused port) by huggingface_hub."""
    client_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", client_sleeps.append)  # huggingface_hub's own retry waits
    client = HubClient(endpoint=endpoint, retry=RetryPolicy(sleep=sleeps.append), cache_dir=tmp_path / "c")
    calls: dict[str, Callable[[], Any]] = {
        "model_info": lambda: client.model_info("meta/base"),
        "list_new_models": lambda: client.list_new_models(authors=["meta"]),
        "download": lambda: client.download("meta/base", revision="0" * 40),
    }
    with pytest.raises(HubUnreachableError, match="HF_ENDPOINT") as e:
        calls[call]()
    assert e.value.outcome == "unreachable" and not e.value.retryable
    assert sleeps == [] and client_sleeps == []


def test_an_unknown_host_is_unreachable_too() -> None:
    """(Built by hand: a test sends nothing to a resolver.) What httpx raises for a name that does not
    resolve: a ConnectError caused by socket.gaierror."""
    import socket

    import httpx2

    error = httpx2.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert isinstance(translate(error, operation="list_models", repo_id=None), HubUnreachableError)
    refused_later = httpx2.ConnectError("timed out")  # no refusal, no lookup failure: maybe transient
    assert isinstance(translate(refused_later, operation="list_models", repo_id=None), HubTransientError)


def test_retries_stop_at_the_time_budget(hub: LocalHub) -> None:
    sleeps: list[float] = []
    client = HubClient(token=TOKEN, retry=RetryPolicy(attempts=10, budget=7.0, sleep=sleeps.append))
    seed(client, "meta/base")
    hub.faults.add("model_info", 503, times=100)
    with pytest.raises(HubTransientError):
        client.model_info("meta/base")
    assert sleeps == [1.0, 2.0, 4.0]  # the next wait (8 s) would pass the 7 s budget


def test_calls_huggingface_hub_retries_are_not_retried_again(
    client: HubClient, hub: LocalHub, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", hub_sleeps.append)
    seed(client, "meta/base")
    hub.faults.add("list_models", 503, times=100)
    with pytest.raises(HubTransientError):
        client.list_new_models(authors=["meta"])
    assert sleeps == [] and len(hub_sleeps) == 5  # huggingface_hub's five retries, and no second layer


def test_credentials_inside_the_endpoint_never_reach_a_message(sleeps: list[float]) -> None:
    client = HubClient(
        endpoint=f"http://alice:s3cret@127.0.0.1:{_closed_port()}", retry=RetryPolicy(sleep=sleeps.append)
    )
    with pytest.raises(HubUnreachableError) as e:
        client.model_info("meta/base")
    assert "s3cret" not in str(e.value) and "alice" not in str(e.value)
    assert "http://***@127.0.0.1" in str(e.value)
