""""100 concurrent device authorization flows": a Python driver, one keep-alive
connection per thread.

Each thread repeats, until the deadline, one complete flow:

1. ``POST /oauth/device/code``             (the device asks for a code)
2. ``GET  /device?user_code=...``          (the signed-in person opens the page)
3. ``POST /device/verify`` action=approve  (CSRF token from that page)
4. ``POST /oauth/token`` device_code grant (the device's poll gets the tokens)

The person's side uses one admin session shared by all threads (signed in once
before the clock starts: an argon2 password check is ~0.3 s of CPU and is not
what this measures).  The device polls once, after approval, so the RFC 8628
interval is client-side idle time and not part of the figure.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


def _cookie(headers: list[tuple[str, str]]) -> str | None:
    for key, value in headers:
        if key.lower() == "set-cookie" and value.startswith("session="):
            return value.split(";", 1)[0]
    return None


def login(port: int, username: str, password: str) -> str:
    """The session cookie of a signed-in ``username``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        body = page.read()
        cookie = _cookie(page.getheaders())
        match = CSRF.search(body)
        if not cookie or not match:
            raise RuntimeError(f"login page without session cookie or CSRF token ({page.status})")
        form = urlencode({"csrf_token": match.group(1).decode(), "username": username,
                          "password": password, "redirect": ""})
        conn.request("POST", "/login", body=form, headers={**FORM, "Cookie": cookie})
        answer = conn.getresponse()
        answer.read()
        signed_in = _cookie(answer.getheaders())
        if answer.status != 302 or not signed_in:
            raise RuntimeError(f"sign-in failed: HTTP {answer.status}")
        return signed_in
    finally:
        conn.close()


@dataclass
class FlowStats:
    flows: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # per request, seconds
    flow_times: list[float] = field(default_factory=list)


def _worker(port: int, client_id: str, cookie: str, deadline: float, stats: FlowStats,
            lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    local = FlowStats()

    def call(method: str, path: str, body: str | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        local.latencies.append(time.perf_counter() - started)
        local.requests += 1
        return response.status, data

    try:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            status, data = call("POST", "/oauth/device/code",
                                urlencode({"client_id": client_id}), FORM)
            if status != 200:
                raise RuntimeError(f"device code: HTTP {status} {data[:200]!r}")
            code = json.loads(data)
            status, page = call("GET", f"/device?user_code={code['user_code']}",
                                headers={"Cookie": cookie})
            match = CSRF.search(page)
            if status != 200 or not match:
                raise RuntimeError(f"device page: HTTP {status}")
            status, data = call("POST", "/device/verify", urlencode({
                "csrf_token": match.group(1).decode(), "user_code": code["user_code"],
                "action": "approve"}), {**FORM, "Cookie": cookie})
            if status != 200 or b"Device authorized" not in data:
                raise RuntimeError(f"approve: HTTP {status} {data[:200]!r}")
            status, data = call("POST", "/oauth/token", urlencode({
                "grant_type": GRANT, "device_code": code["device_code"],
                "client_id": client_id}), FORM)
            if status != 200 or b"access_token" not in data:
                raise RuntimeError(f"token: HTTP {status} {data[:200]!r}")
            local.flows += 1
            local.flow_times.append(time.perf_counter() - began)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        local.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
        with lock:
            stats.flows += local.flows
            stats.requests += local.requests
            stats.errors += local.errors
            stats.latencies += local.latencies
            stats.flow_times += local.flow_times


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run(port: int, client_id: str, cookie: str, *, threads: int = 100,
        duration: float = 10.0) -> dict:
    """Run the scenario for ``duration`` seconds; a result dict like a wrk run's."""
    stats, lock = FlowStats(), threading.Lock()
    started = time.monotonic()
    deadline = started + duration
    workers = [threading.Thread(target=_worker, args=(port, client_id, cookie, deadline, stats,
                                                      lock), daemon=True, name=f"flow-{i}")
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=duration + 60)  # in-flight flows finish; bounded
    elapsed = time.monotonic() - started
    lat = stats.latencies
    return {
        "requests": stats.requests,
        "duration_us": int(elapsed * 1e6),
        "flows": stats.flows,
        "flows_per_s": stats.flows / elapsed if elapsed else 0.0,
        "latency_us": {f"p{p}": int(_percentile(lat, p) * 1e6) for p in (50, 75, 90, 95, 99)},
        "flow_time_ms": {f"p{p}": round(_percentile(stats.flow_times, p) * 1000, 1)
                         for p in (50, 95, 99)},
        "errors": {"flow": len(stats.errors)},
        "error_samples": stats.errors[:5],
        "statuses": {},
        "threads": threads,
    }
