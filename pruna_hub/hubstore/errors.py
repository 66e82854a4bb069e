"""The one error type of the store: an HTTP answer, raised anywhere below the app and rendered once."""

from __future__ import annotations

from pruna_hub.errors import PrunaHubError


class StoreError(PrunaHubError):
    """A refusal with the status and ``X-Error-Code`` the Hub sends, so the client raises its usual error."""

    def __init__(self, status: int, code: str | None, message: str, **body: object) -> None:
        self.body = body  # extra JSON fields of the answer (the Hub's 409 on create carries the repo url)
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code or ''} {message}".replace("  ", " "))
