"""Folder-backed repositories: content-addressed blobs, immutable commits, branches and tags.

Layout under ``root``::

    blobs/ab/cdef...            file contents, named by their sha256 (identical files are stored once)
    repos/{ns}/{name}/repo.json  settings: private, gated, grants, createdAt
    repos/{ns}/{name}/refs.json  {"branches": {name: sha}, "tags": {name: sha}}
    repos/{ns}/{name}/commits/{sha}.json   one commit: parents, message, author, date, full file map

Every write goes to a temporary file first and is renamed into place, and all writes hold a file lock on
``root/.lock``, so an in-process store and ``pruna-hub hub serve`` may share one root. A commit records the
whole file map (small for model repos), which makes any revision readable from one JSON file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from pruna_hub.hubstore.errors import StoreError

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.safetensors",
        "*.bin",
        "*.pt",
        "*.pth",
        "*.ckpt",
        "*.gguf",
        "*.onnx",
        "*.h5",
        "*.msgpack",
        "*.npz",
        "*.pkl",
        "*.zip",
        "*.tar.gz",
        "*.png",
        "*.jpg",
    )
)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the client compares with its local files to skip unchanged ones."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split ``ns/name``; anything else (path traversal included) is refused before touching the disk."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) and ".." not in p and "--" not in p for p in parts):
        raise StoreError(400, None, f"invalid repo id {repo_id!r}: expected namespace/name")
    return parts[0], parts[1]


def check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in path:
        raise StoreError(400, None, f"invalid path in repo {path!r}")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit. ``lfs`` files are served with their sha256 as ETag, like the Hub does."""

    sha256: str
    size: int
    git_oid: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    @property
    def tree_oid(self) -> str:
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    id: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    files: Mapping[str, FileEntry]


