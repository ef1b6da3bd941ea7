"""The RS256/ES256 signer plugin (authgate_plugins.signer_asym).

Keys are real: generated with ``cryptography`` and with the ``openssl`` commands
the troubleshooting guide prints.  Error messages are checked for the exact
phrases the guide shows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import jwt
import pytest
from authgate_plugins.signer_asym import AsymmetricSigner
from authgate_plugins.signer_asym.keys import (
    derive_kid,
    load_private_key,
    load_private_key_file,
    load_verification_key_file,
    pem_blocks,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from authgate import components
from authgate.app import load_settings
from authgate.components import BuildContext
from authgate.errors import ConfigurationError
from authgate.interfaces import ISigner
from authgate.plugins import get_plugin_manager, installed_plugin_names

SESSION_SECRET = "test-session-secret-that-is-long-enough-0123456789"
OPENSSL = shutil.which("openssl")

# ---------------------------------------------------------------------------
# Keys and PEM helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_1024():
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec_key2():
    return ec.generate_private_key(ec.SECP256R1())


def pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def traditional(key) -> bytes:
    """PKCS#1 for RSA ("RSA PRIVATE KEY"), SEC1 for EC ("EC PRIVATE KEY")."""
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_pem(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authgate-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, 0o600)
    return str(path)


def claims(**extra):
    now = int(time.time())
    return {"sub": "user-1", "iat": now, "exp": now + 600, **extra}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


# ---------------------------------------------------------------------------
# Building through the real plugin factory
# ---------------------------------------------------------------------------


def plugin_manager():
    # Until pyproject.toml has the entry point, register the module directly;
    # once it is installed, registering it again would be an error.
    extra = ([] if "signer_asym" in installed_plugin_names()
             else ["authgate_plugins.signer_asym"])
    return get_plugin_manager(("*",), extra_plugins=extra)


def load(tmp_path: Path, ini: dict[str, str] | None = None,
         environ: dict[str, str] | None = None):
    raw = {
        "authgate.session_secret": SESSION_SECRET,
        "authgate.database_path": str(tmp_path / "oauth.db"),
        **(ini or {}),
    }
    pm = plugin_manager()
    settings, spec = load_settings(pm, raw, environ or {})
    return pm, settings, spec


def build_signer(tmp_path: Path, ini: dict[str, str] | None = None,
                 environ: dict[str, str] | None = None):
    pm, settings, _ = load(tmp_path, ini, environ)
    (offered,) = components.select(pm, "signer", [settings.signer], "authgate.signer")
    return components.build(offered, "signer", BuildContext(settings=settings))


def ini_for(alg: str, path: str, **more: str) -> dict[str, str]:
    return {"authgate.jwt_signing_algorithm": alg, "authgate.jwt_private_key_path": path,
            **{f"authgate.{k}": v for k, v in more.items()}}


# ---------------------------------------------------------------------------
# Sign and verify
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_sign_and_verify_through_the_plugin_factory(tmp_path, alg, rsa_key, ec_key):
    key = rsa_key if alg == "RS256" else ec_key
    signer = build_signer(tmp_path, ini_for(alg, write(tmp_path / "k.pem", pkcs8(key))))
    assert isinstance(signer, ISigner)
    assert signer.alg == alg
    token = signer.sign(claims(scope="read"))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "JWT", "kid": signer.kid}
    decoded = signer.verify(token)
    assert decoded["sub"] == "user-1" and decoded["scope"] == "read"


def test_settings_are_declared_in_the_tokens_section(tmp_path):
    _, settings, spec = load(tmp_path)
    expected = {
        "jwt_private_key_path": ("JWT_PRIVATE_KEY_PATH", False),
        "jwt_private_key_pem": ("JWT_PRIVATE_KEY_PEM", True),
        "jwt_key_id": ("JWT_KEY_ID", False),
        "jwt_previous_key_paths": ("JWT_PREVIOUS_KEY_PATHS", False),
    }
    for name, (env, secret) in expected.items():
        setting = spec[name]
        assert (setting.env, setting.secret, setting.section) == (env, secret, "Tokens")
        assert setting.help
    assert spec["jwt_private_key_path"].ini_key == "authgate.jwt_private_key_path"
    assert settings.jwt_previous_key_paths == ()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_algorithm_selects_the_asym_signer(tmp_path, alg):
    _, settings, _ = load(tmp_path, {"authgate.jwt_signing_algorithm": alg})
    assert settings.signer == "asym"
    _, settings, _ = load(tmp_path, environ={"JWT_SIGNING_ALGORITHM": alg})
    assert settings.signer == "asym"


