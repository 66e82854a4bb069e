"""The real huggingface_hub client against the local store, in-process and over a loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import torch
import yaml
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    ModelCard,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.repocard_data import ModelCardData
from huggingface_hub.utils import get_session
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from pruna_hub.hubstore import LocalHub, Principal, Storage, point_client_at
from pruna_hub.hubstore.cards import derived

WRITE = "tok-pruna"
READER = "tok-alice"
LFS_THRESHOLD = 4096


@pytest.fixture(params=["in-process", "loopback"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LocalHub, HfApi]]:
    hub = LocalHub(
        tmp_path / "store",
        tokens={WRITE: Principal("pruna", orgs=("PrunaAI",)), READER: Principal("alice", write=False)},
        page_size=2,
        tree_page_size=3,
        lfs_threshold=LFS_THRESHOLD,
    )
    with contextlib.ExitStack() as stack:
        if request.param == "in-process":
            endpoint = stack.enter_context(hub.install(cache_dir=str(tmp_path / "cache")))
        else:
            endpoint = stack.enter_context(hub.serve())
            stack.enter_context(point_client_at(endpoint, cache_dir=str(tmp_path / "cache")))
        yield hub, HfApi(endpoint=endpoint, token=WRITE)


def make_folder(root: Path, *, big: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    (root / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags: [demo]\n---\n# x\n"
    )
    (root / "weights.dat").write_bytes(big)  # over the threshold: LFS by size
    (root / "nested").mkdir(exist_ok=True)
    (root / "nested" / "notes.txt").write_text("regular file in a folder\n")
    return root


def test_upload_regular_and_lfs_then_snapshot(store: tuple[LocalHub, HfApi], tmp_path: Path) -> None:
    hub, api = store
    big = os.urandom(3 * LFS_THRESHOLD)
    folder = make_folder(tmp_path / "src", big=big)
    api.create_repo("PrunaAI/demo")
    info = api.upload_folder(folder_path=folder, repo_id="PrunaAI/demo", commit_message="add")

    ops = hub.operations()
    assert {"preupload", "lfs_batch", "lfs_upload", "lfs_verify", "commit"} <= set(ops)
    hub.app.clear_calls()
    entries = {e.path: e for e in api.list_repo_tree("PrunaAI/demo", recursive=True)}
    assert hub.operations() == ["tree", "tree"]  # 6 entries (a folder included), 3 per page
    assert entries["weights.dat"].lfs is not None and entries["weights.dat"].lfs.size == len(big)
    assert entries["config.json"].lfs is None and entries["nested/notes.txt"].lfs is None

    path = Path(snapshot_download("PrunaAI/demo", revision=info.oid, token=WRITE))
    assert path.name == info.oid
    assert (path / "weights.dat").read_bytes() == big
    assert (path / "nested" / "notes.txt").read_text() == "regular file in a folder\n"
    single = hf_hub_download("PrunaAI/demo", "config.json", token=WRITE)
    assert Path(single).read_text().startswith('{"architectures"')


def test_identical_files_are_stored_once(store: tuple[LocalHub, HfApi], tmp_path: Path) -> None:
    hub, api = store
    big = os.urandom(2 * LFS_THRESHOLD)
    for name in ("a", "b"):
        api.create_repo(f"PrunaAI/{name}")
        api.upload_file(path_or_fileobj=big, path_in_repo="w.dat", repo_id=f"PrunaAI/{name}")
    blobs = [
        p for p in (hub.storage.root / "blobs").rglob("*") if p.is_file() and p.stat().st_size == len(big)
    ]
    assert len(blobs) == 1
    assert hub.operations().count("lfs_upload") == 1  # the second repo's batch answer had no upload action


def test_create_twice_is_409_unless_exist_ok(store: tuple[LocalHub, HfApi]) -> None:
    _, api = store
    url = api.create_repo("PrunaAI/twice")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo("PrunaAI/twice")
    assert e.value.response.status_code == 409
    assert api.create_repo("PrunaAI/twice", exist_ok=True).repo_id == url.repo_id == "PrunaAI/twice"


def test_list_models_pages_filters_and_sorts(store: tuple[LocalHub, HfApi], tmp_path: Path) -> None:
    hub, api = store
    for i in range(5):
        api.create_repo(f"PrunaAI/m{i}")
    api.create_repo("pruna/other")
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id="PrunaAI/m3"
    )
    hub.app.clear_calls()

    newest_first = [m.id for m in api.list_models(author="PrunaAI", sort="created_at")]
    assert newest_first == [f"PrunaAI/m{i}" for i in reversed(range(5))]
    assert hub.operations().count("list_models") == 3  # page size 2: 2 + 2 + 1
    assert [m.id for m in api.list_models(filter="license:mit")] == ["PrunaAI/m3"]
    assert [m.id for m in api.list_models(search="OTHER")] == ["pruna/other"]
    limited = list(api.list_models(author="PrunaAI", limit=3, expand=["createdAt", "sha"]))  # type: ignore[list-item]
    assert len(limited) == 3 and all(m.sha is not None and m.created_at is not None for m in limited)


def test_model_info_at_a_revision(store: tuple[LocalHub, HfApi]) -> None:
    _, api = store
    api.create_repo("PrunaAI/rev")
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="one.txt", repo_id="PrunaAI/rev").oid
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="two.txt", repo_id="PrunaAI/rev").oid
    old = api.model_info("PrunaAI/rev", revision=first)
    new = api.model_info("PrunaAI/rev")
    assert old.sha == first and new.sha == second != first
    assert {s.rfilename for s in old.siblings or []} == {".gitattributes", "one.txt"}
    assert {s.rfilename for s in new.siblings or []} == {".gitattributes", "one.txt", "two.txt"}
    assert [c.commit_id for c in api.list_repo_commits("PrunaAI/rev")][:2] == [second, first]
    with pytest.raises(RevisionNotFoundError):
        api.model_info("PrunaAI/rev", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("PrunaAI/missing")


def test_tags_and_branches(store: tuple[LocalHub, HfApi], tmp_path: Path) -> None:
    _, api = store
    api.create_repo("PrunaAI/tagged")
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id="PrunaAI/tagged").oid
    api.create_tag("PrunaAI/tagged", tag="base-abc", revision=first)
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id="PrunaAI/tagged")
    api.create_branch("PrunaAI/tagged", branch="dev", revision=first)
    refs = api.list_repo_refs("PrunaAI/tagged")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("base-abc", first)]
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert Path(hf_hub_download("PrunaAI/tagged", "f.txt", revision="base-abc")).read_bytes() == b"v1"
    api.delete_tag("PrunaAI/tagged", tag="base-abc")
    api.delete_branch("PrunaAI/tagged", branch="dev")
    refs = api.list_repo_refs("PrunaAI/tagged")
    assert refs.tags == [] and [b.name for b in refs.branches] == ["main"]
    with pytest.raises(HfHubHTTPError) as main:
        api.delete_branch("PrunaAI/tagged", branch="main")
    assert main.value.response.status_code == 403
    api.create_tag("PrunaAI/tagged", tag="base-abc", revision=first)
    with pytest.raises(HfHubHTTPError) as e:
        api.create_tag("PrunaAI/tagged", tag="base-abc", revision="main")
    assert e.value.response.status_code == 409


def test_noop_reupload_creates_no_commit(store: tuple[LocalHub, HfApi], tmp_path: Path) -> None:
    hub, api = store
    folder = make_folder(tmp_path / "src", big=os.urandom(2 * LFS_THRESHOLD))
    api.create_repo("PrunaAI/noop")
    first = api.upload_folder(folder_path=folder, repo_id="PrunaAI/noop").oid
    hub.app.clear_calls()
    again = api.upload_folder(folder_path=folder, repo_id="PrunaAI/noop").oid
    assert again == first
    assert "commit" not in hub.operations() and "lfs_upload" not in hub.operations()
    assert len(api.list_repo_commits("PrunaAI/noop")) == 2  # initial commit + the upload


def test_stale_parent_commit_is_412(store: tuple[LocalHub, HfApi]) -> None:
    _, api = store
    api.create_repo("PrunaAI/race")
    base = api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="PrunaAI/race").oid
    api.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id="PrunaAI/race")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_commit(
            "PrunaAI/race",
            [CommitOperationAdd(path_in_repo="c.txt", path_or_fileobj=b"c")],
            commit_message="late",
            parent_commit=base,
        )
    assert e.value.response.status_code == 412
    assert "c.txt" not in api.list_repo_files("PrunaAI/race")


def test_private_and_gated_answer_like_the_hub(store: tuple[LocalHub, HfApi]) -> None:
    hub, api = store
    api.create_repo("PrunaAI/secret", private=True)
    api.create_repo("PrunaAI/gated")
    api.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id="PrunaAI/gated")
    hub.storage.update_repo("PrunaAI/gated", gated="auto")
    anonymous, alice = HfApi(endpoint=api.endpoint, token=False), HfApi(endpoint=api.endpoint, token=READER)

    for other in (anonymous, alice):
        with pytest.raises(RepositoryNotFoundError) as e:
            other.model_info("PrunaAI/secret")
        assert not isinstance(e.value, GatedRepoError)
        assert other.model_info("PrunaAI/gated").gated == "auto"  # metadata stays public
    assert api.model_info("PrunaAI/secret").private is True
    for token, status in ((False, 401), (READER, 403)):
        with pytest.raises(GatedRepoError) as gated:
            hf_hub_download("PrunaAI/gated", "w.txt", token=token)
        assert gated.value.response.status_code == status
    hub.storage.update_repo("PrunaAI/gated", grants=("alice",))
    assert Path(hf_hub_download("PrunaAI/gated", "w.txt", token=READER)).read_bytes() == b"w"
    with pytest.raises(HfHubHTTPError) as denied:
        alice.create_repo("PrunaAI/by-alice")
    assert denied.value.response.status_code == 403


def test_resolve_headers_and_range(store: tuple[LocalHub, HfApi]) -> None:
    _, api = store
    api.create_repo("PrunaAI/ranged")
    data = bytes(range(256)) * 40
    sha = api.upload_file(path_or_fileobj=data, path_in_repo="r.bin", repo_id="PrunaAI/ranged").oid
    url = hf_hub_url("PrunaAI/ranged", "r.bin", endpoint=api.endpoint)
    meta = get_hf_file_metadata(url, token=WRITE)
    assert meta.commit_hash == sha and meta.size == len(data)
    (entry,) = [e for e in api.list_repo_tree("PrunaAI/ranged") if e.path == "r.bin"]
    assert meta.etag == entry.lfs.sha256  # type: ignore[union-attr]  # LFS files: the sha256 is the ETag
    response = get_session().get(url, headers={"Range": "bytes=100-199"})
    assert response.status_code == 206 and response.content == data[100:200]


def test_offline_mode_reads_the_cache(store: tuple[LocalHub, HfApi], monkeypatch: pytest.MonkeyPatch) -> None:
    _, api = store
    api.create_repo("PrunaAI/cached")
    sha = api.upload_file(path_or_fileobj=b"cached", path_in_repo="c.txt", repo_id="PrunaAI/cached").oid
    online = snapshot_download("PrunaAI/cached")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert snapshot_download("PrunaAI/cached") == online
    assert Path(snapshot_download("PrunaAI/cached", revision=sha)).name == sha


def test_truncated_download_is_resumed(
    store: tuple[LocalHub, HfApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, api = store
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the client waits 1 s before resuming
    api.create_repo("PrunaAI/cut")
    data = os.urandom(3 * LFS_THRESHOLD)
    api.upload_file(path_or_fileobj=data, path_in_repo="cut.bin", repo_id="PrunaAI/cut")
    hub.faults.truncate("resolve", method="GET")
    assert Path(hf_hub_download("PrunaAI/cut", "cut.bin")).read_bytes() == data
    assert hub.faults.pending == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serve_answers_the_client(tmp_path: Path) -> None:
    port = _free_port()
    command = "from pruna_hub.cli import main; main()"
    args = [
        "hub",
        "serve",
        "--root",
        str(tmp_path / "s"),
        "--port",
        str(port),
        "--token",
        "tok:pruna:PrunaAI",
    ]
    server = subprocess.Popen([sys.executable, "-c", command, *args], stderr=subprocess.PIPE)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with point_client_at(endpoint, cache_dir=str(tmp_path / "cache")):
            api = HfApi(endpoint=endpoint, token="tok")
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert api.whoami()["name"] == "pruna"
                    break
                except (OSError, httpx2.TransportError):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
            api.create_repo("PrunaAI/served")
            sha = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="PrunaAI/served").oid
            assert api.model_info("PrunaAI/served").sha == sha
            with pytest.raises(HfHubHTTPError):
                HfApi(endpoint=endpoint, token="wrong").create_repo("PrunaAI/nope")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "s" / "repos" / "PrunaAI" / "served" / "refs.json").is_file()


def test_cli_rejects_a_malformed_token() -> None:
    from click.testing import CliRunner

    from pruna_hub.cli import cli

    result = CliRunner().invoke(cli, ["hub", "serve", "--root", "x", "--token", "no-user"])
    assert result.exit_code == 2 and "TOKEN:USER" in result.output


def test_settings_through_the_client(store: tuple[LocalHub, HfApi]) -> None:
    hub, api = store
    api.create_repo("PrunaAI/settings")
    api.update_repo_settings("PrunaAI/settings", gated="manual", private=True)
    meta = hub.storage.meta("PrunaAI/settings")
    assert meta.gated == "manual" and meta.private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=api.endpoint, token=READER).model_info("PrunaAI/settings")


def test_hostile_requests_are_refused(tmp_path: Path) -> None:
    """Raw HTTP that no honest client sends: traversal, forged uploads, unsigned URLs, garbage commits."""
    hub = LocalHub(tmp_path / "store", tokens={WRITE: Principal("pruna", orgs=("PrunaAI",))})
    auth = {"Authorization": f"Bearer {WRITE}"}
    with httpx2.Client(transport=httpx2.WSGITransport(app=hub.app), base_url="http://hub.local") as http:
        assert (
            http.post(
                "/api/repos/create", json={"name": "..", "organization": "PrunaAI"}, headers=auth
            ).status_code
            == 400
        )
        assert (
            http.post(
                "/api/repos/create", json={"name": "ok", "organization": "PrunaAI"}, headers=auth
            ).status_code
            == 200
        )
        batch = http.post(
            "/PrunaAI/ok.git/info/lfs/objects/batch",
            headers=auth,
            json={"operation": "upload", "objects": [{"oid": "../../../etc/passwd", "size": 1}]},
        )
        assert batch.status_code == 400
        oid = "a" * 64
        batch = http.post(
            "/PrunaAI/ok.git/info/lfs/objects/batch",
            headers=auth,
            json={"operation": "upload", "objects": [{"oid": oid, "size": 3}]},
        )
        href = batch.json()["objects"][0]["actions"]["upload"]["href"]
        assert http.put(href, content=b"abc").status_code == 400  # content does not hash to the oid
        assert http.put(href.replace("sig=", "sig=0"), content=b"abc").status_code == 403
        assert not hub.storage.has_blob(oid)
        assert not list((hub.storage.root / "blobs").glob(".upload-*"))  # nothing left behind
        header = b'{"key": "header", "value": {"summary": "x"}}\n'
        escape = b'{"key": "file", "value": {"path": "../escape", "content": "eA==", "encoding": "base64"}}\n'
        assert (
            http.post("/api/models/PrunaAI/ok/commit/main", content=header + escape, headers=auth).status_code
            == 400
        )
        missing = (
            b'{"key": "lfsFile", "value": {"path": "w", "algo": "sha256", "oid": "'
            + oid.encode()
            + b'", "size": 3}}\n'
        )
        assert (
            http.post(
                "/api/models/PrunaAI/ok/commit/main", content=header + missing, headers=auth
            ).status_code
            == 422
        )
        assert (
            http.post("/api/models/PrunaAI/ok/commit/main", content=b"not json", headers=auth).status_code
            == 400
        )
        assert http.post("/api/repos/create", json={"name": "x"}).status_code == 401
        assert http.get("/api/models/PrunaAI/ok", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert [f for f in hub.storage.resolve("PrunaAI/ok", "main").files] == [".gitattributes"]


def test_delete_repo_and_model_card(store: tuple[LocalHub, HfApi]) -> None:
    _, api = store
    api.create_repo("PrunaAI/card")
    card = ModelCard("---\nlicense: apache-2.0\nbase_model: meta/base\n---\n# Card\n")
    card.push_to_hub("PrunaAI/card", token=WRITE)  # validate-yaml, then a commit of README.md
    loaded = ModelCard.load("PrunaAI/card", token=WRITE)
    assert loaded.data.license == "apache-2.0" and loaded.data.base_model == "meta/base"
    assert "base_model:meta/base" in (api.model_info("PrunaAI/card").tags or [])
    api.delete_repo("PrunaAI/card")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("PrunaAI/card")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo("PrunaAI/card")
    api.delete_repo("PrunaAI/card", missing_ok=True)


def safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


BROKEN_HEADERS = {
    "nested-shape": b'{"w": {"dtype": "F32", "shape": [[2, 2]], "data_offsets": [0, 16]}}',
    "shape-of-strings": b'{"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}',
    "negative-dim": b'{"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 0]}}',
    "list-header": b'[{"dtype": "F32", "shape": [2]}]',
    "deep": b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "not-json": b"\xff\xfe not json",
    "huge-count": b'{"w": {"dtype": "F32", "shape": [' + b",".join([b"9" * 4000] * 200) + b"]}}",
}


def test_a_repo_whose_safetensors_cannot_be_summarised_is_listed_without_the_summary(
    store: tuple[LocalHub, HfApi],
) -> None:
    """One unparsable header used to answer 500 to every listing: discovery stopped for everyone."""
    _, api = store
    good = save({"w": torch.zeros(3, 4), "b": torch.zeros(4, dtype=torch.float16)})
    api.create_repo("PrunaAI/good")
    api.upload_file(path_or_fileobj=good, path_in_repo="model.safetensors", repo_id="PrunaAI/good")
    for name, header in BROKEN_HEADERS.items():
        api.create_repo(f"PrunaAI/{name}")
        files = [
            CommitOperationAdd("model-00001-of-00002.safetensors", good),  # no partial count from this one
            CommitOperationAdd("model-00002-of-00002.safetensors", safetensors_bytes(header, bytes(16))),
        ]
        api.create_commit(f"PrunaAI/{name}", operations=files, commit_message="broken header")

    assert {m.id for m in api.list_models()} == {"PrunaAI/good", *(f"PrunaAI/{n}" for n in BROKEN_HEADERS)}
    summaries = {m.id: m.safetensors for m in api.list_models(expand=["safetensors"])}  # type: ignore[list-item]
    good_summary = summaries.pop("PrunaAI/good")
    assert good_summary is not None
    assert (good_summary.parameters, good_summary.total) == ({"F32": 12, "F16": 4}, 16)
    assert summaries == dict.fromkeys(summaries)  # every broken repo: listed, no safetensors summary
    info = api.model_info("PrunaAI/nested-shape")
    assert info.safetensors is None and "safetensors" in (info.tags or [])


LAUGHS = "".join(  # YAML aliases: 1 KiB of card, ten million values once expanded
    f"{k}: &{k} [{', '.join([f'*{p}' if p else 'x'] * 10)}]\n"
    for p, k in zip(["", *"abcdef"], "abcdefg", strict=True)
)
BROKEN_FILES = {  # written before validate-yaml existed, or by a client that skips it
    "tags-number": ("README.md", b"---\ntags: 5\n---\n"),
    "alias-bomb": ("README.md", f"---\n{LAUGHS}---\n".encode()),
    "dated": ("README.md", b"---\nlicense: mit\nrelease: 2024-01-01\n---\n"),
    "architectures-number": ("config.json", b'{"architectures": 5, "model_type": "llama"}'),
    "deep-config": ("config.json", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
}


def test_malformed_cards_and_configs_never_break_the_listing(store: tuple[LocalHub, HfApi]) -> None:
    hub, api = store
    for name, (path, data) in BROKEN_FILES.items():
        api.create_repo(f"PrunaAI/{name}")
        put = {path: hub.storage.entry_for_bytes(data, lfs=False)}
        hub.storage.commit(f"PrunaAI/{name}", "main", title="unvalidated", put=put)
    names = {f"PrunaAI/{n}" for n in BROKEN_FILES}
    assert {m.id for m in api.list_models()} == names
    cards = {m.id: m.card_data for m in api.list_models(cardData=True, full=True)}
    assert cards.keys() == names
    assert cards.pop("PrunaAI/dated").to_dict() == {"license": "mit", "release": "2024-01-01"}  # type: ignore[union-attr]
    assert cards == dict.fromkeys(cards)  # no card the client could not parse, none expanded
    assert "llama" in (api.model_info("PrunaAI/architectures-number").tags or [])
    with pytest.raises(ValueError, match="Invalid metadata"):  # and such a card is refused on upload
        api.upload_file(
            path_or_fileobj=b"---\ntags: 5\n---\n", path_in_repo="README.md", repo_id="PrunaAI/dated"
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
)
TENSOR_INFO = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "BF16"]) | JSON,
        "shape": st.lists(st.integers(0, 2**40), max_size=4) | JSON,
    }
)
HEADERS = st.dictionaries(st.text(max_size=6), TENSOR_INFO | JSON, max_size=4) | JSON
CARD_KEYS = st.sampled_from(["tags", "license", "base_model", "library_name", "pipeline_tag", "model-index"])
README = (
    st.binary(max_size=64)
    | st.text(max_size=64).map(lambda t: f"---\n{t}\n---\n")
    | st.dictionaries(CARD_KEYS | st.text(max_size=4), JSON, max_size=4).map(
        lambda d: f"---\n{yaml.safe_dump(d)}---\n"
    )
)


@settings(max_examples=150, deadline=None)
@given(header=HEADERS, readme=README)
def test_any_header_or_card_gives_json_able_fields_or_none(header: Any, readme: str | bytes) -> None:
    """The summaries a listing sends, for whatever a repo holds: JSON the client parses, or None."""
    with tempfile.TemporaryDirectory() as root:
        storage = Storage(root)
        storage.create_repo("PrunaAI/any")
        data = safetensors_bytes(json.dumps(header).encode())
        readme_bytes = readme.encode() if isinstance(readme, str) else readme
        put = {
            "model.safetensors": storage.entry_for_bytes(data, lfs=True),
            "README.md": storage.entry_for_bytes(readme_bytes, lfs=False),
        }
        fields = derived(storage, storage.commit("PrunaAI/any", "main", title="any", put=put))
    summary = fields["safetensors"]
    assert summary is None or summary["total"] == sum(summary["parameters"].values())
    json.dumps(fields)
    if fields["cardData"] is not None:
        ModelCardData(**fields["cardData"], ignore_metadata_errors=True)


# --- fault injection from the command line ---------------------------------------------------------------


def test_fault_operations_are_the_routes_operations() -> None:
    from pruna_hub.hubstore import api_files, api_repos, api_upload
    from pruna_hub.hubstore.faults import OPERATIONS

    routed = {r.operation for m in (api_files, api_repos, api_upload) for r in m.ROUTES}
    assert routed - {"agent_harnesses"} == OPERATIONS


def test_hub_serve_injects_the_faults_it_is_given(tmp_path: Path) -> None:
    """`pruna-hub hub serve --fault model_info:503:2`: a real server whose next two model_info calls
    answer 503, for operators' and tests' use against the real client."""
    import socket
    import subprocess
    import sys
    import time

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "pruna_hub.cli", "hub", "serve", "--root", str(tmp_path / "store")]
    bad = subprocess.run([*command, "--fault", "model_info:abc"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "OPERATION:STATUS" in bad.stderr
    server = subprocess.Popen(
        [*command, "--port", str(port), "--fault", "model_info:503:2"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_DISABLE_XET": "1"},
    )
    try:
        api = HfApi(endpoint=f"http://127.0.0.1:{port}")
        for _ in range(600):  # up to 60 s for the interpreter to start and listen
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        api.create_repo("acme/x")
        statuses = []
        for _ in range(3):
            try:
                api.model_info("acme/x")
                statuses.append(200)
            except HfHubHTTPError as e:
                statuses.append(e.response.status_code)
        assert statuses == [503, 503, 200]
    finally:
        server.terminate()
        server.wait(timeout=30)
