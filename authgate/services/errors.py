"""Protocol errors raised by services and turned into responses by the views."""

from __future__ import annotations


class OAuthError(Exception):
    """An RFC 6749 §5.2-style error: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str = "", status: int = 400,
                 headers: dict[str, str] | None = None):
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    """401 + WWW-Authenticate when the client tried HTTP Basic (RFC 6749 §5.2), else 400."""
    if basic:
        return OAuthError("invalid_client", description, 401,
                          {"WWW-Authenticate": 'Basic realm="authgate"'})
    return OAuthError("invalid_client", description, 400)