def test_startup_log_line(tmp_path, ec_key, caplog):
    caplog.set_level(logging.INFO, logger="authgate.signer")
    path = write(tmp_path / "k.pem", traditional(ec_key))
    signer = build_signer(tmp_path, ini_for("ES256", path))
    assert f"Token signing: ES256 (kid={signer.kid})" in caplog.messages


def test_verify_enforces_exp_iat_and_audience(ec_key):
    signer = AsymmetricSigner("ES256", ec_key)
    now = int(time.time())
    with pytest.raises(jwt.ExpiredSignatureError):
        signer.verify(signer.sign({"sub": "x", "iat": now - 20, "exp": now - 10}))
    with pytest.raises(jwt.MissingRequiredClaimError):
        signer.verify(signer.sign({"sub": "x", "iat": now}))
    with pytest.raises(jwt.MissingRequiredClaimError):
        signer.verify(signer.sign({"sub": "x", "exp": now + 60}))
    token = signer.sign(claims(aud="api"))
    assert signer.verify(token)["aud"] == "api"  # not checked when no audience is given
    assert signer.verify(token, audience="api")["aud"] == "api"
    assert signer.verify(token, audience=["other", "api"])["aud"] == "api"
    with pytest.raises(jwt.InvalidAudienceError):
        signer.verify(token, audience="other")
    with pytest.raises(jwt.MissingRequiredClaimError):
        signer.verify(signer.sign(claims()), audience="api")


# ---------------------------------------------------------------------------
# PEM formats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "fmt", "label"), [
    ("RS256", "pkcs1", "RSA PRIVATE KEY"),
    ("RS256", "pkcs8", "PRIVATE KEY"),
    ("ES256", "sec1", "EC PRIVATE KEY"),
    ("ES256", "pkcs8", "PRIVATE KEY"),
])
def test_pem_formats_load(tmp_path, alg, fmt, label, rsa_key, ec_key):
    key = rsa_key if alg == "RS256" else ec_key
    data = pkcs8(key) if fmt == "pkcs8" else traditional(key)
    assert data.startswith(f"-----BEGIN {label}-----".encode())
    loaded = load_private_key_file(write(tmp_path / "k.pem", data))
    assert loaded.private_numbers() == key.private_numbers()
    signer = AsymmetricSigner(alg, loaded)
    assert signer.verify(signer.sign(claims()))["sub"] == "user-1"


def test_multi_block_file_first_usable_key_wins(tmp_path, rsa_key, rsa_key2):
    ed = ed25519.Ed25519PrivateKey.generate()
    data = (b"comment before the blocks\n" + certificate_pem(rsa_key2) + pkcs8(ed)
            + b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
            + traditional(rsa_key) + pkcs8(rsa_key2))
    loaded = load_private_key_file(write(tmp_path / "multi.pem", data))
    assert loaded.private_numbers() == rsa_key.private_numbers()


def test_ec_parameters_plus_ec_private_key(tmp_path, ec_key):
    data = (b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
            + traditional(ec_key))
    assert [b.label for b in pem_blocks(data)] == ["EC PARAMETERS", "EC PRIVATE KEY"]
    loaded = load_private_key_file(write(tmp_path / "ec.pem", data))
    assert loaded.private_numbers() == ec_key.private_numbers()


def test_block_label_is_not_trusted(tmp_path, ec_key):
    # A PKCS#8 body under a PKCS#1 label still loads (formats are tried in order).
    body = pkcs8(ec_key).replace(b"BEGIN PRIVATE KEY", b"BEGIN RSA PRIVATE KEY").replace(
        b"END PRIVATE KEY", b"END RSA PRIVATE KEY")
    assert load_private_key(body, "test").private_numbers() == ec_key.private_numbers()


