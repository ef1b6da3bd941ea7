"""Oversized and malformed requests against a real server (waitress): a clear 4xx,
never a 5xx, and no memory blow-up.

Limits in force:

* request line + headers: waitress ``max_request_header_size`` (256 KiB by
  default) -> 431;
* body: the app refuses anything over 1 MiB with 413 before reading it
  (``authgate.security.MAX_BODY_BYTES``), whatever the server is configured
  with; waitress's ``max_request_body_size`` (4 MiB from ``authgate server`` and
  production.ini, a backstop) refuses larger ones even earlier;
* form fields are parsed in one pass, so a body of many tiny fields costs
  linear time.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests
from e2e_support import start_server

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def server(live_server):
    return live_server(ENABLE_RATE_LIMIT="false")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_healthy(server) -> None:
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_oversized_body_is_refused_with_413(server):
    body = b"grant_type=client_credentials&pad=" + b"a" * (2 * MIB)
    api = requests.post(server.url + "/oauth/token", data=body, headers=FORM, timeout=30)
    assert api.status_code == 413
    assert api.json()["error"] == "invalid_request"
    page = requests.post(server.url + "/login", data=b"username=a&pad=" + b"a" * (2 * MIB),
                         headers={**FORM, "Accept": "text/html"}, timeout=30)
    assert page.status_code == 413 and "too large" in page.text.lower()
    # Sent chunked (no Content-Length): waitress counts it, the app refuses it.

    def chunks():
        for _ in range(40):
            yield b"a" * 65536

    chunked = requests.post(server.url + "/oauth/introspect", data=chunks(), headers=FORM,
                            timeout=30)
    assert chunked.status_code == 413
    # Just under the limit is processed normally.
    fits = requests.post(server.url + "/oauth/token",
                         data=b"grant_type=x&pad=" + b"a" * (MIB - 100), headers=FORM,
                         timeout=30)
    assert fits.status_code == 400 and fits.json()["error"] == "unsupported_grant_type"
    assert_healthy(server)


def test_oversized_bodies_do_not_blow_up_memory(server):
    pid = server.process.pid
    requests.post(server.url + "/oauth/token", data=b"grant_type=x", headers=FORM, timeout=10)
    before = rss_kib(pid)
    for _ in range(10):
        response = requests.post(server.url + "/oauth/token", headers=FORM, timeout=60,
                                 data=b"grant_type=x&pad=" + b"a" * (16 * MIB))
        assert response.status_code == 413
    grown = rss_kib(pid) - before
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB"
    assert_healthy(server)


def test_many_form_fields_are_parsed_in_linear_time(server):
    """~100 000 fields in a body under the 1 MiB limit: answered in seconds, not
    minutes (a per-key getall() made this quadratic)."""
    body = "&".join(f"k{i}=" for i in range(100_000)).encode()
    assert len(body) < MIB
    for path in ("/oauth/token", "/oauth/device/code", "/oauth/revoke"):
        started = time.monotonic()
        response = requests.post(server.url + path, data=body, headers=FORM, timeout=60)
        elapsed = time.monotonic() - started
        assert response.status_code in (400, 401), (path, response.status_code)
        assert elapsed < 10, f"{path} took {elapsed:.1f}s"
    query = "&".join(f"k{i}=" for i in range(20_000))
    started = time.monotonic()
    response = requests.get(server.url + "/oauth/authorize?" + query, timeout=60)
    assert response.status_code == 400 and time.monotonic() - started < 10
    assert_healthy(server)


def test_oversized_headers_are_refused_with_431(server):
    big = requests.get(server.url + "/health", headers={"X-Padding": "a" * 300_000},
                       timeout=30)
    assert big.status_code == 431
    many = requests.get(server.url + "/health", timeout=30,
                        headers={f"X-Pad-{i}": "a" * 1000 for i in range(300)})
    assert many.status_code == 431
    long_url = requests.get(server.url + "/oauth/authorize?state=" + "a" * 300_000,
                            timeout=30)
    assert long_url.status_code == 431
    bearer = requests.get(server.url + "/oauth/userinfo", timeout=30,
                          headers={"Authorization": "Bearer " + "a" * 100_000})
    assert bearer.status_code == 401  # under the header limit: just not a token
    assert_healthy(server)


def test_garbage_and_truncated_requests_do_not_take_the_server_down(server):
    host, port = server.url.removeprefix("http://").split(":")
    probes = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for probe in probes:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(probe)
            sock.shutdown(socket.SHUT_WR)
            try:
                answer = sock.recv(200)
            except TimeoutError:
                answer = b""
        assert not answer.startswith(b"HTTP/1.1 5"), (probe[:40], answer)
    assert_healthy(server)
    assert "Traceback" not in server.log()


def test_waitress_body_limit_from_the_ini_refuses_before_buffering(tmp_path, store_environ):
    """With ``max_request_body_size`` in [server:main] (production.ini sets 4 MiB)
    waitress answers 413 itself, before the app; here 64 KiB, under the app's limit."""
    ini = tmp_path / "small.ini"
    ini.write_text("[app:main]\nuse = egg:authgate\n\n"
                   "[server:main]\nuse = egg:waitress#main\nmax_request_body_size = 65536\n")
    with start_server(tmp_path, {"ENABLE_RATE_LIMIT": "false", **store_environ()}, ini=ini,
                      pass_env=["PYTHONPATH"], log_name="server.log") as server:
        response = requests.post(server.url + "/oauth/token", headers=FORM, timeout=30,
                                 data=b"grant_type=x&pad=" + b"a" * 100_000)
        assert response.status_code == 413
        assert "waitress" in response.text  # refused by the server, not the app
        small = requests.post(server.url + "/oauth/token", data=b"grant_type=x",
                              headers=FORM, timeout=30)
        assert small.status_code == 400
