"""Fifty simultaneous requests against one real server process (either store):
device-code creation, approval, polling and refresh-token rotation at once."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from e2e_support import ADMIN_PASSWORD
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.e2e

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def admin_session(server) -> tuple[requests.Session, str]:
    session = requests.Session()
    page = session.get(server.url + "/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    session.post(server.url + "/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                              "csrf_token": csrf}, timeout=10)
    page = session.get(server.url + "/device", timeout=10).text
    return session, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def new_code(server) -> dict:
    response = requests.post(server.url + "/oauth/device/code",
                             data={"client_id": server.client_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def approve(server, cookies, csrf, user_code) -> requests.Response:
    return requests.post(server.url + "/device/verify", cookies=cookies, timeout=30, data={
        "user_code": user_code, "action": "approve", "csrf_token": csrf})


def poll(server, device_code) -> requests.Response:
    return requests.post(server.url + "/oauth/token", timeout=30, data={
        "grant_type": GRANT, "device_code": device_code, "client_id": server.client_id})


def refresh(server, token) -> requests.Response:
    return requests.post(server.url + "/oauth/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": token, "client_id": server.client_id})


def engine_for(server):
    if server.env.get("DATABASE_DRIVER") == "postgres":
        from authgate_plugins.store_postgres import dsn_to_url

        return create_engine(dsn_to_url(server.env["DATABASE_DSN"]))
    return create_engine(f"sqlite:///{server.cwd / 'oauth.db'}")


def test_fifty_mixed_requests_at_once(live_server):
    server = live_server(ENABLE_TOKEN_ROTATION="true", ENABLE_RATE_LIMIT="false",
                         POLLING_INTERVAL="1s")
    session, csrf = admin_session(server)
    cookies = session.cookies.get_dict()

    first = new_code(server)
    assert "Device authorized" in approve(server, cookies, csrf, first["user_code"]).text
    time.sleep(1.2)
    tokens = poll(server, first["device_code"]).json()
    ready = [new_code(server) for _ in range(5)]       # approved before the burst
    pending = [new_code(server) for _ in range(5)]     # approved during the burst
    for code in ready:
        assert approve(server, cookies, csrf, code["user_code"]).status_code == 200
    time.sleep(1.2)

    jobs = ([("create", None)] * 10
            + [("approve", c["user_code"]) for c in pending] * 2
            + [("poll", c["device_code"]) for c in ready] * 4
            + [("refresh", tokens["refresh_token"])] * 10)
    assert len(jobs) == 50
    barrier = threading.Barrier(len(jobs))

    def run(job):
        kind, arg = job
        barrier.wait()
        if kind == "create":
            return kind, arg, requests.post(server.url + "/oauth/device/code",
                                            data={"client_id": server.client_id}, timeout=60)
        if kind == "approve":
            return kind, arg, approve(server, cookies, csrf, arg)
        if kind == "poll":
            return kind, arg, poll(server, arg)
        return kind, arg, refresh(server, arg)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))

    assert all(r.status_code < 500 for _, _, r in results), [
        (k, r.status_code, r.text[:200]) for k, _, r in results if r.status_code >= 500]
    assert "database is locked" not in server.log()
    assert Counter(r.status_code for k, _, r in results if k == "create") == {200: 10}

    wins = Counter(arg for kind, arg, r in results if kind == "poll" and r.status_code == 200)
    assert wins == Counter({c["device_code"]: 1 for c in ready})  # each redeemed exactly once
    assert {r.json()["error"] for k, _, r in results if k == "poll" and r.status_code != 200} \
        <= {"slow_down", "invalid_grant"}

    approvals = Counter(arg for kind, arg, r in results
                        if kind == "approve" and "Device authorized" in r.text)
    assert approvals == Counter({c["user_code"]: 1 for c in pending})  # one of the two wins

    refreshed = [r for k, _, r in results if k == "refresh"]
    assert sum(r.status_code == 200 for r in refreshed) == 1

    time.sleep(1.2)
    for code in pending:
        assert poll(server, code["device_code"]).status_code == 200
        time.sleep(0.05)

    engine = engine_for(server)
    try:
        with engine.connect() as connection:
            live = connection.execute(text(
                "SELECT token_family_id, COUNT(*) FROM tokens WHERE token_category='refresh' "
                "AND status='active' GROUP BY token_family_id")).all()
    finally:
        engine.dispose()
    assert all(count == 1 for _, count in live), live
