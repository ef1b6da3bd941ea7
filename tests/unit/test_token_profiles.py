"""Token lifetimes per client profile, jitter and the start-up caps (reference 3.2)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from authgate.errors import ConfigurationError
from authgate.models import OAuthClient
from authgate.services import tokens
from authgate.settings import core_spec

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def settings(**env: str):
    return core_spec().load({}, env)


def client(profile: str = "standard") -> OAuthClient:
    return OAuthClient(client_id="c1", name="c", token_profile=profile)


def test_defaults_match_the_original():
    s = settings()
    assert (s.jwt_expiration, s.jwt_expiration_jitter, s.jwt_expiration_max) == (10 * H, 30 * M,
                                                                                 24 * H)
    assert (s.refresh_token_expiration, s.refresh_token_expiration_max) == (720 * H, 2160 * H)
    assert tokens.lifetimes(s, client("short")) == tokens.Lifetimes(15 * M, 24 * H,
                                                                    dt.timedelta(0))
    assert tokens.lifetimes(s, client("long")) == tokens.Lifetimes(24 * H, 2160 * H,
                                                                   dt.timedelta(0))
    # standard inherits JWT_EXPIRATION / REFRESH_TOKEN_EXPIRATION and gets the jitter
    assert tokens.lifetimes(s, client("standard")) == tokens.Lifetimes(10 * H, 720 * H, 30 * M)
    tokens.check_settings(s)


def test_standard_follows_the_base_settings():
    s = settings(JWT_EXPIRATION="2h", REFRESH_TOKEN_EXPIRATION="48h")
    assert tokens.lifetimes(s, client()) == tokens.Lifetimes(2 * H, 48 * H, 30 * M)


def test_diverged_standard_profile_is_exact():
    s = settings(TOKEN_PROFILE_STANDARD_ACCESS_TTL="3h", TOKEN_PROFILE_STANDARD_REFRESH_TTL="5h")
    assert tokens.lifetimes(s, client()) == tokens.Lifetimes(3 * H, 5 * H, dt.timedelta(0))


def test_profiles_are_overridable():
    s = settings(TOKEN_PROFILE_SHORT_ACCESS_TTL="5m", TOKEN_PROFILE_LONG_REFRESH_TTL="1000h")
    assert tokens.lifetimes(s, client("short")).access == 5 * M
    assert tokens.lifetimes(s, client("long")).refresh == 1000 * H


@pytest.mark.parametrize("stored", ["", "  ", None, "Standard", " LONG "])
def test_empty_and_case_are_tolerated(stored, caplog):
    with caplog.at_level(logging.WARNING):
        profile = tokens.normalize_profile(stored)
    assert profile in ("standard", "long")
    assert not caplog.records


def test_unknown_profile_falls_back_to_standard_with_a_warning(caplog):
    s = settings()
    with caplog.at_level(logging.WARNING, logger="authgate.services.tokens"):
        life = tokens.lifetimes(s, client("ultra"))
    assert life == tokens.lifetimes(s, client("standard"))
    assert "unknown token_profile 'ultra'" in caplog.text and "c1" in caplog.text


def test_jitter_stays_in_range_and_under_the_cap():
    s = settings()
    life = tokens.lifetimes(s, client())
    drawn = {tokens.access_lifetime(s, life) for _ in range(200)}
    assert all(10 * H <= d < 10 * H + 30 * M for d in drawn)
    assert len(drawn) > 1  # it is random
    # JWT_EXPIRATION at the cap: jitter never pushes past JWT_EXPIRATION_MAX
    capped = settings(JWT_EXPIRATION="24h")
    life = tokens.lifetimes(capped, client())
    assert {tokens.access_lifetime(capped, life) for _ in range(50)} == {24 * H}
    # no jitter -> exact
    off = settings(JWT_EXPIRATION_JITTER="0")
    assert tokens.access_lifetime(off, tokens.lifetimes(off, client())) == 10 * H


@pytest.mark.parametrize(("env", "named"), [
    ({"JWT_EXPIRATION": "25h"}, ["JWT_EXPIRATION (25h", "JWT_EXPIRATION_MAX (24h)"]),
    ({"REFRESH_TOKEN_EXPIRATION": "2161h"},
     ["REFRESH_TOKEN_EXPIRATION (2161h", "REFRESH_TOKEN_EXPIRATION_MAX (2160h)"]),
    ({"TOKEN_PROFILE_LONG_ACCESS_TTL": "48h"},
     ["TOKEN_PROFILE_LONG_ACCESS_TTL (48h", "'long'", "JWT_EXPIRATION_MAX"]),
    ({"TOKEN_PROFILE_SHORT_REFRESH_TTL": "3000h"},
     ["TOKEN_PROFILE_SHORT_REFRESH_TTL", "REFRESH_TOKEN_EXPIRATION_MAX"]),
    ({"TOKEN_PROFILE_STANDARD_ACCESS_TTL": "30h"},
     ["TOKEN_PROFILE_STANDARD_ACCESS_TTL (30h", "JWT_EXPIRATION_MAX"]),
    # lowering a cap below a default profile value is caught too
    ({"JWT_EXPIRATION_MAX": "12h"}, ["TOKEN_PROFILE_LONG_ACCESS_TTL (24h", "(12h)"]),
    ({"JWT_EXPIRATION": "20m"}, ["JWT_EXPIRATION_JITTER (30m)", "JWT_EXPIRATION (20m)"]),
    ({"JWT_EXPIRATION_JITTER": "10h"}, ["JWT_EXPIRATION_JITTER (10h)", "less than"]),
])
def test_caps_are_enforced_at_startup(env, named):
    with pytest.raises(ConfigurationError) as info:
        tokens.check_settings(settings(**env))
    for text in named:
        assert text in str(info.value)


def test_raising_the_cap_allows_longer_lifetimes():
    tokens.check_settings(settings(JWT_EXPIRATION="30h", JWT_EXPIRATION_MAX="48h"))
    tokens.check_settings(settings(JWT_EXPIRATION="20m", JWT_EXPIRATION_JITTER="0"))


def test_bad_values_are_rejected_when_parsed():
    with pytest.raises(ConfigurationError, match="JWT_EXPIRATION_JITTER"):
        settings(JWT_EXPIRATION_JITTER="soon")
    with pytest.raises(ConfigurationError, match="TOKEN_PROFILE_SHORT_ACCESS_TTL"):
        settings(TOKEN_PROFILE_SHORT_ACCESS_TTL="0")
