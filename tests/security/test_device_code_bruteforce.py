"""User-code brute force (RFC 8628 §5.1): the code space is large and guessing is
rate limited, on the form post and on the confirmation page that reveals whether
a code exists.

Entropy argument: a user code is 8 characters drawn uniformly (``secrets``) from
31 symbols, so there are 31^8 ≈ 8.5 × 10^11 codes.  Guessing from one address is
capped at DEVICE_VERIFY_RATE_LIMIT (10) per minute, shared between
``POST /device/verify`` and ``GET /device?user_code=``.  Over a code's whole
lifetime (DEVICE_CODE_EXPIRATION, 30 min) that is 300 guesses; even with 10 000
codes pending at once the chance that one address hits any of them is
300 × 10 000 / 31^8 ≈ 3.5 × 10^-6 (one in ~280 000).  The tests below pin every
term of that product.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import Counter

import pytest
from security_support import csrf_of, new_browser, sign_in

from authgate.services import devices

LIMIT = 10  # DEVICE_VERIFY_RATE_LIMIT default


def _pending_code(app) -> dict:
    return app.testapp.post("/oauth/device/code", {"client_id": app.default_client_id}).json


def _guesses(count: int) -> list[str]:
    alphabet = devices.USER_CODE_ALPHABET
    return [devices.format_user_code("".join(secrets.choice(alphabet) for _ in range(8)))
            for _ in range(count)]


@pytest.fixture
def person(app):
    browser = new_browser(app)
    sign_in(browser)
    return browser


def test_user_code_brute_force_on_verify_is_rate_limited(app, person):
    real = _pending_code(app)
    token = csrf_of(person.get("/device").text)
    statuses = [person.post("/device/verify", {"user_code": guess, "action": "approve",
                                               "csrf_token": token}, status="*").status_int
                for guess in _guesses(LIMIT)]
    assert set(statuses) == {400}  # "We could not find that code."
    # The limit is reached: from now on even the right code is refused.
    blocked = person.post("/device/verify", {"user_code": real["user_code"],
                                             "action": "approve", "csrf_token": token},
                          status="*", headers={"Accept": "text/html"})
    assert blocked.status_int == 429
    assert "Device authorized" not in blocked.text
    for guess in _guesses(3):
        response = person.post("/device/verify", {"user_code": guess, "action": "approve",
                                                  "csrf_token": token}, status="*",
                               headers={"Accept": "text/html"})
        assert response.status_int == 429
        assert int(response.headers["Retry-After"]) > 0


def test_user_code_brute_force_through_the_confirmation_page_is_rate_limited(app, person):
    """``GET /device?user_code=`` answers differently for a live code (the approval
    page with the client's name) and an unknown one, so it is an oracle: it shares
    the limit of the form post."""
    real = _pending_code(app)
    for guess in _guesses(LIMIT):
        assert person.get(f"/device?user_code={guess}", status="*").status_int == 400
    response = person.get(f"/device?user_code={real['user_code']}", status="*",
                          headers={"Accept": "text/html"})
    assert response.status_int == 429
    assert real["user_code"] not in response.text


def test_user_code_brute_force_mixing_the_page_and_the_form_is_rate_limited(app, person):
    token = csrf_of(person.get("/device").text)
    for n, guess in enumerate(_guesses(LIMIT)):
        if n % 2:
            person.get(f"/device?user_code={guess}", status=400)
        else:
            person.post("/device/verify", {"user_code": guess, "action": "approve",
                                           "csrf_token": token}, status=400)
    assert person.get(f"/device?user_code={_guesses(1)[0]}", status="*").status_int == 429


def test_user_code_brute_force_with_a_forged_forwarded_address_is_still_limited(app, person):
    token = csrf_of(person.get("/device").text)
    for n, guess in enumerate(_guesses(LIMIT + 2)):
        response = person.post("/device/verify", {"user_code": guess, "action": "approve",
                                                  "csrf_token": token}, status="*",
                               headers={"X-Forwarded-For": f"203.0.113.{n}"})
    assert response.status_int == 429


def test_plain_device_page_is_not_limited(app, person):
    """Opening the code-entry page (no code) costs nothing: people reload it."""
    for _ in range(LIMIT + 5):
        person.get("/device", status=200)


def test_user_code_entropy():
    alphabet = devices.USER_CODE_ALPHABET
    assert len(set(alphabet)) == len(alphabet) == 31
    assert devices.USER_CODE_LENGTH == 8
    space = len(alphabet) ** devices.USER_CODE_LENGTH
    assert space > 8.5e11
    lifetime_minutes, pending = 30, 10_000
    chance = LIMIT * lifetime_minutes * pending / space
    assert chance < 4e-6, chance
    assert math.log2(space) > 39  # bits of entropy

    codes = [devices.generate_user_code() for _ in range(3000)]
    assert all(re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    # Every symbol is used at every position (uniform draw, not a narrowed alphabet).
    for position in (0, 1, 2, 3, 5, 6, 7, 8):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set(alphabet)
        assert max(counts.values()) < 3 * (len(codes) / len(alphabet))


def test_user_codes_outside_the_alphabet_are_not_looked_up():
    """Normalisation refuses look-alike and foreign characters, so the searchable
    space is exactly the generated one (and no wildcard reaches the query)."""
    for typed in ("ABCD-EFG0", "ABCD-EFGI", "ABCD-EFG%", "ABCD-EFG_", "ABCD EFG*",
                  "ABCD-EFGH' OR '1'='1", "ABCDEFGHJ", "ABC"):
        assert devices.normalize_user_code(typed) is None, typed
    assert devices.normalize_user_code("abcd efgh") == "ABCD-EFGH"
