"""A running AuthGate survives its PostgreSQL server going away and coming back.

The test runs its own throwaway PostgreSQL cluster (initdb in a temporary
directory, a free port), so stopping it disturbs nothing else on the machine.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
from e2e_support import free_port, start_server

pytestmark = pytest.mark.e2e


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL server binaries ({name}) are not installed")
    return found[-1]


def _as_postgres(args: list[str]) -> subprocess.CompletedProcess:
    # initdb and postgres refuse to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, capture_output=True, text=True, timeout=120)


class Cluster:
    def __init__(self, root: str, port: int):
        self.data, self.port = os.path.join(root, "data"), port
        self.log = os.path.join(root, "pg.log")

    def pg_ctl(self, *args: str) -> None:
        done = _as_postgres([_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", *args])
        assert done.returncode == 0, done.stderr + done.stdout

    def start(self) -> None:
        self.pg_ctl("-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")


@pytest.fixture
def cluster():
    # Not under pytest's tmp_path: its parents are private to root, and the
    # postgres user must reach the data directory.
    root = tempfile.mkdtemp(prefix="authgate-pg-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    cluster = Cluster(root, free_port())
    done = _as_postgres([_bin("initdb"), "-D", cluster.data, "-U", "postgres",
                         "--auth=trust", "-E", "UTF8"])
    assert done.returncode == 0, done.stderr
    cluster.start()
    created = _as_postgres([_bin("createdb"), "-h", "127.0.0.1", "-p", str(cluster.port),
                            "-U", "postgres", "authgate"])
    assert created.returncode == 0, created.stderr
    yield cluster
    _as_postgres([_bin("pg_ctl"), "-D", cluster.data, "-m", "immediate", "stop"])
    shutil.rmtree(root, ignore_errors=True)


def health(server) -> tuple[int, dict]:
    response = requests.get(server.url + "/health", timeout=10)
    return response.status_code, response.json()


def test_health_reports_the_outage_and_recovers_without_restart(tmp_path, cluster):
    cwd = tmp_path / "srv"
    cwd.mkdir()
    server = start_server(cwd, {
        "DATABASE_DRIVER": "postgres",
        "DATABASE_DSN": f"host=127.0.0.1 port={cluster.port} user=postgres dbname=authgate"})
    try:
        assert health(server) == (200, {"status": "healthy", "database": "connected"})
        cluster.stop()
        assert health(server) == (503, {"status": "unhealthy", "database": "disconnected"})
        outage = requests.post(server.url + "/oauth/device/code",
                               data={"client_id": server.client_id}, timeout=10)
        assert outage.status_code == 503 and outage.headers["Retry-After"] == "5"
        assert outage.json()["error"] == "temporarily_unavailable"
        cluster.start()
        deadline = time.monotonic() + 20
        while health(server)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health(server) == (200, {"status": "healthy", "database": "connected"})
        after = requests.post(server.url + "/oauth/device/code",
                              data={"client_id": server.client_id}, timeout=10)
        assert after.status_code == 200, after.text
        assert server.process.poll() is None  # the same process, never restarted
    finally:
        server.stop()