def test_inline_pem_wins_over_path_with_a_warning(tmp_path, ec_key, ec_key2, caplog):
    caplog.set_level(logging.WARNING, logger="authgate.signer")
    path = write(tmp_path / "k.pem", traditional(ec_key))
    signer = build_signer(tmp_path, ini_for("ES256", path),
                          environ={"JWT_PRIVATE_KEY_PEM": traditional(ec_key2).decode()})
    assert signer.kid == derive_kid(ec_key2.public_key())
    assert any("JWT_PRIVATE_KEY_PEM" in m and "JWT_PRIVATE_KEY_PATH" in m
               for m in caplog.messages)


def test_inline_pem_with_escaped_newlines(tmp_path, ec_key):
    escaped = pkcs8(ec_key).decode().strip().replace("\n", "\\n")
    signer = build_signer(tmp_path, {"authgate.jwt_signing_algorithm": "ES256"},
                          environ={"JWT_PRIVATE_KEY_PEM": escaped})
    assert signer.kid == derive_kid(ec_key.public_key())


def test_inline_pem_from_a_multiline_ini_value(tmp_path, ec_key):
    # configparser strips the indentation of continuation lines.
    value = "\n" + pkcs8(ec_key).decode().strip()
    signer = build_signer(tmp_path, {"authgate.jwt_signing_algorithm": "ES256",
                                     "authgate.jwt_private_key_pem": value})
    assert signer.kid == derive_kid(ec_key.public_key())


def test_group_readable_key_file_is_warned_about(tmp_path, ec_key, caplog):
    caplog.set_level(logging.WARNING, logger="authgate.signer")
    path = write(tmp_path / "k.pem", traditional(ec_key))
    os.chmod(path, 0o644)
    build_signer(tmp_path, ini_for("ES256", path))
    assert any("chmod 600" in m for m in caplog.messages)


# ---------------------------------------------------------------------------
# The guide's error messages
# ---------------------------------------------------------------------------


def test_rs256_rejects_a_1024_bit_key(tmp_path, rsa_1024):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem", traditional(rsa_1024))))
    assert ("NewLocalTokenProvider: RS256 requires at least 2048-bit RSA key, got 1024-bit"
            in str(err.value))


def test_es256_rejects_p384(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("ES256", write(tmp_path / "k.pem", traditional(key))))
    assert "NewLocalTokenProvider: ES256 requires P-256 curve, got P-384" in str(err.value)


def test_rs256_rejects_an_ec_key(tmp_path, ec_key):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem", traditional(ec_key))))
    assert ("NewLocalTokenProvider: RS256 requires *rsa.PrivateKey, got *ecdsa.PrivateKey"
            in str(err.value))


def test_es256_rejects_an_rsa_key(tmp_path, rsa_key):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("ES256", write(tmp_path / "k.pem", pkcs8(rsa_key))))
    assert ("NewLocalTokenProvider: ES256 requires *ecdsa.PrivateKey, got *rsa.PrivateKey"
            in str(err.value))


def test_constructor_checks_keys_too(rsa_key, ec_key):
    with pytest.raises(ConfigurationError, match=r"RS256 requires \*rsa.PrivateKey"):
        AsymmetricSigner("RS256", ec_key)
    with pytest.raises(ConfigurationError, match=r"ES256 requires \*ecdsa.PrivateKey"):
        AsymmetricSigner("ES256", rsa_key)
    with pytest.raises(ConfigurationError, match="RS256 or ES256"):
        AsymmetricSigner("HS256", rsa_key)


@pytest.mark.parametrize("content", ["", "not a key at all\n", "-----BEGIN nothing"])
def test_no_pem_block(tmp_path, content):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem", content)))
    assert "failed to load signing key: no PEM block found in key data" in str(err.value)


def _unusable(kind: str, rsa_key) -> bytes:
    if kind == "ed25519":
        return pkcs8(ed25519.Ed25519PrivateKey.generate())
    if kind == "certificate":
        return certificate_pem(rsa_key)
    if kind == "public-key":
        return public_pem(rsa_key)
    if kind == "ec-parameters":
        return b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    return b"-----BEGIN RSA PRIVATE KEY-----\n!!not base64!!\n-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize("kind", ["ed25519", "certificate", "public-key", "ec-parameters",
                                  "garbage-body"])
