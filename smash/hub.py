"""PrunaModel to and from a Hub, through huggingface_hub only (works against huggingface.co or any
Hub-compatible endpoint named by ``HF_ENDPOINT``).

Downloads fetch only the files the folder loader reads, pinned to the requested revision, so a repo that
also carries pickle weights or large extras costs nothing extra; ``HF_HUB_OFFLINE=1`` serves a repo
already in the cache. Uploads write everything in ONE commit, so a reader never sees a half-published
model. This module never imports pruna_hub.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from smash.artifact_files import LOADER_PATTERNS, PICKLE_SUFFIXES, WEIGHTS_FILE
from smash.errors import ArtifactError, InvalidRepoIdError, UnsafeArtifactError


class Publishable(Protocol):
    """What a push needs of a model (``PrunaModel`` is one): it saves itself and names its algorithms."""

    @property
    def order(self) -> list[str]: ...

    def save_pretrained(self, save_directory: Any) -> Path: ...


DEFAULT_COMMIT_MESSAGE = "Upload smashed model"


def validate_repo_id(repo_id: object) -> str:
    """The Hub's own rules (``huggingface_hub.utils.validate_repo_id``), re-raised as a smash error."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hf_validate

    if not isinstance(repo_id, str):
        raise InvalidRepoIdError(repo_id, f"expected a string, got {type(repo_id).__name__}")
    try:
        hf_validate(repo_id)
    except HFValidationError as e:
        raise InvalidRepoIdError(repo_id, str(e).split("\n")[0]) from e
    return repo_id


def download_artifact(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """A local folder holding the files of ``repo_id`` at ``revision`` that ``load_folder`` needs."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    validate_repo_id(repo_id)
    where = f"{repo_id}@{revision or 'main'}"
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, token=token, allow_patterns=LOADER_PATTERNS)
        )
    except GatedRepoError as e:  # subclass of RepositoryNotFoundError: first
        raise ArtifactError(where, "the repo is gated", "Request access on the Hub and pass a token.") from e
    except RevisionNotFoundError as e:
        raise ArtifactError(where, "the revision does not exist", "Check the branch, tag or commit.") from e
    except RepositoryNotFoundError as e:
        raise ArtifactError(
            where, "the repo does not exist or is private", "Check the id and the token."
        ) from e
    except LocalEntryNotFoundError as e:
        raise ArtifactError(
            where, "the repo is not in the local cache and the Hub cannot be reached", "Go online once."
        ) from e
    if not any(folder.glob("*.safetensors")):
        _refuse_without_safetensors(repo_id, revision, token, where)
    return folder


def _refuse_without_safetensors(repo_id: str, revision: str | None, token: str | None, where: str) -> None:
    """No safetensors downloaded: say whether the repo only offers pickle, which is never loaded."""
    from huggingface_hub import HfApi, constants

    pickles: list[str] = []
    if not constants.is_offline_mode():
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision)
        pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise UnsafeArtifactError(
            where,
            f"only pickle weights are present ({', '.join(pickles)})",
            "Pickle can execute code when loaded and is never read; publish safetensors instead.",
        )
    raise ArtifactError(
        where, f"{WEIGHTS_FILE} is missing", "Is this a repo written by PrunaModel.push_to_hub?"
    )


def default_card(model: Publishable, repo_id: str) -> str:
    algorithms = ", ".join(model.order) or "none"
    return (
        "---\nlibrary_name: transformers\ntags:\n- smash\n- pruna\n---\n"
        f"# {repo_id}\n\nSmashed with: {algorithms}.\n\n"
        "```python\nfrom smash import PrunaModel\n\n"
        f'model = PrunaModel.from_pretrained("{repo_id}")\n```\n'
    )


def push_to_hub(
    model: Publishable,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    revision: str | None = None,
    card: Any = None,
) -> str:
    """Create the repo if needed and make the branch hold exactly this model, in one commit; return its sha.

    ``card`` is the README.md: a string or a ``huggingface_hub.ModelCard``; a short default otherwise.
    Files from an earlier push that the new model does not have are deleted in the same commit.
    """
    from huggingface_hub import HfApi

    validate_repo_id(repo_id)
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smash-push-") as tmp:
        folder = model.save_pretrained(tmp)
        (folder / "README.md").write_text(str(card) if card is not None else default_card(model, repo_id))
        operations = replace_with_folder(folder, api.list_repo_files(repo_id, revision=revision))
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision)
    return str(info.oid)


def replace_with_folder(folder: Path, remote_files: Iterable[str]) -> list[Any]:
    """The operations of ONE commit after which the branch holds exactly ``folder``: every local file
    added (the client skips unchanged ones), every other remote file deleted (``.gitattributes`` kept).
    Shared by ``push_to_hub`` and the service's ``HubClient.publish_folder``."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    operations: list[Any] = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=folder / f) for f in local]
    operations += [CommitOperationDelete(f) for f in remote_files if f not in local and f != ".gitattributes"]
    return operations
