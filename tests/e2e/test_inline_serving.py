"""SERVER_INLINE_API: the API's hot requests answered on waitress's I/O thread, in a
real `authgate server` process run with production.ini (whose log lines name the
thread: ``[MainThread]`` is the I/O thread, ``[waitress-N]`` a worker)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from e2e_support import AUTHGATE, LiveServer, free_port, start_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def production_server(tmp_path, store_environ):
    servers: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        cwd = tmp_path / f"srv{len(servers)}"
        cwd.mkdir()
        shutil.copy(ROOT / "production.ini", cwd / "production.ini")
        port = free_port()
        server = start_server(cwd, {
            "SESSION_SECRET": "s" * 40, "JWT_SECRET": "j" * 40,
            "SERVER_ADDR": f"127.0.0.1:{port}", "BASE_URL": f"http://127.0.0.1:{port}",
            "DEFAULT_ADMIN_PASSWORD": "inline-admin-password-0123",
            "ENABLE_RATE_LIMIT": "false", **store_environ(), **env},
            ini=cwd / "production.ini", defaults=False, log_name="server.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def access_threads(server: LiveServer, method: str, path: str) -> list[str]:
    """The thread names of the access-log lines of ``method path``, in order."""
    time.sleep(0.2)  # the log line is written after the response
    pattern = re.compile(r"\[authgate\.access\]\[([\w-]+)\] \S+ \"" + re.escape(method)
                         + " " + re.escape(path) + '"')
    return [m.group(1) for m in pattern.finditer(server.log())]


def create_client(server: LiveServer) -> tuple[str, str]:
    result = subprocess.run(
        [AUTHGATE, "create-client", "-c", str(server.cwd / "production.ini"), "inline-cc",
         "--confidential", "--client-credentials", "--no-device"],
        cwd=server.cwd, env=server.env, capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    client_id = re.search(r"^Client ID:\s+(\S+)$", result.stdout, re.M).group(1)
    secret = re.search(r"^Client Secret:\s+(\S+)$", result.stdout, re.M).group(1)
    return client_id, secret


def test_api_requests_are_answered_on_the_io_thread_and_pages_by_workers(
        production_server):
    server = production_server()
    client = create_client(server)
    health = requests.get(server.url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    jwks = requests.get(server.url + "/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200 and "keys" in jwks.json()
    issued = requests.post(server.url + "/oauth/token", auth=client, timeout=10,
                           data={"grant_type": "client_credentials"})
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    answer = requests.post(server.url + "/oauth/introspect", auth=client, timeout=10,
                           data={"token": token})
    assert answer.status_code == 200 and answer.json()["active"] is True
    unknown = requests.post(server.url + "/oauth/token", timeout=10, data={
        "grant_type": DEVICE_GRANT, "device_code": "nope", "client_id": client[0]})
    # A confidential client that sent no secret.
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    login = requests.get(server.url + "/login", timeout=10)
    assert login.status_code == 200 and 'name="csrf_token"' in login.text

    assert set(access_threads(server, "GET", "/.well-known/jwks.json")) == {"MainThread"}
    # Client credentials (Basic), then the device poll; on either store.
    assert access_threads(server, "POST", "/oauth/token") == ["MainThread", "MainThread"]
    assert access_threads(server, "POST", "/oauth/introspect") == ["MainThread"]
    # start_server's health checks and the one above
    assert set(access_threads(server, "GET", "/health")) == {"MainThread"}
    pages = access_threads(server, "GET", "/login")
    assert pages and all(name.startswith("waitress-") for name in pages), pages


def test_pipelined_requests_are_answered_in_order_inline_and_by_workers(production_server):
    """One packet, four requests: two taken inline, a page in between for a worker;
    the answers come back in the order asked, on the one connection."""
    server = production_server()
    port = int(server.url.rsplit(":", 1)[1])
    requests_text = (
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /login HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 22\r\n\r\n"
        "grant_type=nonexistent"
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests_text.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"200", b"200", b"400", b"200"], received[:2000]
    parts = received.split(b"HTTP/1.1 ")[1:]
    assert b'"status": "healthy"' in parts[0]
    assert b'name="csrf_token"' in parts[1]
    assert b"unsupported_grant_type" in parts[2]
    assert b'"keys"' in parts[3]


def test_switched_off_every_request_goes_to_the_workers(production_server):
    server = production_server(SERVER_INLINE_API="false")
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    threads = access_threads(server, "GET", "/health")
    assert threads and all(name.startswith("waitress-") for name in threads), threads


def hold_write_lock(server: LiveServer, seconds: float) -> threading.Thread:
    """Another process's writer: the database's write lock taken for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        if server.env.get("DATABASE_DRIVER") == "postgres":
            import psycopg

            with psycopg.connect(server.env["DATABASE_DSN"]) as conn:
                conn.execute("LOCK TABLE tokens IN EXCLUSIVE MODE")
                ready.set()
                time.sleep(seconds)
        else:
            conn = sqlite3.connect(server.cwd / "oauth.db", isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                ready.set()
                time.sleep(seconds)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(10)
    return thread


def test_a_request_held_up_by_the_database_sends_requests_to_the_workers(
        production_server):
    server = production_server()
    client = create_client(server)
    holder = hold_write_lock(server, 0.5)
    started = time.monotonic()
    # The secret in the body (client_secret_post): taken inline on either store.
    issued = requests.post(server.url + "/oauth/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": client[0],
        "client_secret": client[1]})
    waited = time.monotonic() - started
    holder.join()
    # The request waited for the lock, then succeeded; nothing was lost.
    assert issued.status_code == 200, issued.text
    assert waited >= 0.3
    time.sleep(0.2)
    assert re.search(r"A request to /oauth/token took \d+ ms on the I/O thread .* requests "
                     r"go to the worker threads for 5 s", server.log()), server.log()[-3000:]
    # For the next five seconds the API is served by the workers ...
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    assert access_threads(server, "GET", "/health")[-1].startswith("waitress-")
    # ... then on the I/O thread again.
    time.sleep(5.2)
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    assert access_threads(server, "GET", "/health")[-1] == "MainThread"


