"""Scope parsing, checks and the descriptions shown to people."""

from __future__ import annotations

from authgate.services.errors import OAuthError

DESCRIPTIONS = {
    "openid": "Confirm your identity (OpenID Connect sign-in)",
    "profile": "Read your profile: name and username",
    "email": "Read your email address",
    "offline_access": "Stay signed in and refresh access while you are away",
    "read": "Read data on your behalf",
    "write": "Change data on your behalf",
}


def parse(scope: str | None) -> list[str]:
    """Space-separated scope string -> ordered, de-duplicated list."""
    seen: list[str] = []
    for item in (scope or "").split():
        if item not in seen:
            seen.append(item)
    return seen


def describe(scopes: list[str]) -> list[tuple[str, str]]:
    return [(s, DESCRIPTIONS.get(s, f"Access “{s}”")) for s in scopes]


def resolve_requested(requested: str | None, allowed: list[str]) -> list[str]:
    """The requested scopes if all are allowed; the client's scopes when none asked."""
    wanted = parse(requested)
    if not wanted:
        return list(allowed)
    for item in wanted:
        if not _valid_token(item):
            raise OAuthError("invalid_scope", f"Malformed scope: {item!r}")
    extra = [s for s in wanted if s not in allowed]
    if extra:
        raise OAuthError("invalid_scope",
                         f"Scope not allowed for this client: {' '.join(extra)}")
    return wanted


def _valid_token(item: str) -> bool:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return all(c == "\x21" or "\x23" <= c <= "\x5b" or "\x5d" <= c <= "\x7e" for c in item)