@dataclass(frozen=True)
class RepoMeta:
    repo_id: str
    private: bool = False
    gated: str | bool = False
    grants: tuple[str, ...] = ()
    created_at: str = field(default_factory=now_iso)
    downloads: int = 0
    likes: int = 0

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class Storage:
    """The repositories of one store. Methods raise ``StoreError`` carrying the HTTP answer the Hub gives."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(str(self.root / ".lock"))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._thread_lock, self._file_lock:
            yield

    # --- blobs ------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):  # oids come from requests: never let one walk out of blobs/
            raise StoreError(400, None, f"invalid LFS oid {sha256!r}: expected 64 lowercase hex digits")
        return self.root / "blobs" / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            self._store_tmp(self._tmp_with(data), sha)
        return sha

    def put_stream(self, chunks: Iterable[bytes], *, sha256: str, size: int) -> None:
        """Store an uploaded LFS object; refuse it unless it hashes to the announced oid and size."""
        if not _SHA256.match(sha256):
            raise StoreError(400, None, f"invalid LFS oid {sha256!r}")
        digest, written = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "blobs", prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    digest.update(chunk)
                    written += len(chunk)
                    f.write(chunk)
            if digest.hexdigest() != sha256 or written != size:
                raise StoreError(400, None, f"uploaded object does not match oid {sha256} and size {size}")
        except BaseException:
            os.unlink(tmp)  # a dropped upload leaves nothing behind
            raise
        self._store_tmp(tmp, sha256)

    def _tmp_with(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.root / "blobs", prefix=".put-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return tmp

    def _store_tmp(self, tmp: str, sha256: str) -> None:
        target = self.blob_path(sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)

    def entry_for_bytes(self, data: bytes, *, lfs: bool) -> FileEntry:
        return FileEntry(self.put_bytes(data), len(data), git_blob_oid(data), lfs)

    def entry_for_blob(self, sha256: str, size: int) -> FileEntry:
        if not self.has_blob(sha256, size):
            raise StoreError(422, None, f"LFS object {sha256} of size {size} was never uploaded")
        if size <= 10 * 1024 * 1024:
            oid = git_blob_oid(self.blob_path(sha256).read_bytes())
        else:  # the git oid of a large LFS file is never compared by the client; skip reading it all
            oid = git_blob_oid(lfs_pointer(sha256, size))
        return FileEntry(sha256, size, oid, True)

    def open_blob(self, entry: FileEntry) -> IO[bytes]:
        return self.blob_path(entry.sha256).open("rb")

    # --- repos ------------------------------------------------------------------------------------

    def _repo_dir(self, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_id)
        return self.root / "repos" / ns / name

    def exists(self, repo_id: str) -> bool:
        return (self._repo_dir(repo_id) / "repo.json").is_file()

    def meta(self, repo_id: str) -> RepoMeta:
        path = self._repo_dir(repo_id) / "repo.json"
        if not path.is_file():
            raise StoreError(404, "RepoNotFound", f"Repository {repo_id} not found")
        data = _read_json(path)
        return RepoMeta(**{**data, "grants": tuple(data.get("grants", ()))})

    def list_repos(self) -> list[RepoMeta]:
        found = sorted(p.parent for p in (self.root / "repos").glob("*/*/repo.json"))
        return [self.meta(f"{p.parent.name}/{p.name}") for p in found]

    def create_repo(self, repo_id: str, *, private: bool = False, author: str = "") -> RepoMeta:
        """A new repo starts, like on the Hub, with one commit holding the default .gitattributes."""
        with self._writing():
            if self.exists(repo_id):
                raise StoreError(409, None, f"You already created this model repo: {repo_id}")
            meta = RepoMeta(repo_id=repo_id, private=private)
            _write_json(self._repo_dir(repo_id) / "repo.json", asdict(meta))
            entry = self.entry_for_bytes(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
            first = self._new_commit((), "initial commit", "", author, {".gitattributes": entry})
            self._save_commit(repo_id, first)
            self._write_refs(repo_id, {"branches": {"main": first.id}, "tags": {}})
            return meta

    def update_repo(self, repo_id: str, **changes: Any) -> RepoMeta:
        """Change ``private``, ``gated`` ("auto", "manual" or False) or ``grants`` (user names)."""
        with self._writing():
            meta = replace(self.meta(repo_id), **changes)
            _write_json(self._repo_dir(repo_id) / "repo.json", {**asdict(meta), "grants": list(meta.grants)})
            return meta

    def delete_repo(self, repo_id: str) -> None:
        with self._writing():
            self.meta(repo_id)
            shutil.rmtree(self._repo_dir(repo_id))

    # --- refs and commits -------------------------------------------------------------------------

    def refs(self, repo_id: str) -> dict[str, dict[str, str]]:
        self.meta(repo_id)
        data: dict[str, dict[str, str]] = _read_json(self._repo_dir(repo_id) / "refs.json")
        return data

    def _write_refs(self, repo_id: str, refs: Mapping[str, Mapping[str, str]]) -> None:
        _write_json(self._repo_dir(repo_id) / "refs.json", refs)

    def commit_by_id(self, repo_id: str, sha: str) -> Commit:
        data = _read_json(self._repo_dir(repo_id) / "commits" / f"{sha}.json")
        files = {path: FileEntry(**entry) for path, entry in data.pop("files").items()}
        return Commit(**{**data, "parents": tuple(data["parents"]), "files": files})

    def resolve(self, repo_id: str, revision: str) -> Commit:
        """Branch, tag or full commit sha -> commit; 404 RevisionNotFound otherwise."""
        refs = self.refs(repo_id)
        sha = refs["branches"].get(revision) or refs["tags"].get(revision)
        if (
            sha is None
            and _SHA1.match(revision)
            and (self._repo_dir(repo_id) / "commits" / f"{revision}.json").is_file()
        ):
            sha = revision
        if sha is None:
            raise StoreError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return self.commit_by_id(repo_id, sha)

    def history(self, repo_id: str, revision: str) -> list[Commit]:
        """Commits reachable from ``revision``, newest first (first-parent chain: there are no merges)."""
        commit: Commit | None = self.resolve(repo_id, revision)
        out: list[Commit] = []
        while commit is not None:
            out.append(commit)
            commit = self.commit_by_id(repo_id, commit.parents[0]) if commit.parents else None
        return out

    def _new_commit(
        self, parents: tuple[str, ...], title: str, message: str, author: str, files: Mapping[str, FileEntry]
    ) -> Commit:
        date = now_iso()
        body = json.dumps(
            {
                "parents": parents,
                "title": title,
                "message": message,
                "author": author,
                "date": date,
                "files": {p: asdict(e) for p, e in sorted(files.items())},
            },
            sort_keys=True,
        )
        return Commit(
            hashlib.sha1(body.encode()).hexdigest(), parents, title, message, author, date, dict(files)
        )

    def _save_commit(self, repo_id: str, commit: Commit) -> None:
        data = {**asdict(commit), "parents": list(commit.parents)}
        data["files"] = {p: asdict(e) for p, e in commit.files.items()}
        _write_json(self._repo_dir(repo_id) / "commits" / f"{commit.id}.json", data)

    def commit(
        self,
        repo_id: str,
        branch: str,
        *,
        title: str,
        message: str = "",
        author: str = "",
        parent: str | None = None,
        put: Mapping[str, FileEntry] | None = None,
        delete_files: Iterable[str] = (),
        delete_folders: Iterable[str] = (),
    ) -> Commit:
        """Apply changes on top of ``branch``'s head; a stale ``parent`` is a 412, as on the Hub."""
        with self._writing():
            refs = self.refs(repo_id)
            head_sha = refs["branches"].get(branch)
            if head_sha is None:
                raise StoreError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            if parent is not None and parent != head_sha:
                raise StoreError(412, None, "A commit has happened since. Please refresh and try again.")
            files = dict(self.commit_by_id(repo_id, head_sha).files)
            for path in delete_files:
                if files.pop(check_path(path), None) is None:
                    raise StoreError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
            for folder in delete_folders:
                prefix = check_path(folder.rstrip("/")) + "/"
                files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            for path, entry in (put or {}).items():
                files[check_path(path)] = entry
            new = self._new_commit((head_sha,), title, message, author, files)
            self._save_commit(repo_id, new)
            refs["branches"][branch] = new.id
            self._write_refs(repo_id, refs)
            return new

    def create_ref(self, repo_id: str, kind: str, name: str, revision: str) -> str:
        """Create a tag (kind "tags") or branch (kind "branches"); 409 when the name is taken."""
        check_path(name)
        with self._writing():
            sha = self.resolve(repo_id, revision).id
            refs = self.refs(repo_id)
            if name in refs[kind]:
                what = "Tag" if kind == "tags" else "Branch"
                raise StoreError(409, None, f"{what} {name} already exists in {repo_id}")
            refs[kind][name] = sha
            self._write_refs(repo_id, refs)
            return sha

    def delete_ref(self, repo_id: str, kind: str, name: str) -> None:
        if kind == "branches" and name == "main":
            raise StoreError(403, None, "the default branch main cannot be deleted")
        with self._writing():
            refs = self.refs(repo_id)
            if refs[kind].pop(name, None) is None:
                raise StoreError(404, "RevisionNotFound", f"Invalid rev id: {name}")
            self._write_refs(repo_id, refs)