def test_no_supported_private_key(tmp_path, kind, rsa_key):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem",
                                                     _unusable(kind, rsa_key))))
    assert "failed to load signing key: no supported private key found in PEM file" in str(
        err.value)
    if kind == "ed25519":
        assert "Ed25519PrivateKey" in str(err.value)


def test_missing_key_file(tmp_path):
    path = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", path))
    assert (f"failed to load signing key: read key file {path}: No such file or directory"
            in str(err.value))


def test_key_path_is_a_directory(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("ES256", str(tmp_path)))
    assert f"failed to load signing key: read key file {tmp_path}: Is a directory" in str(
        err.value)


def test_no_key_configured(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, {"authgate.jwt_signing_algorithm": "ES256"})
    assert "JWT_PRIVATE_KEY_PATH" in str(err.value)
    assert "JWT_PRIVATE_KEY_PEM" in str(err.value)


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8,
                                 serialization.PrivateFormat.TraditionalOpenSSL])
def test_encrypted_keys_are_not_supported(tmp_path, rsa_key, fmt):
    data = rsa_key.private_bytes(serialization.Encoding.PEM, fmt,
                                 serialization.BestAvailableEncryption(b"passphrase"))
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem", data)))
    assert "encrypted private keys are not supported" in str(err.value)


def test_asym_signer_refuses_hs256(tmp_path, ec_key):
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, {"authgate.signer": "asym",
                                "authgate.jwt_private_key_path":
                                    write(tmp_path / "k.pem", traditional(ec_key))})
    assert "JWT_SIGNING_ALGORITHM" in str(err.value)


# ---------------------------------------------------------------------------
# Key ids
# ---------------------------------------------------------------------------


RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
             "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
             "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08"
             "qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8"
             "awapJzKnqDKgw")


def test_derived_kid_is_the_rfc7638_thumbprint():
    """RFC 7638 §3.1's example key and its published thumbprint."""
    from authgate_plugins.signer_asym.keys import derive_kid

    public = jwt.algorithms.RSAAlgorithm.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    assert derive_kid(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_tokens_with_the_go_originals_kid_still_verify(ec_key):
    """The Go original derived kids from the SubjectPublicKeyInfo; migrated tokens verify."""
    signer = AsymmetricSigner("ES256", ec_key)
    spki = ec_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    go_kid = b64url(hashlib.sha256(spki).digest())
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": go_kid})
    assert signer.verify(token)["sub"] == "user-1"
    assert [k["kid"] for k in signer.jwks()["keys"]] == [signer.kid]  # not published


def test_explicit_key_id(tmp_path, rsa_key):
    signer = build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem", pkcs8(rsa_key)),
                                            jwt_key_id="2025-primary"))
    assert signer.kid == "2025-primary"
    assert jwt.get_unverified_header(signer.sign(claims()))["kid"] == "2025-primary"
    assert signer.jwks()["keys"][0]["kid"] == "2025-primary"


def test_duplicate_kids_are_rejected(tmp_path, ec_key, ec_key2):
    old = write(tmp_path / "old.pem", traditional(ec_key2))
    new = write(tmp_path / "new.pem", traditional(ec_key))
    # Explicit kid equal to a previous key's derived kid.
    with pytest.raises(ConfigurationError, match="Duplicate key id"):
        build_signer(tmp_path, ini_for("ES256", new, jwt_previous_key_paths=old,
                                       jwt_key_id=derive_kid(ec_key2.public_key())))
    # The same retired key listed twice (once as its public half).
    pub = write(tmp_path / "old.pub.pem", public_pem(ec_key2))
    with pytest.raises(ConfigurationError, match="Duplicate key id"):
        build_signer(tmp_path, ini_for("ES256", new, jwt_previous_key_paths=f"{old},{pub}"))
    # The signing key listed as retired.
    with pytest.raises(ConfigurationError, match="is the current signing key"):
        build_signer(tmp_path, ini_for("ES256", new, jwt_previous_key_paths=new,
                                       jwt_key_id="explicit"))


