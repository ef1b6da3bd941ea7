"""Client secrets: 256-bit random values stored as a salted HMAC-SHA256.

A slow password hash (bcrypt) on every token or introspection call caps a
server at tens of requests a second; a secret with 256 bits of entropy needs no
stretching.  Imported bcrypt hashes from the Go original still verify, and the
caller re-stores them in the fast form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import bcrypt

PREFIX = "hmac-sha256"


def generate_client_secret() -> str:
    # "ags_" marks AuthGate secrets so secret scanners can find leaked ones.
    return "ags_" + base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()


def hash_client_secret(secret: str) -> str:
    salt = secrets.token_hex(16)
    digest = hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}${salt}${digest}"


def verify_client_secret(stored: str, secret: str) -> bool:
    if not stored or not secret:
        return False
    if stored.startswith(PREFIX + "$"):
        try:
            _, salt, digest = stored.split("$")
            expected = hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()
        except ValueError:
            return False
        return hmac.compare_digest(expected, digest)
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            return bcrypt.checkpw(secret.encode(), stored.encode())
        except ValueError:
            return False
    return False


def is_legacy(stored: str) -> bool:
    return not stored.startswith(PREFIX + "$")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
