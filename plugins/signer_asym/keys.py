"""PEM key loading, algorithm checks, key ids and JWKs for the asymmetric signer.

Loading follows the Go original (``internal/token/key.go``): every PEM block of
the data is tried in order, each as PKCS#8 (RSA or EC only), then PKCS#1 RSA,
then SEC1 EC; the first block that parses wins.  The block's label is not
trusted, so a file holding ``EC PARAMETERS`` + ``EC PRIVATE KEY`` (what
``openssl ecparam -genkey`` writes without ``-noout``) or a certificate followed
by its key loads as well.  Encrypted PEM is not supported.

Error messages keep the wording of the AuthGate troubleshooting guide
("failed to load signing key: ...", "NewLocalTokenProvider: ...") so that an
operator searching for the logged line finds the right section.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authgate.errors import ConfigurationError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

ALGORITHMS = ("RS256", "ES256")
MIN_RSA_BITS = 2048
P256_COORDINATE_BYTES = 32

LOAD_ERROR = "failed to load signing key"
NO_PEM_BLOCK = "no PEM block found in key data"
NO_SUPPORTED_KEY = "no supported private key found in PEM file"

# Go's names for the curves, as the guide prints them ("got P-384").
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521",
                "secp224r1": "P-224"}

_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----(.*?)-----END \1-----", re.DOTALL)

# The order the original tries a block in: PKCS#8, PKCS#1 RSA, SEC1 EC.
_PRIVATE_FORMATS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")

_GENERATE_HINT = {
    "RS256": "generate one with: openssl genrsa -out rsa-private.pem 2048",
    "ES256": "generate one with: openssl ecparam -genkey -name prime256v1 -noout "
             "-out ec-private.pem",
}


@dataclass(frozen=True)
class PemBlock:
    label: str
    headers: dict[str, str]
    der: bytes | None  # None when the body is not valid base64

    @property
    def encrypted(self) -> bool:
        return (self.label == "ENCRYPTED PRIVATE KEY"
                or "ENCRYPTED" in self.headers.get("Proc-Type", "").upper())


def pem_blocks(data: bytes | str) -> list[PemBlock]:
    """Every PEM block of ``data``, in order (text outside blocks is ignored)."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    blocks = []
    for match in _PEM_BLOCK.finditer(text):
        headers: dict[str, str] = {}
        body: list[str] = []
        for line in match.group(2).splitlines():
            line = line.strip()
            if not line:
                continue
            if ":" in line and not body:
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
            else:
                body.append(line)
        try:
            der: bytes | None = base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError):
            der = None
        blocks.append(PemBlock(match.group(1), headers, der))
    return blocks


def _armor(label: str, der: bytes) -> bytes:
    return (f"-----BEGIN {label}-----\n".encode() + base64.encodebytes(der)
            + f"-----END {label}-----\n".encode())


def _key_type_name(key: object) -> str:
    """A readable name for a key cryptography loaded (``Ed25519PrivateKey`` ...)."""
    for cls in type(key).__mro__:
        if cls.__module__.startswith("cryptography.hazmat.primitives"):
            return cls.__name__
    return type(key).__name__