# ---------------------------------------------------------------------------
# JWKS
# ---------------------------------------------------------------------------


def test_rsa_jwks_shape(rsa_key):
    signer = AsymmetricSigner("RS256", rsa_key)
    (jwk,) = signer.jwks()["keys"]
    assert set(jwk) == {"kty", "use", "kid", "alg", "n", "e"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["kid"]) == ("RSA", "sig", "RS256",
                                                               signer.kid)
    assert jwk["e"] == "AQAB"
    n = b64url_decode(jwk["n"])
    assert len(n) == 256 and n[0] != 0  # minimal big-endian
    assert int.from_bytes(n, "big") == rsa_key.public_key().public_numbers().n
    assert "=" not in jwk["n"]


def test_ec_jwks_shape_pads_coordinates_to_32_bytes():
    # Find a key whose x or y has a leading zero byte (about 1 in 128 keys).
    for _ in range(5000):
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if numbers.x < 2**248 or numbers.y < 2**248:
            break
    else:  # pragma: no cover - astronomically unlikely
        pytest.fail("no short coordinate found")
    signer = AsymmetricSigner("ES256", key)
    (jwk,) = signer.jwks()["keys"]
    assert set(jwk) == {"kty", "use", "kid", "alg", "crv", "x", "y"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["crv"]) == ("EC", "sig", "ES256", "P-256")
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    assert len(x) == 32 and len(y) == 32
    assert int.from_bytes(x, "big") == numbers.x and int.from_bytes(y, "big") == numbers.y
    assert "d" not in jwk


def test_jwks_never_contains_private_parts(rsa_key, ec_key, ec_key2):
    private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    for signer in (AsymmetricSigner("RS256", rsa_key),
                   AsymmetricSigner("ES256", ec_key, previous_keys=[ec_key2])):
        for jwk in signer.jwks()["keys"]:
            assert not private & set(jwk)


def test_jwks_cannot_be_altered_by_a_caller(ec_key):
    signer = AsymmetricSigner("ES256", ec_key)
    served = signer.jwks()
    served["keys"][0]["kid"] = "changed"
    served["keys"].clear()
    assert signer.jwks()["keys"][0]["kid"] == signer.kid


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_jwks_key_verifies_a_token(alg, rsa_key, ec_key):
    signer = AsymmetricSigner(alg, rsa_key if alg == "RS256" else ec_key)
    token = signer.sign(claims())
    document = json.loads(json.dumps(signer.jwks()))  # as served
    keyset = jwt.PyJWKSet.from_dict(document)
    kid = jwt.get_unverified_header(token)["kid"]
    assert jwt.decode(token, keyset[kid], algorithms=[alg])["sub"] == "user-1"
    single = jwt.PyJWK(document["keys"][0])
    assert single.algorithm_name == alg
    assert jwt.decode(token, single, algorithms=[alg])["sub"] == "user-1"


def test_jwks_endpoint_serves_the_keys(make_app, tmp_path, ec_key):
    extra = ([] if "signer_asym" in installed_plugin_names()
             else ["authgate_plugins.signer_asym"])
    handle = make_app(settings=ini_for("ES256", write(tmp_path / "k.pem", traditional(ec_key))),
                      plugins=extra)
    response = handle.testapp.get("/.well-known/jwks.json")
    assert response.json == handle.runtime.signer.jwks()
    assert response.json["keys"][0]["kid"] == derive_kid(ec_key.public_key())


