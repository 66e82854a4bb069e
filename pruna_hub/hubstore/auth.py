"""Tokens and access rules, modelled on the Hub's answers so that the client raises its usual errors.

- public repo: anyone reads;
- private repo: only its owners (the token's user, or one of its orgs, is the namespace) read; others get
  ``RepoNotFound`` (401 without a token, 404 with one), exactly like a missing repo;
- gated repo: metadata is public, files need an owner or a user in the repo's ``grants``; others get
  ``GatedRepo`` (401 without a token, 403 with one);
- writes need a write token owning the namespace (401 without a token, 403 otherwise).

With ``tokens=None`` the store is open: anonymous requests act as an owner with write access everywhere
(the offline demo). Unknown tokens are refused with the Hub's "Invalid credentials" 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pruna_hub.hubstore.errors import StoreError
from pruna_hub.hubstore.storage import RepoMeta

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to. ``orgs`` are namespaces the user also owns."""

    name: str
    orgs: tuple[str, ...] = ()
    write: bool = True
    everywhere: bool = False  # the anonymous user of an open store

    def owns(self, namespace: str) -> bool:
        return self.everywhere or namespace == self.name or namespace in self.orgs


OPEN = Principal("anonymous", everywhere=True)


def normalize_tokens(tokens: Mapping[str, Principal | str] | None) -> dict[str, Principal] | None:
    """``{"hf_x": "alice"}`` is shorthand for ``{"hf_x": Principal("alice")}``."""
    if tokens is None:
        return None
    return {t: p if isinstance(p, Principal) else Principal(p) for t, p in tokens.items()}


def principal_for(authorization: str | None, tokens: Mapping[str, Principal] | None) -> Principal | None:
    """The caller, ``None`` for anonymous; an unknown token is a 401 like on the Hub."""
    if not authorization:
        return OPEN if tokens is None else None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise StoreError(401, None, INVALID_CREDENTIALS)
    if tokens is None:
        return OPEN
    if token not in tokens:
        raise StoreError(401, None, INVALID_CREDENTIALS)
    return tokens[token]


def check_read(meta: RepoMeta, who: Principal | None, *, files: bool) -> None:
    owner = who is not None and who.owns(meta.namespace)
    if meta.private and not owner:
        raise StoreError(401 if who is None else 404, "RepoNotFound", f"Repository {meta.repo_id} not found")
    if files and meta.gated and not owner and (who is None or who.name not in meta.grants):
        status = 401 if who is None else 403
        raise StoreError(
            status, "GatedRepo", f"Access to model {meta.repo_id} is restricted. Ask for access."
        )


def check_write(namespace: str, who: Principal | None) -> Principal:
    if who is None:
        raise StoreError(401, None, "You must be authenticated to write; pass a token")
    if not (who.write and who.owns(namespace)):
        raise StoreError(403, None, f"You don't have the rights to write to the namespace {namespace}")
    return who


def hide_missing(repo_id: str, who: Principal | None) -> StoreError:
    """A missing repo answers like a private one: 401 without a token, 404 with one."""
    return StoreError(401 if who is None else 404, "RepoNotFound", f"Repository {repo_id} not found")