def stored_tokens(server: LiveServer) -> int:
    """Rows in the tokens table, read by another connection than the server's."""
    if server.env.get("DATABASE_DRIVER") == "postgres":
        import psycopg

        with psycopg.connect(server.env["DATABASE_DSN"]) as conn:
            return conn.execute("SELECT count(*) FROM tokens").fetchone()[0]
    conn = sqlite3.connect(server.cwd / "oauth.db")
    try:
        return conn.execute("SELECT count(*) FROM tokens").fetchone()[0]
    finally:
        conn.close()


def client_credentials_request(client: tuple[str, str]) -> bytes:
    body = b"grant_type=client_credentials"
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    return (f"POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def cached_client(server: LiveServer) -> tuple[str, str]:
    """A confidential client already in the server's client cache: its first request
    went through the full stack, its next ones through the API lane."""
    client = create_client(server)
    for _ in range(2):
        warm = requests.post(server.url + "/oauth/token", auth=client, timeout=10,
                             data={"grant_type": "client_credentials"})
        assert warm.status_code == 200, warm.text
    return client


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_requests_read_in_one_turn_share_a_commit_and_are_answered_after_it(
        production_server):
    """Three token requests read in one turn of the event loop: their rows are
    written by one INSERT per table and one COMMIT, and no answer leaves before it."""
    server = production_server(DB_LOG_LEVEL="info")
    client = cached_client(server)
    before = stored_tokens(server)
    time.sleep(0.2)
    log_before = len(server.log())
    port = int(server.url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        # Stopped, the server reads nothing: when it goes on, one turn of its loop
        # finds all three requests waiting.
        time.sleep(0.2)  # the connections accepted
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for sock in sockets:
                sock.sendall(client_credentials_request(client))
            time.sleep(0.2)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        first = read_answer(sockets[0])
        # By the time the first answer arrived, all three rows were stored.
        assert stored_tokens(server) == before + 3
        answers = [first, *(read_answer(sock) for sock in sockets[1:])]
    finally:
        for sock in sockets:
            sock.close()
    assert [status for status, _ in answers] == [200, 200, 200], answers
    assert len({body["access_token"] for _, body in answers}) == 3
    time.sleep(0.2)
    statements = server.log()[log_before:]
    # One statement per table for the three requests' rows (the tokens, their
    # audit events), not one per request.
    assert len(re.findall(r"INSERT INTO tokens\b", statements)) == 1, statements[-4000:]
    assert len(re.findall(r"INSERT INTO audit_logs\b", statements)) == 1, statements[-4000:]
    assert access_threads(server, "POST", "/oauth/token")[-3:] == ["MainThread"] * 3


def test_a_turn_whose_rows_cannot_be_stored_issues_nothing(production_server, store_environ):
    """The database refuses the turn's commit (another process holds its lock past
    the timeout): the held answer is dropped, the full stack answers the request
    again on a worker thread (503 while the lock is held), and no token exists
    whose row was not stored."""
    environ = store_environ()
    if environ.get("DATABASE_DRIVER") == "postgres":
        server = production_server(
            DATABASE_DSN=environ["DATABASE_DSN"] + " options='-c statement_timeout=200'")
    else:
        server = production_server(SQLITE_BUSY_TIMEOUT="200ms")
    client = cached_client(server)
    before = stored_tokens(server)
    holder = hold_write_lock(server, 2.0)
    try:
        refused = requests.post(server.url + "/oauth/token", auth=client, timeout=30,
                                data={"grant_type": "client_credentials"})
    finally:
        holder.join()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "temporarily_unavailable"
    assert "access_token" not in refused.text
    assert stored_tokens(server) == before
    assert re.search(r"Storing the rows of POST /oauth/token failed \(\w+\): the request is "
                     r"answered again by the full stack", server.log()), server.log()[-3000:]
    assert access_threads(server, "POST", "/oauth/token")[-1].startswith("waitress-")
    # The lock gone, tokens are issued again.
    again = requests.post(server.url + "/oauth/token", auth=client, timeout=10,
                          data={"grant_type": "client_credentials"})
    assert again.status_code == 200, again.text
    assert stored_tokens(server) == before + 1


def test_pipelined_requests_behind_a_held_answer_wait_for_it(production_server):
    """A token request (its answer held until the turn's commit) and two more in the
    same packet: the answers come back in the order asked."""
    server = production_server()
    client = cached_client(server)
    port = int(server.url.rsplit(":", 1)[1])
    token_request = client_credentials_request(client).replace(b"Connection: close\r\n", b"")
    packet = (token_request + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
              + b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(packet)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"200", b"200", b"200"], received
    parts = received.split(b"HTTP/1.1 ")[1:]
    assert b'"access_token"' in parts[0]
    assert b'"status": "healthy"' in parts[1]
    assert b'"keys"' in parts[2]
