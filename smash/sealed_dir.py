"""Directories this machine wrote, and can prove it wrote: the only place code-bearing files are read from.

torch's compile artifacts (pickled graph entries, precompiled functions, generated Python, shared
libraries) run code when they are loaded. They are kept under a cache root that this machine writes,
and each directory is *sealed* after this process wrote into it: ``.seal.json`` lists every file with its
sha256, and an HMAC of that list under a secret key that lives in the cache root (32 random bytes, mode
0600, created once). Before anything reads the directory, ``verify`` checks the HMAC and every file;
a directory that fails (a file added, changed or linked, a seal copied from another machine or
written by hand) is removed and rebuilt, never loaded.

What this defends against: files that arrive from outside (a model folder, a snapshot, a repo, an archive
someone else packed) and files dropped into the cache by anyone who cannot read the key. Who can read
the key (this user, root) can forge a seal; they can also run code as this user anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEAL_FILE = ".seal.json"
KEY_FILE = ".seal-key"
SEAL_VERSION = 1
_KEY_BYTES = 32


class UntrustedCacheRootError(OSError):
    """The cache root's key file is not this user's alone; nothing under the root can be trusted."""


def secret_key(root: Path) -> bytes:
    """This cache root's key, created on first use; refused when others could read or have written it."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(_KEY_BYTES))
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise UntrustedCacheRootError(
            f"{path} must be a regular file owned by this user with mode 0600; remove it (and the cache "
            "beside it) so that a new key is made"
        )
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise UntrustedCacheRootError(f"{path} is not a key smash wrote; remove it and the cache beside it")
    return key


def _mac(key: bytes, files: dict[str, str]) -> str:
    return hmac.new(key, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def _listing(directory: Path) -> dict[str, str] | None:
    """sha256 of every file under ``directory`` (the seal excluded); None if anything is not a plain file
    or directory (a symlink, fifo or device: nothing torch writes). Links are never followed."""
    files: dict[str, str] = {}
    for top, dirs, names in os.walk(directory):
        for name in (*dirs, *names):
            path = Path(top) / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                return None
            relative = path.relative_to(directory).as_posix()
            if relative != SEAL_FILE:
                files[relative] = _sha256(path)
    return dict(sorted(files.items()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(directory: Path, key: bytes) -> None:
    """Record what ``directory`` holds now as written by this machine."""
    files = _listing(directory)
    if files is None:
        raise UntrustedCacheRootError(f"{directory} holds something that is not a regular file")
    record = {"version": SEAL_VERSION, "files": files, "mac": _mac(key, files)}
    tmp = directory / f"{SEAL_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, directory / SEAL_FILE)


def verify(directory: Path, key: bytes) -> str | None:
    """None when ``directory`` holds exactly what this machine sealed; otherwise why it does not."""
    try:
        record: Any = json.loads((directory / SEAL_FILE).read_text())
    except FileNotFoundError:
        return "it has no seal"
    except (OSError, ValueError) as e:
        return f"its seal cannot be read ({type(e).__name__})"
    if not isinstance(record, dict) or record.get("version") != SEAL_VERSION:
        return "its seal is not one this version of smash writes"
    sealed, mac = record.get("files"), record.get("mac")
    if not isinstance(sealed, dict) or not isinstance(mac, str):
        return "its seal is malformed"
    if not hmac.compare_digest(_mac(key, sealed), mac):
        return "its seal was not made with this machine's key"
    present = _listing(directory)
    if present is None:
        return "it holds a link or another non-regular file"
    changed = sorted(name for name, digest in present.items() if sealed.get(name) != digest)
    if changed:
        return f"{len(changed)} file(s) were added or changed after it was sealed (first: {changed[0]})"
    return None


def ensure_trusted(directory: Path, key: bytes) -> None:
    """Remove ``directory`` unless it is absent, empty or verified, so that nothing untrusted is read."""
    if directory.is_symlink():
        log.warning("removing %s before use: it is a link, not a directory this machine wrote", directory)
        directory.unlink()
        return
    if not directory.exists() or not any(directory.iterdir()):
        return
    why = verify(directory, key)
    if why is None:
        return
    log.warning("removing %s before use: %s; it will be rebuilt", directory, why)
    shutil.rmtree(directory)
