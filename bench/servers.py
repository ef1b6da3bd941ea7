"""Processes under test: the AuthGate server (as production.ini runs it) and the
hello baseline; PostgreSQL throwaway databases; the load tool."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PRODUCTION_INI = REPO / "production.ini"
ADMIN_PASSWORD = "bench-admin-password-0123456789"
PG_SERVER = os.environ.get("AUTHGATE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian (apt-get) when missing."""
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: apt-get install -y wrk", flush=True)
    cmd = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0:
        cmd = ["sudo", "-n", *cmd]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(cmd, env=env, timeout=300).returncode != 0:
        subprocess.run([*cmd[:-3], "apt-get", "update"], env=env, timeout=300)
        subprocess.run(cmd, env=env, timeout=300, check=True)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("bench: could not install wrk (apt-get install -y wrk)")
    return path


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all threads)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process so far
    (threads that have exited are not counted: waitress's pool lives as long as the
    server).  Under the GIL each hand-off between threads is one or two of these."""
    total = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/status") as handle:
                for line in handle:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split(":")[1])
    return total


def http_request(port: int, method: str, path: str, body: str | None = None,
                 headers: dict[str, str] | None = None,
                 timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if body is not None else None,
                     headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@dataclass
class Process:
    """A server subprocess: started, waited for, measured, stopped with SIGTERM."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str = "/health"
    log_path: Path | None = None
    cpus: set[int] | None = None  # CPU affinity of the process and all its threads
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 90) -> None:
        self.log_path = self.log_path or self.cwd / f"{self.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        cpus = self.cpus
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Set in the child before exec: every thread it starts inherits it.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during "
                                   f"start-up; log:\n{self.tail()}")
            with contextlib.suppress(OSError):
                status, _, _ = http_request(self.port, "GET", self.ready_path, timeout=2)
                if status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout}s; "
                           f"log:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def memory(self) -> dict[str, int]:
        return proc_memory(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def context_switches(self) -> int:
        return proc_context_switches(self.pid)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 20000))
            text = handle.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (a clean waitress shutdown), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def hello_process(workdir: Path, threads: int | None = None, *,
                  inline: bool = False) -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "bench.hello_app", "--listen", f"127.0.0.1:{port}",
            "--config", str(PRODUCTION_INI)]
    if threads:
        argv += ["--threads", str(threads)]
    if inline:
        argv.append("--inline")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return Process("hello-inline" if inline else "hello", argv, env, workdir, port,
                   ready_path="/hello")


def authgate_env(*, workdir: Path, port: int, database: str, dsn: str, alg: str,
                 key_path: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment production.ini expects (secrets from the environment only)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTHGATE_", "JWT_", "DATABASE_", "SESSION_", "ENABLE_"))}
    env.update({
        "SESSION_SECRET": "bench-session-secret-" + "s" * 40,
        "JWT_SECRET": "bench-jwt-secret-" + "j" * 40,
        "BASE_URL": f"http://127.0.0.1:{port}",
        "SERVER_ADDR": f"127.0.0.1:{port}",
        "DATABASE_DRIVER": database,
        "DATABASE_DSN": dsn,
        "DEFAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "CREDENTIALS_FILE": str(workdir / "authgate-credentials.txt"),
        "ENABLE_RATE_LIMIT": "false",
        "JWT_SIGNING_ALGORITHM": alg,
        "PYTHONUNBUFFERED": "1",
    })
    if key_path is not None:
        env["JWT_PRIVATE_KEY_PATH"] = str(key_path)
    env.update(extra or {})
    return env


def authgate_process(name: str, workdir: Path, env: dict[str, str], port: int) -> Process:
    argv = [str(VENV_BIN / "authgate"), "server", "-c", str(PRODUCTION_INI)]
    return Process(name, argv, env, workdir, port, ready_path="/health")


# The RSA key size measured: 2048 bits, the size the troubleshooting guide's
# `openssl genrsa -out rsa-private.pem 2048` creates and RFC 7518's minimum for RS256.
# (`authgate keys generate` defaults to 3072: 0.7 ms a signature here, 2048: 0.25 ms.)
RSA_BITS = 2048


def generate_key(alg: str, path: Path) -> Path:
    if not path.exists():
        extra = ["--bits", str(RSA_BITS)] if alg == "RS256" else []
        subprocess.run([str(VENV_BIN / "authgate"), "keys", "generate", "--alg", alg, "--out",
                        str(path), *extra], check=True, capture_output=True, timeout=60)
    return path


# ---------------------------------------------------------------------------
# PostgreSQL: a throwaway database per run (authgate.testing.postgres's way)
# ---------------------------------------------------------------------------


def pg_available() -> tuple[bool, str]:
    import psycopg

    try:
        with psycopg.connect(PG_SERVER + " dbname=postgres", connect_timeout=3):
            return True, ""
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        if shutil.which("pg_ctlcluster") and os.geteuid() == 0:
            # The machine's cluster is installed but may be down (tooling notes §3).
            clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                      timeout=30).stdout.split()
            if len(clusters) >= 2:
                subprocess.run(["pg_ctlcluster", clusters[0], clusters[1], "start"],
                               capture_output=True, timeout=60)
                with contextlib.suppress(psycopg.OperationalError), psycopg.connect(
                        PG_SERVER + " dbname=postgres", connect_timeout=3):
                    return True, ""
        return False, first


def pg_create() -> str:
    import psycopg

    name = "authgate_bench_" + secrets.token_hex(5)
    with psycopg.connect(PG_SERVER + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_dsn(name: str) -> str:
    return f"{PG_SERVER} dbname={name}"
