"""JWS compact serialisation with a signing key prepared once.

``jwt.encode`` prepares its key on every call -- for HS256 it scans the secret
with regular expressions to refuse PEM and SSH keys, for RSA and EC it checks
the key object -- and rebuilds the same header each time: on a client-credentials
request that was more than the signature itself.  :class:`CompactSigner`
produces the very bytes ``jwt.encode(claims, key, algorithm=alg, headers=...)``
does (PyJWT's header and payload JSON, its base64url encoding and its algorithm
object's ``sign``), with the key prepared and the header encoded at start-up.
Verification stays with ``jwt.decode``.
"""

from __future__ import annotations

import json
from calendar import timegm
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_encode

_SEPARATORS = (",", ":")


class CompactSigner:
    """Signs claims as ``jwt.encode`` would with ``alg``, ``key`` and extra ``headers``."""

    def __init__(self, alg: str, key: Any, headers: Mapping[str, Any] | None = None) -> None:
        self.alg = alg
        self._algorithm = get_default_algorithms()[alg]
        self._key = self._algorithm.prepare_key(key)
        # PyJWS's header: typ and alg, the extra headers over them, keys sorted.
        header = {"typ": "JWT", "alg": alg, **(headers or {})}
        encoded = base64url_encode(json.dumps(header, separators=_SEPARATORS,
                                              sort_keys=True).encode())
        self._header = encoded + b"."

    def sign(self, claims: Mapping[str, Any]) -> str:
        payload = dict(claims)
        # What PyJWT.encode does to a payload before serialising it.
        for name in ("exp", "iat", "nbf"):
            if isinstance(payload.get(name), datetime):
                payload[name] = timegm(payload[name].utctimetuple())
        if "iss" in payload and not isinstance(payload["iss"], str):
            raise TypeError("Issuer (iss) must be a string.")
        signing_input = self._header + base64url_encode(
            json.dumps(payload, separators=_SEPARATORS).encode("utf-8"))
        signature = self._algorithm.sign(signing_input, self._key)
        return (signing_input + b"." + base64url_encode(signature)).decode()
