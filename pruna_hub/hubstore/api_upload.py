"""Handlers that write files: preupload (regular or LFS?), the LFS batch/upload/verify trio, and commits."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from pruna_hub.hubstore.api_repos import visible_meta
from pruna_hub.hubstore.auth import Principal, check_write
from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.storage import Commit, FileEntry, check_path
from pruna_hub.hubstore.wsgi import Request, Response, json_response, route

if TYPE_CHECKING:
    from pruna_hub.hubstore.app import HubApp


def lfs_patterns(app: HubApp, commit: Commit) -> list[str]:
    entry = commit.files.get(".gitattributes")
    if entry is None or entry.size > 1 << 20:
        return []
    lines = app.storage.blob_path(entry.sha256).read_bytes().decode("utf-8", "replace").splitlines()
    return [line.split()[0] for line in lines if line.strip() and "filter=lfs" in line.split()[1:]]


def is_lfs(path: str, size: int, sample: bytes, patterns: list[str], threshold: int) -> bool:
    """The Hub's rule: big files, binary files, and files matched by an LFS line of .gitattributes."""
    name = path.rsplit("/", 1)[-1]
    matched = any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in patterns)
    return size >= threshold or b"\0" in sample or matched


def preupload(app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str) -> Response:
    check_write(ns, who)
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    commit = app.storage.resolve(meta.repo_id, rev)
    patterns = lfs_patterns(app, commit)
    answers = []
    for item in req.json().get("files", []):
        path = check_path(str(item.get("path")))
        try:
            sample = base64.b64decode(item.get("sample", ""))
        except (binascii.Error, TypeError):
            sample = b""
        lfs = is_lfs(path, int(item.get("size", 0)), sample, patterns, app.lfs_threshold)
        answer: dict[str, Any] = {
            "path": path,
            "uploadMode": "lfs" if lfs else "regular",
            "shouldIgnore": False,
        }
        existing = commit.files.get(path)
        if existing is not None:
            answer["oid"] = existing.sha256 if lfs else existing.git_oid
        answers.append(answer)
    return json_response({"files": answers, "commitOid": commit.id})


def _signature(app: HubApp, oid: str, size: int) -> str:
    return hmac.new(app.secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()


def lfs_batch(app: HubApp, req: Request, who: Principal | None, ns: str, name: str) -> Response:
    """Objects already stored get no ``actions``; others get a signed upload URL and a verify URL."""
    check_write(ns, who)
    visible_meta(app, f"{ns}/{name}", who, files=False)
    data = req.json()
    objects = []
    for obj in data.get("objects", []):
        oid, size = str(obj.get("oid")), int(obj.get("size", -1))
        item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
        if not app.storage.has_blob(oid, size):
            params = {"size": str(size), "sig": _signature(app, oid, size)}
            item["actions"] = {
                "upload": {"href": req.url(f"/api/lfs-upload/{oid}", params)},
                "verify": {"href": req.url(f"/api/lfs-verify/{ns}/{name}")},
            }
        objects.append(item)
    return json_response(
        {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
        headers={"Content-Type": "application/vnd.git-lfs+json"},
    )


def lfs_upload(app: HubApp, req: Request, who: Principal | None, oid: str) -> Response:
    """Like a pre-signed storage URL: no token, but the signature from the batch answer is required."""
    size = int(req.arg("size") or -1)
    if not hmac.compare_digest(req.arg("sig") or "", _signature(app, oid, size)):
        raise StoreError(403, None, "upload URL signature is invalid or expired")
    app.storage.put_stream(req.stream(), sha256=oid, size=size)
    return Response(200)


def lfs_verify(app: HubApp, req: Request, who: Principal | None, ns: str, name: str) -> Response:
    check_write(ns, who)
    data = req.json()
    if not app.storage.has_blob(str(data.get("oid")), int(data.get("size", -1))):
        raise StoreError(404, None, f"LFS object {data.get('oid')} was not uploaded")
    return json_response({})


def _parse_ndjson(body: bytes) -> list[dict[str, Any]]:
    try:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    except ValueError as e:
        raise StoreError(400, None, f"commit payload is not valid ndjson: {e}") from e
    if not lines or not all(isinstance(line, dict) for line in lines) or lines[0].get("key") != "header":
        raise StoreError(400, None, "commit payload must start with a header line")
    return lines


def commit(app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str) -> Response:
    writer = check_write(ns, who)
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    if req.flag("create_pr"):
        raise StoreError(400, None, "this store does not support pull requests; commit to a branch")
    lines = _parse_ndjson(req.body)
    header = lines[0].get("value") or {}
    put: dict[str, FileEntry] = {}
    delete_files: list[str] = []
    delete_folders: list[str] = []
    for line in lines[1:]:
        key, value = line.get("key"), line.get("value") or {}
        path = str(value.get("path"))
        if key == "file":
            try:
                data = base64.b64decode(value.get("content", ""), validate=True)
            except (binascii.Error, TypeError) as e:
                raise StoreError(400, None, f"content of {path} is not base64") from e
            put[path] = app.storage.entry_for_bytes(data, lfs=False)
        elif key == "lfsFile":
            put[path] = app.storage.entry_for_blob(str(value.get("oid")), int(value.get("size", -1)))
        elif key == "deletedFile":
            delete_files.append(path)
        elif key == "deletedFolder":
            delete_folders.append(path)
        else:
            raise StoreError(400, None, f"unsupported commit operation {key!r}")
    new = app.storage.commit(
        meta.repo_id,
        rev,
        title=str(header.get("summary") or "update"),
        message=str(header.get("description") or ""),
        author=writer.name,
        parent=header.get("parentCommit"),
        put=put,
        delete_files=delete_files,
        delete_folders=delete_folders,
    )
    return json_response(
        {
            "success": True,
            "commitOid": new.id,
            "pullRequestUrl": None,
            "commitUrl": f"{req.base_url}/{meta.repo_id}/commit/{new.id}",
        }
    )


ROUTES = [
    route("POST", "/api/models/{ns}/{name}/preupload/{rev}", "preupload", preupload),
    route("POST", "/api/models/{ns}/{name}/commit/{rev}", "commit", commit),
    route("POST", "/{ns}/{name}.git/info/lfs/objects/batch", "lfs_batch", lfs_batch),
    route("PUT", "/api/lfs-upload/{oid}", "lfs_upload", lfs_upload),
    route("POST", "/api/lfs-verify/{ns}/{name}", "lfs_verify", lfs_verify),
]