# ---------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_rotation(tmp_path, alg, rsa_key, rsa_key2, ec_key, ec_key2):
    old_key, new_key = (rsa_key, rsa_key2) if alg == "RS256" else (ec_key, ec_key2)
    old_path = write(tmp_path / "old.pem", pkcs8(old_key))
    new_path = write(tmp_path / "new.pem", traditional(new_key))

    before = build_signer(tmp_path, ini_for(alg, old_path))
    old_token = before.sign(claims(n="old"))

    after = build_signer(tmp_path, ini_for(alg, new_path, jwt_previous_key_paths=old_path))
    assert after.kid == derive_kid(new_key.public_key()) != before.kid
    assert after.verify(old_token)["n"] == "old"
    new_token = after.sign(claims(n="new"))
    assert jwt.get_unverified_header(new_token)["kid"] == after.kid
    assert after.verify(new_token)["n"] == "new"
    kids = [k["kid"] for k in after.jwks()["keys"]]
    assert kids == [after.kid, before.kid]  # signing key first
    keyset = jwt.PyJWKSet.from_dict(after.jwks())
    for token in (old_token, new_token):
        kid = jwt.get_unverified_header(token)["kid"]
        jwt.decode(token, keyset[kid], algorithms=[alg])
    # The old server does not know the new key.
    with pytest.raises(jwt.InvalidTokenError):
        before.verify(new_token)
    # Once the old key is dropped, its tokens stop verifying.
    done = build_signer(tmp_path, ini_for(alg, new_path))
    with pytest.raises(jwt.InvalidTokenError):
        done.verify(old_token)


def test_rotation_with_public_key_and_certificate_files(tmp_path, ec_key, ec_key2):
    third = ec.generate_private_key(ec.SECP256R1())
    pub = write(tmp_path / "old.pub.pem", public_pem(ec_key2))
    cert = write(tmp_path / "older.crt", certificate_pem(third))
    signer = build_signer(tmp_path, ini_for("ES256", write(tmp_path / "k.pem", pkcs8(ec_key)),
                                            jwt_previous_key_paths=f"{pub} {cert}"))
    assert [k["kid"] for k in signer.jwks()["keys"]] == [
        derive_kid(ec_key.public_key()), derive_kid(ec_key2.public_key()),
        derive_kid(third.public_key())]
    assert signer.previous_kids == (derive_kid(ec_key2.public_key()),
                                    derive_kid(third.public_key()))
    old_token = AsymmetricSigner("ES256", ec_key2).sign(claims())
    assert signer.verify(old_token)["sub"] == "user-1"


