"""Handlers for accounts, repos, listings, model info, refs and history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pruna_hub.hubstore.auth import Principal, check_read, check_write, hide_missing
from pruna_hub.hubstore.cards import derived, parse_front_matter
from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.storage import Commit, RepoMeta, check_repo_id, lfs_pointer
from pruna_hub.hubstore.wsgi import Request, Response, json_response, route

if TYPE_CHECKING:
    from pruna_hub.hubstore.app import HubApp

_SORT_KEYS = {"createdAt", "lastModified", "downloads", "likes", "trendingScore", "id"}
_LIST_FIELDS = (
    "_id",
    "id",
    "modelId",
    "likes",
    "downloads",
    "trendingScore",
    "private",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
)
_FULL_FIELDS = ("author", "sha", "lastModified", "gated", "disabled", "siblings")


def visible_meta(app: HubApp, repo_id: str, who: Principal | None, *, files: bool) -> RepoMeta:
    check_repo_id(repo_id)
    if not app.storage.exists(repo_id):
        raise hide_missing(repo_id, who)
    meta = app.storage.meta(repo_id)
    check_read(meta, who, files=files)
    return meta


def siblings(commit: Commit, *, blobs: bool) -> list[dict[str, Any]]:
    out = []
    for path, entry in sorted(commit.files.items()):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            item.update(size=entry.size, blobId=entry.tree_oid)
            if entry.lfs:
                item["lfs"] = {
                    "size": entry.size,
                    "sha256": entry.sha256,
                    "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
                }
        out.append(item)
    return out


def model_dict(app: HubApp, meta: RepoMeta, commit: Commit, *, blobs: bool = False) -> dict[str, Any]:
    """Every field the store knows about one model at one commit (callers pick the ones to send)."""
    return {
        "_id": meta.repo_id,
        "id": meta.repo_id,
        "modelId": meta.repo_id,
        "author": meta.namespace,
        "sha": commit.id,
        "createdAt": meta.created_at,
        "lastModified": commit.date,
        "private": meta.private,
        "gated": meta.gated,
        "disabled": False,
        "downloads": meta.downloads,
        "likes": meta.likes,
        "trendingScore": 0,
        "siblings": siblings(commit, blobs=blobs),
        "spaces": [],
        "usedStorage": sum(e.size for e in commit.files.values()),
        **derived(app.storage, commit),
    }


def whoami(app: HubApp, req: Request, who: Principal | None) -> Response:
    if who is None:
        raise StoreError(401, None, "Invalid username or password.")
    role = "write" if who.write else "read"
    return json_response(
        {
            "type": "user",
            "id": who.name,
            "name": who.name,
            "fullname": who.name,
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "roleInOrg": "admin"} for org in who.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": role}},
        }
    )


def _matches(req: Request, info: dict[str, Any]) -> bool:
    author, search, pipeline = req.arg("author"), req.arg("search"), req.arg("pipeline_tag")
    gated = req.arg("gated")
    return (
        (author is None or info["author"].lower() == author.lower())
        and (search is None or search.lower() in info["id"].lower())
        and (pipeline is None or info["pipeline_tag"] == pipeline)
        and all(f in info["tags"] for f in req.args("filter"))
        and (gated is None or bool(info["gated"]) == (gated.lower() == "true"))
    )


def _select(req: Request, info: dict[str, Any]) -> dict[str, Any]:
    expand = req.args("expand")
    if expand:
        return {k: info.get(k) for k in ("_id", "id", *expand)}
    keys = list(_LIST_FIELDS)
    if req.flag("full"):
        keys += _FULL_FIELDS
    if req.flag("cardData"):
        keys.append("cardData")
    if req.flag("config"):
        keys.append("config")
    return {k: info.get(k) for k in keys}


def list_models(app: HubApp, req: Request, who: Principal | None) -> Response:
    """Filtered, sorted (descending unless ``direction=1``) and paginated with a ``Link: rel="next"``."""
    found = []
    for meta in app.storage.list_repos():
        if meta.private and not (who is not None and who.owns(meta.namespace)):
            continue
        info = model_dict(app, meta, app.storage.resolve(meta.repo_id, "main"))
        if _matches(req, info):
            found.append(info)
    sort = req.arg("sort") or "createdAt"
    if sort not in _SORT_KEYS:
        raise StoreError(400, None, f"invalid sort {sort!r}; use one of {', '.join(sorted(_SORT_KEYS))}")
    found.sort(key=lambda i: (i[sort], i["id"]), reverse=req.arg("direction") != "1")
    return paginated(app, req, [_select(req, i) for i in found], app.page_size)


def paginated(app: HubApp, req: Request, items: list[Any], page_size: int) -> Response:
    start = int(req.arg("cursor") or 0)
    limit = req.arg("limit")
    size = min(page_size, int(limit)) if limit and limit.isdigit() and int(limit) > 0 else page_size
    page = items[start : start + size]
    headers = {}
    if start + size < len(items):
        params = {k: v for k, v in req.query.items() if k != "cursor"}
        headers["Link"] = f'<{req.url(req.path, {**params, "cursor": str(start + size)})}>; rel="next"'
    return json_response(page, headers=headers)


def model_info(
    app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str = "main"
) -> Response:
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    commit = app.storage.resolve(meta.repo_id, rev)
    info = model_dict(app, meta, commit, blobs=req.flag("blobs"))
    expand = req.args("expand")
    if expand:
        info = {k: info.get(k) for k in ("_id", "id", *expand)}
    return json_response(info)


def create_repo(app: HubApp, req: Request, who: Principal | None) -> Response:
    data = req.json()
    if data.get("type", "model") != "model":
        raise StoreError(400, None, "this store only holds model repos")
    name, org = data.get("name"), data.get("organization")
    if not isinstance(name, str):
        raise StoreError(400, None, "missing repo name")
    writer = check_write(org or (who.name if who else ""), who)
    repo_id = f"{org or writer.name}/{name}"
    check_repo_id(repo_id)
    private = bool(data.get("private")) or data.get("visibility") in ("private", "protected")
    url = f"{req.base_url}/{repo_id}"
    try:
        app.storage.create_repo(repo_id, private=private, author=writer.name)
    except StoreError as e:
        if e.status == 409:
            e.body["url"] = url
        raise
    return json_response({"url": url, "name": repo_id, "id": repo_id})


def delete_repo(app: HubApp, req: Request, who: Principal | None) -> Response:
    data = req.json()
    repo_id = f"{data.get('organization') or (who.name if who else '')}/{data.get('name')}"
    check_write(repo_id.split("/")[0], who)
    visible_meta(app, repo_id, who, files=False)
    app.storage.delete_repo(repo_id)
    return json_response({})


def settings(app: HubApp, req: Request, who: Principal | None, ns: str, name: str) -> Response:
    check_write(ns, who)
    visible_meta(app, f"{ns}/{name}", who, files=False)
    data = req.json()
    changes: dict[str, Any] = {}
    if "private" in data:
        changes["private"] = bool(data["private"])
    if "visibility" in data:  # what huggingface_hub 2.x sends
        changes["private"] = data["visibility"] in ("private", "protected")
    if "gated" in data:
        if data["gated"] not in (False, "auto", "manual"):
            raise StoreError(400, None, "gated must be false, 'auto' or 'manual'")
        changes["gated"] = data["gated"]
    app.storage.update_repo(f"{ns}/{name}", **changes)
    return json_response({})


def validate_yaml(app: HubApp, req: Request, who: Principal | None) -> Response:
    content = req.json().get("content")
    if not isinstance(content, str):
        raise StoreError(400, None, "content must be a string")
    if content.startswith("---") and parse_front_matter(content) is None:
        raise StoreError(400, None, "the card's YAML metadata is not a valid mapping")
    return json_response({"errors": [], "warnings": []})


def refs(app: HubApp, req: Request, who: Principal | None, ns: str, name: str) -> Response:
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    data = app.storage.refs(meta.repo_id)

    def items(kind: str, prefix: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": s} for n, s in sorted(data[kind].items())]

    return json_response(
        {
            "branches": items("branches", "refs/heads/"),
            "tags": items("tags", "refs/tags/"),
            "converts": [],
            "pullRequests": [],
        }
    )


def commits(app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str) -> Response:
    meta = visible_meta(app, f"{ns}/{name}", who, files=False)
    history = [
        {"id": c.id, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": c.author}]}
        for c in app.storage.history(meta.repo_id, rev)
    ]
    return paginated(app, req, history, app.page_size)


def create_ref(kind: str) -> Any:
    def handler(app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str) -> Response:
        check_write(ns, who)
        meta = visible_meta(app, f"{ns}/{name}", who, files=False)
        data = req.json()
        if kind == "tags":
            target, start = data.get("tag"), rev
        else:
            target, start = rev, data.get("startingPoint") or "main"
        if not isinstance(target, str):
            raise StoreError(400, None, "missing tag name")
        app.storage.create_ref(meta.repo_id, kind, target, start)
        return json_response({})

    return handler


def delete_ref(kind: str) -> Any:
    def handler(app: HubApp, req: Request, who: Principal | None, ns: str, name: str, rev: str) -> Response:
        check_write(ns, who)
        meta = visible_meta(app, f"{ns}/{name}", who, files=False)
        app.storage.delete_ref(meta.repo_id, kind, rev)
        return json_response({})

    return handler


def agent_harnesses(app: HubApp, req: Request, who: Principal | None) -> Response:
    """The client asks for this registry to tag its user-agent; an empty one disables the detection."""
    return json_response({"standardEnvVars": [], "harnesses": {}})


ROUTES = [
    route("GET", "/api/agent-harnesses", "agent_harnesses", agent_harnesses),
    route("GET", "/api/whoami-v2", "whoami", whoami),
    route("GET", "/api/models", "list_models", list_models),
    route("POST", "/api/repos/create", "create_repo", create_repo),
    route("DELETE", "/api/repos/delete", "delete_repo", delete_repo),
    route("POST", "/api/validate-yaml", "validate_yaml", validate_yaml),
    route("GET", "/api/models/{ns}/{name}/revision/{rev}", "model_info", model_info),
    route("GET", "/api/models/{ns}/{name}/refs", "refs", refs),
    route("GET", "/api/models/{ns}/{name}/commits/{rev}", "commits", commits),
    route("POST", "/api/models/{ns}/{name}/tag/{rev}", "tag", create_ref("tags")),
    route("DELETE", "/api/models/{ns}/{name}/tag/{rev}", "delete_tag", delete_ref("tags")),
    route("POST", "/api/models/{ns}/{name}/branch/{rev}", "branch", create_ref("branches")),
    route("DELETE", "/api/models/{ns}/{name}/branch/{rev}", "delete_branch", delete_ref("branches")),
    route("PUT", "/api/models/{ns}/{name}/settings", "settings", settings),
    route("GET", "/api/models/{ns}/{name}", "model_info", model_info),
]