def _private_key_from_der(der: bytes, skipped: list[str]) -> PrivateKey | None:
    for label in _PRIVATE_FORMATS:
        try:
            key = serialization.load_pem_private_key(_armor(label, der), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return key
        skipped.append(_key_type_name(key))  # e.g. an Ed25519 PKCS#8 key
    return None


def _public_key_from_der(label: str, der: bytes, skipped: list[str]) -> PublicKey | None:
    candidates = []
    if label == "CERTIFICATE":
        with contextlib.suppress(ValueError):
            candidates.append(x509.load_der_x509_certificate(der).public_key())
    for public_label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
        try:
            candidates.append(serialization.load_pem_public_key(_armor(public_label, der)))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    for key in candidates:
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            return key
        skipped.append(_key_type_name(key))
    return None


def _describe(source: str, blocks: list[PemBlock], skipped: list[str]) -> str:
    found = ", ".join(b.label for b in blocks) or "nothing"
    detail = f" ({source}; PEM blocks found: {found}"
    if skipped:
        detail += f"; unsupported key types skipped: {', '.join(dict.fromkeys(skipped))}"
    return detail + "; supported: RSA or ECDSA keys in PKCS#1, PKCS#8 or SEC1 PEM)"


def _encrypted_error(source: str) -> ConfigurationError:
    return ConfigurationError(
        f"{LOAD_ERROR}: encrypted private keys are not supported ({source}); write an "
        "unencrypted copy readable only by the service user, e.g. "
        "openssl pkey -in encrypted.pem -out private.pem && chmod 600 private.pem")


def _normalise(data: bytes | str) -> bytes | str:
    # An inline PEM set through an environment variable often arrives with
    # literal "\n" sequences instead of line breaks.
    if isinstance(data, str) and "\n" not in data.strip() and "\\n" in data:
        return data.replace("\\n", "\n")
    return data


def load_private_key(data: bytes | str, source: str) -> PrivateKey:
    """The first RSA or EC private key in ``data``; ``source`` names it in errors."""
    blocks = pem_blocks(_normalise(data))
    if not blocks:
        raise ConfigurationError(f"{LOAD_ERROR}: {NO_PEM_BLOCK} ({source})")
    skipped: list[str] = []
    for block in blocks:
        if block.der is None or block.encrypted:
            continue
        key = _private_key_from_der(block.der, skipped)
        if key is not None:
            return key
    if any(block.encrypted for block in blocks):
        raise _encrypted_error(source)
    raise ConfigurationError(f"{LOAD_ERROR}: {NO_SUPPORTED_KEY}"
                             + _describe(source, blocks, skipped))


def load_verification_key(data: bytes | str, source: str) -> PublicKey:
    """A retired key: the public half of the first private key, else the first
    public key (``PUBLIC KEY``, ``RSA PUBLIC KEY`` or a certificate's)."""
    blocks = pem_blocks(_normalise(data))
    if not blocks:
        raise ConfigurationError(f"{LOAD_ERROR}: {NO_PEM_BLOCK} ({source})")
    skipped: list[str] = []
    for block in blocks:
        if block.der is None or block.encrypted:
            continue
        private = _private_key_from_der(block.der, skipped)
        if private is not None:
            return private.public_key()
        public = _public_key_from_der(block.label, block.der, skipped)
        if public is not None:
            return public
    if any(block.encrypted for block in blocks):
        raise _encrypted_error(source)
    raise ConfigurationError(
        f"{LOAD_ERROR}: no supported private or public key found in PEM file"
        + _describe(source, blocks, skipped))


def read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(f"{LOAD_ERROR}: read key file {path}: {reason}") from None


def load_private_key_file(path: str) -> PrivateKey:
    return load_private_key(read_key_file(path), f"file {path}")


def load_verification_key_file(path: str) -> PublicKey:
    return load_verification_key(read_key_file(path), f"file {path}")


# ---------------------------------------------------------------------------
# Algorithm checks (the original's NewLocalTokenProvider start-up checks)
# ---------------------------------------------------------------------------


def _half(key: object) -> str:
    # Private keys (of every type cryptography knows) can give their public half.
    return "PrivateKey" if hasattr(key, "public_key") else "PublicKey"


def _go_type(key: object) -> str:
    half = _half(key)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"*rsa.{half}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"*ecdsa.{half}"
    return _key_type_name(key)


def curve_name(curve: ec.EllipticCurve) -> str:
    return _CURVE_NAMES.get(curve.name, curve.name)


def check_key(alg: str, key: PrivateKey | PublicKey) -> str | None:
    """Why ``key`` cannot be used with ``alg`` (the guide's wording), or None."""
    half = _half(key)
    if alg == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            return (f"RS256 requires *rsa.{half}, got {_go_type(key)}; use an RSA key "
                    f"or set JWT_SIGNING_ALGORITHM=ES256 for an EC P-256 key")
        if key.key_size < MIN_RSA_BITS:
            return (f"RS256 requires at least {MIN_RSA_BITS}-bit RSA key, got "
                    f"{key.key_size}-bit; {_GENERATE_HINT['RS256']}")
        return None
    if alg == "ES256":
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            return (f"ES256 requires *ecdsa.{half}, got {_go_type(key)}; use an EC P-256 "
                    f"key or set JWT_SIGNING_ALGORITHM=RS256 for an RSA key")
        if not isinstance(key.curve, ec.SECP256R1):
            return (f"ES256 requires P-256 curve, got {curve_name(key.curve)}; "
                    f"{_GENERATE_HINT['ES256']}")
        return None
    return f"unsupported algorithm {alg!r}: the asym signer signs with RS256 or ES256"


# ---------------------------------------------------------------------------
# Key ids and JWKs
# ---------------------------------------------------------------------------


def public_key_der(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def derive_kid(key: PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url, 43 characters)."""
    jwk = public_jwk(key, "", "")
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"),
                           sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def legacy_kid(key: PublicKey) -> str:
    """The Go original's derived kid: base64url(SHA-256(DER SubjectPublicKeyInfo)).

    Accepted when verifying, so tokens issued before a migration keep working."""
    return b64url(hashlib.sha256(public_key_der(key)).digest())


def _uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def public_jwk(key: PublicKey, alg: str, kid: str) -> dict[str, str]:
    """The RFC 7517/7518 public JWK; private parameters are never included."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": kid, "alg": alg,
                "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {"kty": "EC", "use": "sig", "kid": kid, "alg": alg,
                "crv": curve_name(key.curve),
                "x": _uint(numbers.x, size), "y": _uint(numbers.y, size)}
    raise TypeError(f"no JWK form for {_key_type_name(key)}")
