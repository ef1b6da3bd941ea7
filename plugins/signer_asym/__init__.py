"""RS256 / ES256 signer (component ``asym``): a private key signs, JWKS publishes the public keys.

Selected when ``JWT_SIGNING_ALGORITHM`` is ``RS256`` or ``ES256`` (or with
``authgate.signer = asym``).  Settings (section "Tokens"):

``JWT_PRIVATE_KEY_PATH`` (``authgate.jwt_private_key_path``)
    PEM file of the signing key.  RS256 needs an RSA key of at least 2048 bits,
    ES256 an EC P-256 key.  PKCS#1 (``BEGIN RSA PRIVATE KEY``), PKCS#8
    (``BEGIN PRIVATE KEY``) and SEC1 (``BEGIN EC PRIVATE KEY``) are read; every
    PEM block of the file is tried in order, so ``EC PARAMETERS`` +
    ``EC PRIVATE KEY`` files work.  Encrypted keys are not supported.
``JWT_PRIVATE_KEY_PEM`` (secret)
    The same PEM inline; wins over ``JWT_PRIVATE_KEY_PATH`` (a warning is
    logged when both are set).  Literal ``\\n`` sequences are accepted as line
    breaks.
``JWT_KEY_ID``
    The ``kid`` of the signing key.  Empty: the key's RFC 7638 JWK thumbprint
    (SHA-256, 43 characters).  Tokens carrying the Go original's derived kid
    (base64url SHA-256 of the DER SubjectPublicKeyInfo) are accepted as well, so
    tokens issued before a migration keep verifying.
``JWT_PREVIOUS_KEY_PATHS``
    PEM files (comma- or space-separated) of retired keys, private or public
    (``PUBLIC KEY``, ``RSA PUBLIC KEY`` or a certificate).  They never sign;
    their public keys stay in the JWKS and tokens they signed still verify.
    Each must suit the algorithm, like the signing key.  Their ``kid`` is
    always derived.

Key rotation
------------
Tokens carry the ``kid`` of the key that signed them and :meth:`verify` picks
the key by that ``kid``, so several keys can be trusted at once:

1. Generate the new key (``openssl genrsa -out rsa-2025.pem 2048`` or
   ``openssl ecparam -genkey -name prime256v1 -noout -out ec-2025.pem``;
   ``chmod 600`` it).
2. Add the current key's file to ``JWT_PREVIOUS_KEY_PATHS``.
3. Point ``JWT_PRIVATE_KEY_PATH`` at the new file.
4. Restart.  New tokens are signed by the new key and carry its ``kid``;
   tokens signed before the restart still verify, and the JWKS lists both
   keys (the signing key first), so resource servers that cache the JWKS
   keep working.
5. After the longest token lifetime has passed (``REFRESH_TOKEN_EXPIRATION``,
   720h by default, since refresh tokens are JWTs signed by the same key),
   remove the old file from ``JWT_PREVIOUS_KEY_PATHS``, restart, and delete it.

Leave ``JWT_KEY_ID`` empty when you rotate this way: a retired key is
published under its derived ``kid``, so tokens signed while an explicit
``JWT_KEY_ID`` was in force would no longer find their key.  Replacing the key
without listing the old one (as the original requires) invalidates every
issued token.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.errors import ConfigurationError
from authgate.jwssign import CompactSigner
from authgate.settings import Setting

from .keys import (
    ALGORITHMS,
    PrivateKey,
    PublicKey,
    check_key,
    derive_kid,
    legacy_kid,
    load_private_key,
    load_private_key_file,
    load_verification_key_file,
    public_jwk,
)

log = logging.getLogger("authgate.signer")

__all__ = ["AsymmetricSigner"]


class AsymmetricSigner:
    """Signs with one RSA or EC key; verifies with it and any retired keys.

    :param alg: ``RS256`` or ``ES256``.
    :param private_key: the signing key (a cryptography private key object).
    :param kid: its key id; ``None`` derives one from the public key.
    :param previous_keys: retired keys (public or private) that still verify.
    :param previous_sources: names of the retired keys for error messages.
    """

    def __init__(self, alg: str, private_key: PrivateKey, *, kid: str | None = None,
                 previous_keys: Sequence[PublicKey | PrivateKey] = (),
                 previous_sources: Sequence[str] | None = None):
        if alg not in ALGORITHMS:
            raise ConfigurationError(
                f"The asym signer signs with RS256 or ES256, not {alg!r}; set "
                "JWT_SIGNING_ALGORITHM=RS256 or ES256 (HS256 uses the hs256 signer)")
        problem = check_key(alg, private_key)
        if problem:
            raise ConfigurationError(f"NewLocalTokenProvider: {problem}")
        if not hasattr(private_key, "sign"):
            raise ConfigurationError("NewLocalTokenProvider: the signing key must be a "
                                     "private key")
        self.alg = alg
        self._private_key = private_key
        public = private_key.public_key()
        self.kid: str = kid.strip() if kid and kid.strip() else derive_kid(public)

        sources = list(previous_sources or [f"#{i + 1}" for i in range(len(previous_keys))])
        verification: dict[str, PublicKey] = {self.kid: public}
        seen: dict[str, str] = {self.kid: "the signing key"}
        current_derived = derive_kid(public)
        for key, source in zip(previous_keys, sources, strict=True):
            problem = check_key(alg, key)
            if problem:
                raise ConfigurationError(f"JWT_PREVIOUS_KEY_PATHS entry {source}: {problem}")
            key_public = key.public_key() if hasattr(key, "public_key") else key
            key_kid = derive_kid(key_public)
            if key_kid == current_derived:
                raise ConfigurationError(
                    f"JWT_PREVIOUS_KEY_PATHS entry {source} is the current signing key; "
                    "list only retired keys there")
            if key_kid in seen:
                raise ConfigurationError(
                    f"Duplicate key id {key_kid!r}: JWT_PREVIOUS_KEY_PATHS entry {source} "
                    f"has the same kid as {seen[key_kid]}; every key needs its own kid")
            seen[key_kid] = f"JWT_PREVIOUS_KEY_PATHS entry {source}"
            verification[key_kid] = key_public
        self.previous_kids: tuple[str, ...] = tuple(list(verification)[1:])
        # Served on every JWKS request: computed once.  Current key first.
        self._jwks = tuple(public_jwk(k, alg, kid) for kid, k in verification.items())
        # Tokens from the Go original carry its kid derivation; accept them too
        # (verification only, never published).
        for key_public in list(verification.values()):
            verification.setdefault(legacy_kid(key_public), key_public)
        self._verification_keys = verification
        self._signer = CompactSigner(alg, private_key, {"kid": self.kid, "typ": "JWT"})

    def sign(self, claims: Mapping[str, Any]) -> str:
        # The bytes jwt.encode(claims, key, algorithm=alg, headers={"kid": ..., "typ":
        # "JWT"}) gives, with the key prepared once (authgate.jwssign).
        return self._signer.sign(claims)

    def verify(self, token: str, *, audience: str | Sequence[str] | None = None) -> dict:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("Token has no key id (kid)")
        key = self._verification_keys.get(kid)
        if key is None:
            raise jwt.InvalidTokenError(f"Unknown key id (kid) {kid!r}")
        return jwt.decode(token, key, algorithms=[self.alg], audience=audience,
                          options={"require": ["exp", "iat"],
                                   "verify_aud": audience is not None})

    def jwks(self) -> dict:
        # Fresh containers so a caller cannot alter the cached set.
        return {"keys": [dict(jwk) for jwk in self._jwks]}


def _warn_if_exposed(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("Signing key file %s is accessible by group or others (mode %s); "
                    "make it readable only by the service user: chmod 600 %s",
                    path, oct(stat.S_IMODE(mode)), path)


def _factory(ctx: BuildContext) -> AsymmetricSigner:
    settings = ctx.settings
    alg = settings.jwt_signing_algorithm
    if alg not in ALGORITHMS:
        raise ConfigurationError(
            f"The asym signer signs with RS256 or ES256 but JWT_SIGNING_ALGORITHM is {alg}; "
            "set JWT_SIGNING_ALGORITHM=RS256 or ES256")
    pem, path = settings.jwt_private_key_pem, settings.jwt_private_key_path
    if pem:
        if path:
            log.warning("Both JWT_PRIVATE_KEY_PEM and JWT_PRIVATE_KEY_PATH are set; using "
                        "JWT_PRIVATE_KEY_PEM (the file %s is ignored)", path)
        source = "JWT_PRIVATE_KEY_PEM"
        private_key = load_private_key(pem, source)
    elif path:
        source = f"file {path}"
        private_key = load_private_key_file(path)
        _warn_if_exposed(path)
    else:
        raise ConfigurationError(
            f"{alg} signing needs a private key: set JWT_PRIVATE_KEY_PATH "
            "(authgate.jwt_private_key_path) to a PEM file, or JWT_PRIVATE_KEY_PEM to the "
            "PEM text; " + ("generate one with: openssl genrsa -out rsa-private.pem 2048"
                            if alg == "RS256" else
                            "generate one with: openssl ecparam -genkey -name prime256v1 "
                            "-noout -out ec-private.pem"))
    problem = check_key(alg, private_key)
    if problem:
        raise ConfigurationError(f"NewLocalTokenProvider: {problem} (signing key: {source})")
    previous_paths = list(settings.jwt_previous_key_paths)
    previous = [load_verification_key_file(p) for p in previous_paths]
    signer = AsymmetricSigner(alg, private_key, kid=settings.jwt_key_id or None,
                              previous_keys=previous, previous_sources=previous_paths)
    log.info("Token signing: %s (kid=%s)", alg, signer.kid)
    if signer.previous_kids:
        log.info("Token verification also accepts %d previous key(s): %s",
                 len(signer.previous_kids),
                 ", ".join(f"kid={kid}" for kid in signer.previous_kids))
    return signer


@hookimpl
def authgate_add_settings(spec):
    spec.extend([
        Setting("jwt_private_key_path", "JWT_PRIVATE_KEY_PATH", "str", "", section="Tokens",
                help="RS256/ES256: PEM file of the signing key (RSA of at least 2048 bits "
                     "for RS256, EC P-256 for ES256; PKCS#1, PKCS#8 or SEC1, not "
                     "encrypted). Keep it mode 0600."),
        Setting("jwt_private_key_pem", "JWT_PRIVATE_KEY_PEM", "str", "", secret=True,
                section="Tokens",
                help="RS256/ES256: the signing key's PEM text inline; wins over "
                     "JWT_PRIVATE_KEY_PATH when both are set."),
        Setting("jwt_key_id", "JWT_KEY_ID", "str", "", section="Tokens",
                help="RS256/ES256: `kid` of the signing key. Empty: the key's RFC 7638 "
                     "JWK thumbprint."),
        Setting("jwt_previous_key_paths", "JWT_PREVIOUS_KEY_PATHS", "list", (),
                section="Tokens",
                help="RS256/ES256 key rotation: PEM files (private or public keys) of "
                     "retired signing keys. They never sign, but stay in the JWKS and still "
                     "verify the tokens they signed. Remove one after the longest token "
                     "lifetime has passed."),
    ], owner="signer_asym")


@hookimpl
def authgate_register_signers():
    return [ComponentSpec("asym", _factory,
                          "RS256 or ES256 with a PEM private key (JWT_PRIVATE_KEY_PATH); "
                          "publishes JWKS, supports key rotation")]
