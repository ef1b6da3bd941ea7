"""SIGTERM during a burst: `authgate server` stops accepting, finishes every request it
had accepted (queued, running, or still arriving from a slow client) and exits 0.

The clients are raw sockets so the test knows exactly which requests were on the
wire before the signal and can check each response byte for byte (status line,
headers, a body as long as Content-Length says).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import pytest
import requests

pytestmark = pytest.mark.e2e

QUIET = {"ENABLE_RATE_LIMIT": "false"}  # a burst from one address must not see 429


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = False
    error: str = ""


def read_reply(sock: socket.socket, timeout: float = 20) -> Reply:
    """Read one response to EOF (the requests send Connection: close)."""
    sock.settimeout(timeout)
    data = b""
    reply = Reply()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:  # reset, timeout
        reply.error = repr(exc)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        reply.error = reply.error or f"no complete header: {data[:80]!r}"
        return reply
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
    reply.status = int(match.group(1)) if match else 0
    reply.headers = {k.strip().lower(): v.strip() for k, _, v in
                     (line.partition(":") for line in lines[1:])}
    reply.body = body
    length = reply.headers.get("content-length")
    reply.complete = bool(match) and length is not None and int(length) == len(body)
    return reply


def raw_request(port: int, method: str, path: str, body: bytes = b"", *,
                headers: dict[str, str] | None = None, send_body: bool = True,
                keep_alive: bool = False) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body if send_body else b""))
    return sock


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def login_form(url: str) -> tuple[str, str]:
    """(session cookie header, csrf token) for one POST /login."""
    session = requests.Session()
    page = session.get(url + "/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    return cookie, token


def test_sigterm_during_a_burst_finishes_every_accepted_request(live_server):
    server = live_server(**QUIET, SERVER_SHUTDOWN_TIMEOUT="8s", SERVER_THREADS="4")
    port = urlsplit(server.url).port
    client_id = server.client_id
    device_body = urlencode({"client_id": client_id}).encode()

    # An idle keep-alive connection: it has had its answer and must simply be closed.
    idle = raw_request(port, "GET", "/health", keep_alive=True)
    idle.settimeout(5)
    first = b""
    while b"\r\n\r\n" not in first or not first.endswith(b"}"):  # the whole JSON answer
        chunk = idle.recv(65536)
        assert chunk, first
        first += chunk
    assert first.startswith(b"HTTP/1.1 200 OK")

    # Slow work: failed sign-ins (argon2id verification) queue up behind 4 threads.
    logins = []
    for _ in range(12):
        cookie, token = login_form(server.url)
        body = urlencode({"username": "admin", "password": "wrong-password",
                          "csrf_token": token}).encode()
        logins.append((cookie, body))

    sockets: dict[str, list[socket.socket]] = {"login": [], "device": [], "trickle": []}
    # Slow clients: the body trickles in; half of it is on the wire before the signal.
    trickle_body = device_body
    for _ in range(2):
        sock = raw_request(port, "POST", "/oauth/device/code", trickle_body, headers=FORM,
                           send_body=False)
        sock.sendall(trickle_body[: len(trickle_body) // 2])
        sockets["trickle"].append(sock)
    for cookie, body in logins:
        sockets["login"].append(raw_request(port, "POST", "/login", body,
                                            headers={**FORM, "Cookie": cookie}))
    for _ in range(30):
        sockets["device"].append(raw_request(port, "POST", "/oauth/device/code", device_body,
                                             headers=FORM))

    # A client that has connected but not yet sent its request.
    late = socket.create_connection(("127.0.0.1", port), timeout=10)

    # Every request above is on the wire (the trickling ones in part): SIGTERM now.
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    replies: dict[str, list[Reply]] = {kind: [] for kind in sockets}
    readers = []
    for kind, socks in sockets.items():
        for sock in socks:
            def read(sock=sock, kind=kind):
                replies[kind].append(read_reply(sock))
            thread = threading.Thread(target=read)
            thread.start()
            readers.append(thread)

    # New connections are refused soon, while the slow clients are still being served.
    deadline = time.monotonic() + 3
    while not port_refuses(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port_refuses(port), "the server still accepts connections after SIGTERM"
    # The connection made before the signal still gets its request served.
    late.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    late_reply = read_reply(late)
    late.close()
    assert late_reply.complete and late_reply.status == 200, late_reply
    assert server.process.poll() is None, "the server exited with requests in progress"
    # The idle keep-alive connection is closed, not left to time out.
    assert idle.recv(65536) == b""
    idle.close()

    time.sleep(0.5)
    for sock in sockets["trickle"]:
        sock.sendall(trickle_body[len(trickle_body) // 2:])

    for thread in readers:
        thread.join(30)
    code = server.process.wait(15)
    elapsed = time.monotonic() - signalled
    log = server.log()
    for socks in sockets.values():
        for sock in socks:
            sock.close()

    assert code == 0, log
    assert elapsed < 8 + 5, f"exit took {elapsed:.1f}s"
    for kind, expected_status in (("device", 200), ("trickle", 200), ("login", 401)):
        got = replies[kind]
        assert len(got) == len(sockets[kind])
        bad = [r for r in got if not (r.complete and r.status == expected_status)]
        assert not bad, (kind, [(r.status, r.error, len(r.body), r.headers) for r in bad], log)
    for reply in replies["device"] + replies["trickle"]:
        assert b'"device_code"' in reply.body
    assert "Shutting down: no longer accepting connections" in log
    assert "every request finished" in log
    assert "Server stopped" in log
    assert "Traceback" not in log


def test_a_request_that_never_finishes_is_cut_at_the_timeout(live_server):
    server = live_server(**QUIET, SERVER_SHUTDOWN_TIMEOUT="1s")
    port = urlsplit(server.url).port
    # Headers promise a body that never comes (a stuck client).
    stuck = raw_request(port, "POST", "/oauth/device/code", b"client_id=x" * 10,
                        headers=FORM, send_body=False)
    time.sleep(0.3)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(15)
    elapsed = time.monotonic() - signalled
    stuck.close()
    log = server.log()
    assert code == 0, log
    assert 0.9 <= elapsed < 5, f"exit took {elapsed:.1f}s"
    assert "still busy after" in log and "SERVER_SHUTDOWN_TIMEOUT" in log


def test_second_signal_stops_waiting(live_server):
    server = live_server(**QUIET, SERVER_SHUTDOWN_TIMEOUT="60s")
    port = urlsplit(server.url).port
    stuck = raw_request(port, "POST", "/oauth/device/code", b"client_id=x" * 10,
                        headers=FORM, send_body=False)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.process.poll() is None  # waiting for the stuck request
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(10) == 0
    stuck.close()
    assert "(second signal)" in server.log()


def test_several_listen_addresses_all_stop_and_in_flight_requests_finish():
    """In process, with waitress's MultiSocketServer (an ini `listen` with two addresses):
    a running and a queued keep-alive request both finish; the queued one is told the
    connection closes; both connections are then closed and both ports refuse."""
    from waitress.server import create_server

    from authgate.shutdown import GracefulServer

    started = threading.Event()

    def slow_app(environ, start_response):
        started.set()
        time.sleep(0.5)
        body = b"finished"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = create_server(slow_app, listen="127.0.0.1:0 127.0.0.1:0", threads=1)
    ports = [port for _, port in server.effective_listen]
    assert len(set(ports)) == 2
    graceful = GracefulServer(server, timeout=5)
    runner = threading.Thread(target=graceful.serve)
    runner.start()
    try:
        running = raw_request(ports[0], "GET", "/", keep_alive=True)
        assert started.wait(5)
        queued = raw_request(ports[1], "GET", "/", keep_alive=True)  # waits for the thread
        time.sleep(0.1)
        graceful.request_stop()
        replies = [read_reply(sock, timeout=10) for sock in (running, queued)]
        for sock in (running, queued):
            sock.close()
    finally:
        graceful.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    for reply in replies:
        assert reply.complete and reply.status == 200 and reply.body == b"finished", reply
    assert replies[1].headers["connection"] == "close"
    assert all(port_refuses(port) for port in ports)
    assert not graceful.timed_out
