"""Handlers that read files: the tree listing and ``resolve`` (HEAD/GET with ETag, X-Repo-Commit, Range)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from pruna_hub.hubstore.api_repos import paginated, visible_meta
from pruna_hub.hubstore.auth import Principal
from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.storage import Commit, check_path, lfs_pointer
from pruna_hub.hubstore.wsgi import CHUNK, Request, Response, route

if TYPE_CHECKING:
    from pruna_hub.hubstore.app import HubApp


def tree_entries(commit: Commit, path: str, *, recursive: bool) -> list[dict[str, Any]]:
    """Files and folders under ``path`` (directly, or at any depth when recursive), sorted by path."""
    prefix = f"{path}/" if path else ""
    if path and path in commit.files:
        raise StoreError(400, None, f"{path} is a file, not a folder")
    files: list[dict[str, Any]] = []
    folders: set[str] = set()
    for name, entry in commit.files.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :].split("/")
        depth = len(rest) if recursive else 1
        for i in range(1, min(depth, len(rest) - 1) + 1):
            folders.add(prefix + "/".join(rest[:i]))
        if recursive or len(rest) == 1:
            item: dict[str, Any] = {"type": "file", "oid": entry.tree_oid, "size": entry.size, "path": name}
            if entry.lfs:
                item["lfs"] = {
                    "oid": entry.sha256,
                    "size": entry.size,
                    "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                }
            files.append(item)
    if path and not files and not folders:
        raise StoreError(404, "EntryNotFound", f"{path} does not exist at this revision")
    dirs = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders]
    return sorted(files + dirs, key=lambda item: item["path"])


def tree(
    app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str, path: str = ""
) -> Response:
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    commit = app.storage.resolve(meta.repo_id, rev)
    entries = tree_entries(commit, path.strip("/"), recursive=req.flag("recursive"))
    return paginated(app, req, entries, app.tree_page_size)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end); None for no Range."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, _, last = spec.split(",")[0].strip().partition("-")
    try:
        if unit.strip() != "bytes":
            raise ValueError(unit)
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise StoreError(416, None, f"unsupported Range {header!r}") from None
    if start >= size or start > end:
        raise StoreError(416, None, f"Range {header!r} is outside a {size}-byte file")
    return start, end


def _read(f: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


def resolve(
    app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str, path: str
) -> Response:
    meta = visible_meta(app, f"{ns}/{name}", who, files=True)
    commit = app.storage.resolve(meta.repo_id, rev)
    entry = commit.files.get(check_path(path))
    if entry is None:
        raise StoreError(404, "EntryNotFound", f"{path} does not exist at revision {rev}")
    headers = {
        "X-Repo-Commit": commit.id,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
    }
    span = _byte_range(req.header("Range"), entry.size)
    start, end = span if span is not None else (0, entry.size - 1)
    length = max(end - start + 1, 0)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    status = 206 if span is not None else 200
    if req.method == "HEAD":
        return Response(status, b"", headers, length=length)
    return Response(status, _read(app.storage.open_blob(entry), start, length), headers, length=length)


ROUTES = [
    route("GET", "/api/models/{ns}/{name}/tree/{rev}/{path:path}", "tree", tree),
    route("GET", "/api/models/{ns}/{name}/tree/{rev}", "tree", tree),
    route("GET|HEAD", "/{ns}/{name}/resolve/{rev}/{path:path}", "resolve", resolve),
]
