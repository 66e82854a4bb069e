"""A Hub-compatible local model store that the real ``huggingface_hub`` client talks to unchanged.

Nothing here reaches huggingface.co. The store keeps model repos in a folder (content-addressed blobs, so
identical files are stored once; immutable commits; branches; tags) and speaks the subset of the Hub HTTP
API that huggingface_hub 2.4 uses (see DESIGN.md): whoami, list models (filters, sort, ``Link``
pagination, ``expand``), model info (by revision too), tree, resolve (HEAD/GET, ETag, X-Repo-Commit,
Range), create/delete repo, settings, validate-yaml, preupload, LFS batch/upload/verify, ndjson commits
(412 on a stale parent), tags, branches, refs and commit history. Set ``HF_HUB_DISABLE_XET=1``: the store
does not speak Xet (``install()`` and ``point_client_at()`` set it for you).

API::

    from pruna_hub.hubstore import LocalHub, Principal, point_client_at

    hub = LocalHub(root, tokens={"hf_w": Principal("pruna", orgs=("PrunaAI",))})  # tokens=None: open store
    with hub.install() as endpoint:            # in-process, no socket
        HfApi(token="hf_w").create_repo("PrunaAI/x")
    with hub.serve(port=0) as endpoint:        # loopback port; HF_ENDPOINT=endpoint for subprocesses
        with point_client_at(endpoint):        # this process, over the socket
            ...
    hub.faults.add("model_info", 429, times=2, retry_after=0)   # also 500/503/409/412
    hub.faults.truncate("resolve")                              # half a body, full Content-Length
    hub.calls / hub.operations()                                # every request, by operation name
    hub.storage.update_repo("org/x", gated="auto", grants=("alice",), private=False)

Access: public repos are readable by anyone; private ones only by their owners (else ``RepoNotFound``,
401 without a token, 404 with one); a gated repo's files need an owner or a granted user (else
``GatedRepo``, 401/403); writes need a write token owning the namespace. From the shell:
``pruna-hub hub serve --root DIR --port N [--token TOKEN:USER[:ORG,...]]``.

Not reproduced: Xet storage, pull requests (``create_pr``), revisions containing ``/``, ``.gitignore``
handling in preupload, multipart LFS uploads, datasets and spaces, repo moves, likes, discussions,
paths-info, and search ranking (``search`` is a case-insensitive substring match).
"""

from pruna_hub.hubstore.app import HubApp
from pruna_hub.hubstore.auth import Principal
from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.faults import Call, Faults
from pruna_hub.hubstore.server import IN_PROCESS_ENDPOINT, LocalHub, point_client_at
from pruna_hub.hubstore.storage import Storage

__all__ = [
    "IN_PROCESS_ENDPOINT",
    "Call",
    "Faults",
    "HubApp",
    "LocalHub",
    "Principal",
    "Storage",
    "StoreError",
    "point_client_at",
]