def test_previous_keys_never_sign(ec_key, ec_key2):
    signer = AsymmetricSigner("ES256", ec_key, previous_keys=[ec_key2])
    token = signer.sign(claims())
    assert jwt.get_unverified_header(token)["kid"] == signer.kid
    jwt.decode(token, ec_key.public_key(), algorithms=["ES256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, ec_key2.public_key(), algorithms=["ES256"])


def test_previous_key_must_match_the_algorithm(tmp_path, ec_key, rsa_key, rsa_1024):
    new = write(tmp_path / "new.pem", pkcs8(rsa_key))
    wrong_type = write(tmp_path / "ec.pem", traditional(ec_key))
    with pytest.raises(ConfigurationError) as err:
        build_signer(tmp_path, ini_for("RS256", new, jwt_previous_key_paths=wrong_type))
    assert wrong_type in str(err.value)
    assert "RS256 requires *rsa.PrivateKey, got *ecdsa.PublicKey" not in str(err.value)
    assert "RS256 requires *rsa.PublicKey, got *ecdsa.PublicKey" in str(err.value)
    small = write(tmp_path / "small.pem", traditional(rsa_1024))
    with pytest.raises(ConfigurationError, match="at least 2048-bit RSA key, got 1024-bit"):
        build_signer(tmp_path, ini_for("RS256", new, jwt_previous_key_paths=small))


def test_previous_key_file_errors(tmp_path, ec_key):
    new = write(tmp_path / "new.pem", pkcs8(ec_key))
    missing = str(tmp_path / "gone.pem")
    with pytest.raises(ConfigurationError, match="read key file .*gone.pem"):
        build_signer(tmp_path, ini_for("ES256", new, jwt_previous_key_paths=missing))
    junk = write(tmp_path / "junk.pem", "hello")
    with pytest.raises(ConfigurationError, match="no PEM block found in key data"):
        build_signer(tmp_path, ini_for("ES256", new, jwt_previous_key_paths=junk))
    ed = write(tmp_path / "ed.pem", pkcs8(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(ConfigurationError, match="no supported private or public key"):
        load_verification_key_file(ed)


# ---------------------------------------------------------------------------
# Rejected tokens
# ---------------------------------------------------------------------------


@pytest.fixture(params=["RS256", "ES256"])
def signer_and_keys(request, rsa_key, rsa_key2, ec_key, ec_key2):
    if request.param == "RS256":
        return AsymmetricSigner("RS256", rsa_key), rsa_key, rsa_key2
    return AsymmetricSigner("ES256", ec_key), ec_key, ec_key2


def _forge(header: dict, payload: dict, sign) -> str:
    signing_input = (b64url(json.dumps(header).encode()) + "."
                     + b64url(json.dumps(payload).encode()))
    return signing_input + "." + b64url(sign(signing_input.encode()))


def test_tampered_token_is_rejected(signer_and_keys):
    signer, _, _ = signer_and_keys
    header, payload, signature = signer.sign(claims(scope="read")).split(".")
    data = json.loads(b64url_decode(payload))
    data["scope"] = "admin"
    forged = ".".join([header, b64url(json.dumps(data).encode()), signature])
    with pytest.raises(jwt.InvalidSignatureError):
        signer.verify(forged)
    # A flipped signature bit, too.
    raw = bytearray(b64url_decode(signature))
    raw[-1] ^= 1
    with pytest.raises(jwt.InvalidTokenError):
        signer.verify(".".join([header, payload, b64url(bytes(raw))]))


def test_token_from_another_key_is_rejected(signer_and_keys):
    signer, _, other = signer_and_keys
    # Same kid in the header, wrong key.
    token = jwt.encode(claims(), other, algorithm=signer.alg, headers={"kid": signer.kid})
    with pytest.raises(jwt.InvalidSignatureError):
        signer.verify(token)
    # The other key's own kid is unknown.
    token = AsymmetricSigner(signer.alg, other).sign(claims())
    with pytest.raises(jwt.InvalidTokenError, match="Unknown key id"):
        signer.verify(token)


def test_alg_none_is_rejected(signer_and_keys):
    signer, _, _ = signer_and_keys
    token = _forge({"alg": "none", "typ": "JWT", "kid": signer.kid}, claims(),
                   lambda _: b"")
    with pytest.raises(jwt.InvalidTokenError):
        signer.verify(token)
    token = jwt.encode(claims(), None, algorithm="none", headers={"kid": signer.kid})
    with pytest.raises(jwt.InvalidTokenError):
        signer.verify(token)


def test_hs256_with_the_public_key_as_secret_is_rejected(signer_and_keys):
    signer, key, _ = signer_and_keys
    secret = public_pem(key)
    token = _forge({"alg": "HS256", "typ": "JWT", "kid": signer.kid}, claims(),
                   lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    with pytest.raises(jwt.InvalidAlgorithmError):
        signer.verify(token)


def test_the_other_asymmetric_algorithm_is_rejected(rsa_key, ec_key):
    es = AsymmetricSigner("ES256", ec_key)
    # An RS256 token carrying the ES256 signer's kid.
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": es.kid})
    with pytest.raises(jwt.InvalidAlgorithmError):
        es.verify(token)


def test_tokens_without_a_usable_kid_are_rejected(signer_and_keys):
    signer, key, _ = signer_and_keys
    with pytest.raises(jwt.InvalidTokenError, match="no key id"):
        signer.verify(jwt.encode(claims(), key, algorithm=signer.alg))
    with pytest.raises(jwt.InvalidTokenError):
        signer.verify(jwt.encode(claims(), key, algorithm=signer.alg, headers={"kid": ["x"]}))
    for garbage in ("", "abc", "a.b.c", "x" * 50):
        with pytest.raises(jwt.InvalidTokenError):
            signer.verify(garbage)


# ---------------------------------------------------------------------------
# Keys made with the openssl commands from the troubleshooting guide
# ---------------------------------------------------------------------------


def test_openssl_rsa_key_from_the_guide(tmp_path):
    openssl(tmp_path, "genrsa", "-out", "rsa-private.pem", "2048")
    openssl(tmp_path, "rsa", "-in", "rsa-private.pem", "-check", "-noout")
    path = str(tmp_path / "rsa-private.pem")
    signer = build_signer(tmp_path, ini_for("RS256", path))
    assert signer.verify(signer.sign(claims()))["sub"] == "user-1"
    # A token carrying the legacy kid (SHA-256 of openssl's DER public key) verifies too.
    der = subprocess.run([OPENSSL, "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    legacy = jwt.encode(claims(), Path(path).read_bytes(), algorithm="RS256",
                        headers={"kid": b64url(hashlib.sha256(der).digest())})
    assert signer.verify(legacy)["sub"] == "user-1"
    assert signer.jwks()["keys"][0]["e"] == "AQAB"


def test_openssl_pkcs1_rsa_key(tmp_path):
    openssl(tmp_path, "genrsa", "-traditional", "-out", "rsa-pkcs1.pem", "2048")
    assert (tmp_path / "rsa-pkcs1.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY")
    signer = build_signer(tmp_path, ini_for("RS256", str(tmp_path / "rsa-pkcs1.pem")))
    assert signer.verify(signer.sign(claims()))["sub"] == "user-1"


def test_openssl_ec_key_from_the_guide(tmp_path):
    openssl(tmp_path, "ecparam", "-genkey", "-name", "prime256v1", "-noout",
            "-out", "ec-private.pem")
    openssl(tmp_path, "ec", "-in", "ec-private.pem", "-check", "-noout")
    assert (tmp_path / "ec-private.pem").read_text().startswith("-----BEGIN EC PRIVATE KEY")
    signer = build_signer(tmp_path, ini_for("ES256", str(tmp_path / "ec-private.pem")))
    assert signer.verify(signer.sign(claims()))["sub"] == "user-1"
    (jwk,) = signer.jwks()["keys"]
    assert len(b64url_decode(jwk["x"])) == 32 and len(b64url_decode(jwk["y"])) == 32


def test_openssl_ec_key_with_parameters_block(tmp_path):
    openssl(tmp_path, "ecparam", "-genkey", "-name", "prime256v1", "-out", "ec-with-params.pem")
    text = (tmp_path / "ec-with-params.pem").read_text()
    assert "BEGIN EC PARAMETERS" in text and "BEGIN EC PRIVATE KEY" in text
    signer = build_signer(tmp_path, ini_for("ES256", str(tmp_path / "ec-with-params.pem")))
    assert signer.verify(signer.sign(claims()))["sub"] == "user-1"


def test_openssl_keys_the_checks_refuse(tmp_path):
    openssl(tmp_path, "genrsa", "-out", "small.pem", "1024")
    with pytest.raises(ConfigurationError,
                       match="RS256 requires at least 2048-bit RSA key, got 1024-bit"):
        build_signer(tmp_path, ini_for("RS256", str(tmp_path / "small.pem")))
    openssl(tmp_path, "ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", "p384.pem")
    with pytest.raises(ConfigurationError, match="ES256 requires P-256 curve, got P-384"):
        build_signer(tmp_path, ini_for("ES256", str(tmp_path / "p384.pem")))
    openssl(tmp_path, "genpkey", "-algorithm", "ed25519", "-out", "ed.pem")
    with pytest.raises(ConfigurationError, match="no supported private key found in PEM file"):
        build_signer(tmp_path, ini_for("ES256", str(tmp_path / "ed.pem")))


# ---------------------------------------------------------------------------
# The shared signer contract, when the core provides it
# ---------------------------------------------------------------------------

try:
    from authgate.testing.contracts import SignerContract
except ImportError:  # pragma: no cover - the contract module is not there yet
    SignerContract = None

if SignerContract is not None:

    class TestES256(SignerContract):
        @pytest.fixture
        def signer(self, tmp_path):
            key = ec.generate_private_key(ec.SECP256R1())
            return build_signer(tmp_path, ini_for("ES256", write(tmp_path / "k.pem",
                                                                 traditional(key))))

    class TestRS256(SignerContract):
        @pytest.fixture
        def signer(self, tmp_path, rsa_key):
            return build_signer(tmp_path, ini_for("RS256", write(tmp_path / "k.pem",
                                                                 pkcs8(rsa_key))))
