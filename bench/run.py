"""The AuthGate load benchmark: ``python -m bench`` (see bench/README.md).

One command: installs wrk from Debian if missing, starts a bare Pyramid hello
app and the AuthGate server (``authgate server -c production.ini``, waitress,
audit database sink on, rate limiting off) on SQLite and on a throwaway
PostgreSQL database, seeds data directly, runs every scenario with
``wrk -t1 -c16 -d10s --latency`` (a Python driver for the device-flow
scenario), and prints / saves requests/s, p50/p95/p99, peak RSS and each
figure's ratio to the hello baseline, with the issue's targets checked.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import flows as flow_driver
from bench import seed as seeding
from bench.servers import (
    ADMIN_PASSWORD,
    REPO,
    Process,
    authgate_env,
    authgate_process,
    ensure_wrk,
    free_port,
    generate_key,
    hello_process,
    http_request,
    pg_available,
    pg_create,
    pg_drop,
    pg_dsn,
    wrk_version,
)

LUA = Path(__file__).resolve().parent / "scenario.lua"
RESULTS = Path(__file__).resolve().parent / "results"
FORM = "Content-Type: application/x-www-form-urlencoded"
DEVICE_GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"

# The issue's "done when" figures (ratio to the hello baseline).
P95_LIMIT_MS = 25.0
PG_MIN_RATIO = 0.80
LARGE_TABLE_TOLERANCE = 0.20
RSS_LIMIT_MB = 150.0
RSS_GROWTH_LIMIT = 0.05
CC_TARGETS = {"HS256": 0.35, "ES256": 0.30, "RS256": 0.20}


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    method: str = "GET"
    path: str = "/"
    expect: tuple[int, ...] = (200,)
    target: float | None = None
    basic: bool = False  # HTTP Basic with the confidential client
    form: bool = False
    python: bool = False  # driven by bench.flows, not wrk


SCENARIOS = {s.name: s for s in (
    Scenario("health", "/health (DB round trip)", path="/health"),
    Scenario("jwks", "JWKS", path="/.well-known/jwks.json", target=0.80),
    Scenario("discovery", "OIDC discovery", path="/.well-known/openid-configuration",
             target=0.80),
    Scenario("device-code", "device code request", "POST", "/oauth/device/code", form=True),
    Scenario("poll", "device polling (pending)", "POST", "/oauth/token", expect=(400,),
             target=0.50, form=True),
    Scenario("cc", "client credentials", "POST", "/oauth/token", basic=True, form=True),
    Scenario("introspect", "introspection", "POST", "/oauth/introspect", target=0.45,
             basic=True, form=True),
    Scenario("introspect-1m", "introspection (1M rows)", "POST", "/oauth/introspect",
             target=0.45, basic=True, form=True),
    Scenario("refresh", "refresh (fixed mode)", "POST", "/oauth/token", form=True),
    Scenario("flows", "100 concurrent device flows", python=True),
)}
HS256_SCENARIOS = ["health", "jwks", "discovery", "device-code", "poll", "cc", "introspect",
                   "refresh", "flows"]
ASYM_SCENARIOS = ["jwks", "cc", "introspect", "refresh"]
ALL_NAMES = ["hello", *SCENARIOS]


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    repeat: int
    only: set[str]
    databases: list[str]
    algorithms: list[str]
    rows_small: int
    rows_large: int
    poll_codes: int
    real_tokens: int
    flow_threads: int
    server_threads: int | None
    pin_cpu: int | None
    extra_env: dict[str, str]
    profile: bool
    profile_gil: bool
    keep: bool
    output: Path | None


@dataclass
class Database:
    kind: str  # sqlite | postgres
    role: str  # main | large
    workdir: Path
    dsn: str = ""
    pg_name: str | None = None
    seeded: seeding.Seeded | None = None
    poll_cursor: int = 0
    token_rows: int = 0
    files: dict[str, Path] = field(default_factory=dict)


class Bench:
    def __init__(self, options: Options, wrk: str, workdir: Path):
        self.o = options
        self.wrk = wrk
        self.workdir = workdir
        self.rows: list[dict] = []
        self.hello: list[dict] = []
        self.hello_inline: list[dict] = []
        self.notes: list[str] = []
        self.keys: dict[str, Path] = {}
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.profile_dir = RESULTS / f"profile-{self.stamp}"

    # -- load ----------------------------------------------------------------

    @property
    def server_cpus(self) -> set[int] | None:
        """--pin-cpu: both servers on that one CPU (a process per core, pinned)."""
        return {self.o.pin_cpu} if self.o.pin_cpu is not None else None

    def pin_load_tool(self) -> None:
        """With --pin-cpu, wrk runs on the other CPUs (called in wrk's process)."""
        if self.o.pin_cpu is not None:
            others = set(os.sched_getaffinity(0)) - {self.o.pin_cpu}
            if others:
                os.sched_setaffinity(0, others)

    def wrk_run(self, port: int, scenario: Scenario, seconds: int, *, bodies: Path | None,
                offset: int = 0, headers: list[str] = ()) -> dict:
        cmd = [self.wrk, "-t1", f"-c{self.o.connections}", f"-d{seconds}s", "--latency",
               "--timeout", "5s", "-s", str(LUA), f"http://127.0.0.1:{port}{scenario.path}",
               "--", scenario.method, scenario.path, str(bodies) if bodies else "-",
               str(offset), *headers]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                              preexec_fn=self.pin_load_tool)
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                result = json.loads(line[len("BENCH_JSON "):])
                result["wrk_output"] = done.stdout
                return result
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n"
                           f"{done.stderr}")

    def measure(self, process: Process, scenario: Scenario, *, bodies: Path | None = None,
                offset: int = 0, headers: list[str] = (), label: str = "") -> dict:
        """Warm-up, then the measured run with memory and CPU of the server around it."""
        advanced = 0
        if self.o.warmup:
            warm = self.wrk_run(process.port, scenario, self.o.warmup, bodies=bodies,
                                offset=offset, headers=headers)
            advanced = warm["requests"] + 2 * self.o.connections
        cpu_before = process.cpu_seconds()
        switches_before = process.context_switches()
        load_before = os.getloadavg()[0]
        profiler = self.start_profiler(process, label or scenario.name)
        result = self.wrk_run(process.port, scenario, self.o.duration, bodies=bodies,
                              offset=offset + advanced, headers=headers)
        if profiler is not None:
            profiler.wait(timeout=self.o.duration + 60)
        result["server_cpu_s"] = round(process.cpu_seconds() - cpu_before, 2)
        result["context_switches"] = process.context_switches() - switches_before
        result["loadavg"] = round(max(load_before, os.getloadavg()[0]), 2)
        result["advanced"] = advanced + result["requests"] + 2 * self.o.connections
        result["memory_kb"] = process.memory()
        return result

    def start_profiler(self, process: Process, label: str):
        if not (self.o.profile or self.o.profile_gil):
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{label}.txt"
        return subprocess.Popen(
            [spy, "record", "--pid", str(process.pid), "--rate", "200", "--duration",
             str(self.o.duration), "--format", "raw", "--output", str(out), "--nonblocking",
             *(["--gil"] if self.o.profile_gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- hello ---------------------------------------------------------------

    def run_hello(self, reps: int, phase: str, *, inline: bool = False) -> None:
        """The baseline; with ``inline``, the reference row: the same app with /hello
        answered on waitress's I/O thread, as `authgate server` answers the API's hot
        requests (SERVER_INLINE_API), to show what that alone is worth."""
        process = hello_process(self.workdir, self.o.server_threads, inline=inline)
        process.cpus = self.server_cpus
        process.start()
        name = "hello-inline" if inline else "hello"
        try:
            for rep in range(1, reps + 1):
                scenario = Scenario(name, "hello (bare Pyramid)", path="/hello")
                result = self.measure(process, scenario, label=f"{name}-{phase}-{rep}")
                row = self.row("-", "-", scenario, rep, result, rows=None)
                row["phase"] = phase
                (self.hello_inline if inline else self.hello).append(row)
                self.print_progress(row)
        finally:
            process.stop()

    # -- AuthGate ------------------------------------------------------------

    def key_for(self, alg: str) -> Path | None:
        if alg == "HS256":
            return None
        if alg not in self.keys:
            self.keys[alg] = generate_key(alg, self.workdir / f"{alg.lower()}.pem")
        return self.keys[alg]

    def env_for(self, db: Database, alg: str, port: int) -> dict[str, str]:
        return authgate_env(workdir=db.workdir, port=port, database=db.kind, dsn=db.dsn,
                            alg=alg, key_path=self.key_for(alg), extra=self.o.extra_env)

    def create_database(self, kind: str, role: str) -> Database:
        workdir = self.workdir / f"{kind}-{role}"
        workdir.mkdir(parents=True, exist_ok=True)
        db = Database(kind, role, workdir)
        if kind == "sqlite":
            db.dsn = str(workdir / "oauth.db")
        else:
            db.pg_name = pg_create()
            db.dsn = pg_dsn(db.pg_name)
        return db

    def seed(self, db: Database, alg: str, *, rows: int) -> None:
        """Base data on first use; then this algorithm's real tokens; then filler rows."""
        env = self.env_for(db, alg, 1)
        started = time.monotonic()
        runtime = seeding.build_runtime(env, db.workdir, prepare_db=db.seeded is None)
        try:
            if db.seeded is None:
                codes = self.o.poll_codes if db.role == "main" else 0
                db.seeded = seeding.seed_base(runtime, poll_codes=codes)
                if codes:
                    poll = db.workdir / "poll.txt"
                    poll.write_text("\n".join(seeding.poll_bodies(db.seeded)) + "\n")
                    db.files["poll"] = poll
            pairs = seeding.issue_tokens(runtime, db.seeded, self.o.real_tokens)
            s = db.seeded
            (db.workdir / f"introspect-{alg}.txt").write_text(
                "".join(f"token={a}&token_type_hint=access_token\n" for a, _ in pairs))
            db.files[f"introspect-{alg}"] = db.workdir / f"introspect-{alg}.txt"
            refresh = db.workdir / f"refresh-{alg}.txt"
            refresh.write_text("".join(
                f"grant_type=refresh_token&refresh_token={r}&client_id={s.device_client_id}\n"
                for _, r in pairs[:64]))
            db.files[f"refresh-{alg}"] = refresh
            added, seconds = seeding.fill_tokens(runtime, s, rows)
            db.token_rows = seeding.token_count(runtime)
        finally:
            runtime.close()
        print(f"  seeded {db.kind}/{db.role} for {alg}: {db.token_rows} token rows "
              f"({added} filler rows in {seconds:.1f}s; {time.monotonic() - started:.1f}s in all)",
              flush=True)

    def basic_header(self, db: Database) -> str:
        s = db.seeded
        raw = f"{s.conf_client_id}:{s.conf_secret}".encode()
        return "Authorization: Basic " + base64.b64encode(raw).decode()

    def scenario_input(self, db: Database, alg: str, scenario: Scenario,
                       process: Process) -> tuple[Path | None, list[str]]:
        s = db.seeded
        headers = [FORM] if scenario.form else []
        if scenario.basic:
            headers.append(self.basic_header(db))
        name = scenario.name
        if name == "device-code":
            return self.body_file(db, name, f"client_id={s.device_client_id}"), headers
        if name == "poll":
            return db.files["poll"], headers
        if name == "cc":
            return self.body_file(db, name, "grant_type=client_credentials"), headers
        if name.startswith("introspect"):
            return db.files[f"introspect-{alg}"], headers
        if name == "refresh":
            return db.files[f"refresh-{alg}"], headers
        return None, headers

    def body_file(self, db: Database, name: str, body: str) -> Path:
        path = db.workdir / f"{name}.txt"
        path.write_text(body + "\n")
        return path

    def probe(self, process: Process, scenario: Scenario, bodies: Path | None, offset: int,
              headers: list[str]) -> tuple[str, str]:
        """One request first: ("ok", ""), ("missing", why) or ("failed", why)."""
        body = None
        if bodies is not None:
            lines = bodies.read_text().splitlines()
            body = lines[(offset + 1) % len(lines)] if len(lines) > 1 else lines[0]
        hdrs = dict(h.split(": ", 1) for h in headers)
        status, _, data = http_request(process.port, scenario.method, scenario.path, body, hdrs)
        text = data[:300].decode("utf-8", "replace")
        if status in scenario.expect:
            return "ok", ""
        if status == 404 or (scenario.name == "cc" and "unsupported_grant_type" in text):
            return "missing", f"HTTP {status}: {text}"
        return "failed", f"HTTP {status}: {text}"

    def run_server(self, db: Database, alg: str, names: list[str]) -> None:
        port = free_port()
        env = self.env_for(db, alg, port)
        process = authgate_process(f"authgate-{db.kind}-{db.role}-{alg}", db.workdir, env, port)
        process.cpus = self.server_cpus
        process.start()
        print(f"  server {process.name} pid {process.pid} on :{port} "
              f"(RSS {process.memory().get('VmRSS', 0) / 1024:.0f} MB idle)", flush=True)
        try:
            for rep in range(1, self.o.repeat + 1):
                for name in names:
                    self.run_scenario(process, db, alg, SCENARIOS[name], rep)
                mem = process.memory()
                self.rows.append({"kind": "memory", "db": db.kind, "role": db.role, "alg": alg,
                                  "rep": rep, "server": process.name,
                                  "rss_kb": mem.get("VmRSS"), "hwm_kb": mem.get("VmHWM")})
        finally:
            code = process.stop()
            if code not in (0, None):
                self.notes.append(f"{process.name} exited with {code}")

    def run_scenario(self, process: Process, db: Database, alg: str, scenario: Scenario,
                     rep: int) -> None:
        rows = db.token_rows if scenario.name.startswith("introspect") else None
        label = f"{scenario.name}-{db.kind}-{alg}-{rep}"
        if scenario.python:
            self.start_profiler(process, label)
            cookie = flow_driver.login(process.port, "admin", ADMIN_PASSWORD)
            cpu = process.cpu_seconds()
            load_before = os.getloadavg()[0]
            result = flow_driver.run(process.port, db.seeded.device_client_id, cookie,
                                     threads=self.o.flow_threads, duration=self.o.duration)
            result["server_cpu_s"] = round(process.cpu_seconds() - cpu, 2)
            result["loadavg"] = round(max(load_before, os.getloadavg()[0]), 2)
            result["memory_kb"] = process.memory()
            row = self.row(db.kind, alg, scenario, rep, result, rows=None)
            self.rows.append(row)
            self.print_progress(row)
            return
        bodies, headers = self.scenario_input(db, alg, scenario, process)
        offset = db.poll_cursor if scenario.name == "poll" else 0
        state, why = self.probe(process, scenario, bodies, offset, headers)
        if scenario.name == "poll":
            db.poll_cursor += 2
            offset = db.poll_cursor
        if state != "ok":
            row = {"kind": "scenario", "db": db.kind, "alg": alg, "scenario": scenario.name,
                   "label": scenario.label, "rep": rep, "state": state, "reason": why,
                   "rows": rows}
            self.rows.append(row)
            print(f"  {db.kind:8} {alg:5} {scenario.name:14} {state.upper()}: {why[:160]}",
                  flush=True)
            return
        slow_before = self.slow_downs(db, alg) if scenario.name == "poll" else 0
        result = self.measure(process, scenario, bodies=bodies, offset=offset, headers=headers,
                              label=label)
        if scenario.name == "poll":
            db.poll_cursor += result["advanced"]
            result["slow_down"] = self.slow_downs(db, alg) - slow_before
            if db.poll_cursor > self.o.poll_codes:
                self.notes.append("poll: the rotating set wrapped around; raise --poll-codes "
                                  "so every code is polled at most once per interval")
        row = self.row(db.kind, alg, scenario, rep, result, rows=rows)
        self.rows.append(row)
        self.print_progress(row)

    def slow_downs(self, db: Database, alg: str) -> int:
        runtime = seeding.build_runtime(self.env_for(db, alg, 1), db.workdir, prepare_db=False)
        try:
            return seeding.slow_down_count(runtime, db.seeded)
        finally:
            runtime.close()

    # -- results -------------------------------------------------------------

    def row(self, db: str, alg: str, scenario: Scenario, rep: int, result: dict, *,
            rows: int | None) -> dict:
        seconds = result["duration_us"] / 1e6
        lat = result["latency_us"]
        statuses = {int(k): v for k, v in result.get("statuses", {}).items()}
        unexpected = sum(v for k, v in statuses.items() if k not in scenario.expect)
        errors = result.get("errors", {})
        socket_errors = sum(v for k, v in errors.items() if k != "status")
        mem = result.get("memory_kb", {})
        target = scenario.target
        if scenario.name == "cc":
            target = CC_TARGETS.get(alg)
        row = {
            "kind": "scenario", "db": db, "alg": alg, "scenario": scenario.name,
            "label": scenario.label, "rep": rep, "state": "ok", "rows": rows,
            "requests": result["requests"], "seconds": round(seconds, 2),
            "rps": round(result["requests"] / seconds, 1) if seconds else 0.0,
            "p50_ms": lat.get("p50", 0) / 1000, "p95_ms": lat.get("p95", 0) / 1000,
            "p99_ms": lat.get("p99", 0) / 1000,
            "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mb": round(mem.get("VmHWM", 0) / 1024, 1),
            "server_cpu_s": result.get("server_cpu_s"),
            # CPU time the server spent per request: the figure least disturbed by
            # other load on the machine (compare optimisations with it).
            "cpu_ms_per_req": round(1000 * result["server_cpu_s"] / result["requests"], 3)
            if result.get("server_cpu_s") is not None and result["requests"] else None,
            "loadavg": result.get("loadavg"),
            # Thread switches in the server per request (GIL hand-offs among them).
            "switches_per_req": round(result["context_switches"] / result["requests"], 1)
            if result.get("context_switches") is not None and result["requests"] else None,
            "statuses": statuses, "unexpected": unexpected + socket_errors,
            "target": target,
        }
        for key in ("flows", "flows_per_s", "flow_time_ms", "error_samples", "threads",
                    "slow_down"):
            if key in result:
                row[key] = result[key]
        if scenario.python and result.get("errors", {}).get("flow"):
            row["unexpected"] = result["errors"]["flow"]
        return row

    def print_progress(self, row: dict) -> None:
        extra = ""
        if "flows_per_s" in row:
            extra = f"  {row['flows_per_s']:.1f} flows/s"
        if row.get("slow_down"):
            extra += f"  slow_down={row['slow_down']}"
        if row.get("unexpected"):
            extra += f"  UNEXPECTED={row['unexpected']} {row.get('statuses')}"
            extra += f" {row.get('error_samples', '')}"
        print(f"  {row['db']:8} {row['alg']:5} {row['scenario']:14} rep {row['rep']}  "
              f"{row['rps']:8.1f} req/s  p50 {row['p50_ms']:.1f} p95 {row['p95_ms']:.1f} "
              f"p99 {row['p99_ms']:.1f} ms  peak RSS {row['peak_rss_mb']:.0f} MB{extra}",
              flush=True)

    def baseline(self) -> float:
        values = [h["rps"] for h in self.hello]
        return statistics.median(values) if values else 0.0

    def finish(self) -> dict:
        hello = self.baseline()
        scenario_rows = [r for r in self.rows if r["kind"] == "scenario"]
        for row in scenario_rows + self.hello + self.hello_inline:
            if row.get("state") == "ok" and hello:
                row["ratio"] = round(row["rps"] / hello, 3)
                if row.get("target") is not None:
                    row["meets_target"] = row["ratio"] >= row["target"]
        inline = [h["rps"] for h in self.hello_inline]
        return {"hello_rps": hello,
                "hello_inline_rps": statistics.median(inline) if inline else None,
                "checks": self.checks(scenario_rows, hello)}

    def checks(self, rows: list[dict], hello: float) -> list[dict]:
        ok = [r for r in rows if r.get("state") == "ok"]

        def median(db: str, alg: str, name: str, key: str = "rps") -> float | None:
            values = [r[key] for r in ok if (r["db"], r["alg"], r["scenario"]) == (db, alg, name)]
            return statistics.median(values) if values else None

        checks = []
        keys = sorted({(r["db"], r["alg"], r["scenario"]) for r in ok})
        for db, alg, name in keys:
            target = next(r["target"] for r in ok if (r["db"], r["alg"], r["scenario"]) ==
                          (db, alg, name))
            rps, p95 = median(db, alg, name), median(db, alg, name, "p95_ms")
            if target is not None and hello:
                checks.append({"check": f"{db} {alg} {name} >= {target:.0%} of hello",
                               "value": round(rps / hello, 3), "pass": rps / hello >= target})
            if name != "flows":
                checks.append({"check": f"{db} {alg} {name} p95 <= {P95_LIMIT_MS:.0f} ms",
                               "value": p95, "pass": p95 <= P95_LIMIT_MS})
        for db, alg, name in keys:
            if db != "postgres":
                continue
            lite = median("sqlite", alg, name)
            if lite:
                value = median(db, alg, name) / lite
                checks.append({"check": f"postgres {alg} {name} >= {PG_MIN_RATIO:.0%} of "
                                        "sqlite", "value": round(value, 3),
                               "pass": value >= PG_MIN_RATIO})
        for db in ("sqlite", "postgres"):
            small, large = median(db, "HS256", "introspect"), median(db, "HS256",
                                                                     "introspect-1m")
            if small and large:
                value = large / small
                checks.append({"check": f"{db} introspection 1M rows within "
                                        f"{LARGE_TABLE_TOLERANCE:.0%} of 100k",
                               "value": round(value, 3),
                               "pass": abs(1 - value) <= LARGE_TABLE_TOLERANCE})
        memory = [r for r in self.rows if r["kind"] == "memory"]
        if memory:
            peak = max(r["hwm_kb"] or 0 for r in memory) / 1024
            checks.append({"check": f"peak RSS <= {RSS_LIMIT_MB:.0f} MB",
                           "value": round(peak, 1), "pass": peak <= RSS_LIMIT_MB})
        for server in sorted({r["server"] for r in memory}):
            by_rep = {r["rep"]: r["rss_kb"] for r in memory if r["server"] == server}
            if 2 in by_rep and 3 in by_rep and by_rep[2]:
                growth = by_rep[3] / by_rep[2] - 1
                checks.append({"check": f"{server}: RSS growth rep 2 -> 3 < "
                                        f"{RSS_GROWTH_LIMIT:.0%}", "value": round(growth, 4),
                               "pass": growth < RSS_GROWTH_LIMIT})
        return checks


def print_table(hello_rows: list[dict], rows: list[dict], summary: dict) -> str:
    out = []
    head = (f"{'db':8} {'alg':5} {'scenario':14} {'rows':>7} {'rep':>3} {'req/s':>8} "
            f"{'ratio':>6} {'target':>6} {'p50ms':>6} {'p95ms':>6} {'p99ms':>6} "
            f"{'peakRSS':>7} {'cpu%':>5} {'ms/req':>6} {'cs/req':>6} {'load':>5}  notes")
    out.append(head)
    out.append("-" * len(head))
    for row in hello_rows + [r for r in rows if r["kind"] == "scenario"]:
        rows_txt = f"{row['rows'] // 1000}k" if row.get("rows") else ""
        if row.get("state") != "ok":
            out.append(f"{row['db']:8} {row['alg']:5} {row['scenario']:14} {rows_txt:>7} "
                       f"{row['rep']:>3} {row['state'].upper():>8}  {row['reason'][:90]}")
            continue
        target = f"{row['target']:.0%}" if row.get("target") is not None else ""
        notes = []
        if "flows_per_s" in row:
            notes.append(f"{row['flows_per_s']:.1f} flows/s ({row['flows']} flows, "
                         f"{row.get('threads')} threads)")
        if row.get("slow_down") is not None:
            notes.append(f"slow_down {row['slow_down']}")
        if row.get("unexpected"):
            notes.append(f"UNEXPECTED {row['unexpected']}")
        if row.get("meets_target") is False:
            notes.append("below target")
        cpu = ""
        if row.get("server_cpu_s") is not None and row["seconds"]:
            cpu = f"{100 * row['server_cpu_s'] / row['seconds']:.0f}"
        out.append(
            f"{row['db']:8} {row['alg']:5} {row['scenario']:14} {rows_txt:>7} {row['rep']:>3} "
            f"{row['rps']:8.1f} {row.get('ratio', 0):6.2f} {target:>6} {row['p50_ms']:6.1f} "
            f"{row['p95_ms']:6.1f} {row['p99_ms']:6.1f} {row['peak_rss_mb']:6.0f}M {cpu:>5} "
            f"{row.get('cpu_ms_per_req') or 0:6.2f} {row.get('switches_per_req') or 0:6.1f} "
            f"{row.get('loadavg') or 0:5.1f}  "
            + "; ".join(notes))
    out.append("")
    out.append(f"hello baseline (median): {summary['hello_rps']:.1f} req/s")
    if summary.get("hello_inline_rps"):
        out.append(f"hello-inline (reference, not the baseline): /hello answered on waitress's "
                   f"I/O thread as `authgate server` answers the API's hot requests "
                   f"(SERVER_INLINE_API): {summary['hello_inline_rps']:.1f} req/s")
    out.append("cpu% = server process CPU over the run (100 = one core); ms/req = server CPU "
               "per request; cs/req = the server's thread context switches per request; "
               "load = 1-min load average (2 cores: above ~2.5 means other "
               "work shared the machine and the figures are low)")
    out.append("")
    out.append("checks (issue #11 'done when'; medians over repetitions):")
    for check in summary["checks"]:
        value = check["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        out.append(f"  [{'PASS' if check['pass'] else 'FAIL'}] {check['check']}: {shown}")
    return "\n".join(out)


def git_describe() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="3 s runs after a 1 s warm-up (default: 10 s after 3 s)")
    parser.add_argument("--duration", type=int, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1,
                        help="repetitions per server process (RSS growth between them)")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " +
                        ", ".join(ALL_NAMES))
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--alg", default="HS256,ES256,RS256", help="HS256,ES256,RS256")
    parser.add_argument("--rows-small", type=int, default=100_000)
    parser.add_argument("--rows-large", type=int, default=1_000_000)
    parser.add_argument("--poll-codes", type=int, default=50_000,
                        help="pending device codes polled in rotation")
    parser.add_argument("--real-tokens", type=int, default=1000,
                        help="signed tokens per algorithm used for introspection")
    parser.add_argument("--flow-threads", type=int, default=100)
    parser.add_argument("--server-threads", type=int,
                        help="waitress threads for both servers (default: production.ini)")
    parser.add_argument("--pin-cpu", type=int, metavar="N",
                        help="pin both servers (all their threads) to CPU N and wrk to the "
                             "others, as a deployment with one process per core pinned "
                             "would run (default: not pinned)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the AuthGate server")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record (raw stacks) of each measured run into "
                             "bench/results/profile-<stamp>/ (figures are then not clean)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="like --profile, but only samples holding the GIL (CPU cost)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, DBs)")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/...)")
    args = parser.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - set(ALL_NAMES)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--env needs KEY=VALUE, got {item!r}")
        extra[key] = value
    return Options(
        duration=args.duration or (3 if args.quick else 10),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 3),
        connections=args.connections, repeat=max(1, args.repeat), only=only,
        databases=[d.strip() for d in args.db.split(",") if d.strip()],
        algorithms=[a.strip().upper() for a in args.alg.split(",") if a.strip()],
        rows_small=args.rows_small, rows_large=args.rows_large, poll_codes=args.poll_codes,
        real_tokens=args.real_tokens, flow_threads=args.flow_threads,
        server_threads=args.server_threads, pin_cpu=args.pin_cpu, extra_env=extra,
        profile=args.profile, profile_gil=args.profile_gil,
        keep=args.keep, output=args.output)


def main(argv: list[str] | None = None) -> int:
    o = parse_args(argv)
    wrk = ensure_wrk()
    if o.server_threads:
        o.extra_env.setdefault("SERVER_THREADS", str(o.server_threads))

    def want(name: str) -> bool:
        return not o.only or name in o.only

    workdir = Path(tempfile.mkdtemp(prefix="authgate-bench-"))
    bench = Bench(o, wrk, workdir)
    started = time.time()
    print(f"AuthGate bench: {o.duration}s runs, {o.warmup}s warm-up, wrk -t1 -c{o.connections}"
          f", repeat {o.repeat}"
          + (f"; servers pinned to CPU {o.pin_cpu}" if o.pin_cpu is not None else "")
          + f"; workdir {workdir}", flush=True)
    databases: list[Database] = []
    try:
        if want("hello") or any(want(n) for n in SCENARIOS):
            bench.run_hello(o.repeat, "start")
            bench.run_hello(o.repeat, "start", inline=True)
        for kind in o.databases:
            if kind == "postgres":
                ok, why = pg_available()
                if not ok:
                    bench.notes.append(f"PostgreSQL skipped: not reachable ({why})")
                    print(f"PostgreSQL skipped: {why}", flush=True)
                    continue
            main_names = [n for n in HS256_SCENARIOS if want(n)]
            asym_names = [n for n in ASYM_SCENARIOS if want(n)]
            if main_names or (asym_names and set(o.algorithms) - {"HS256"}):
                db = bench.create_database(kind, "main")
                databases.append(db)
                for alg in o.algorithms:
                    names = main_names if alg == "HS256" else asym_names
                    if not names:
                        continue
                    bench.seed(db, alg, rows=o.rows_small)
                    bench.run_server(db, alg, names)
            if want("introspect-1m") and "HS256" in o.algorithms:
                db = bench.create_database(kind, "large")
                databases.append(db)
                bench.seed(db, "HS256", rows=o.rows_large)
                bench.run_server(db, "HS256", ["introspect-1m"])
        if bench.hello:
            bench.run_hello(1, "end")
    finally:
        for db in databases:
            if db.pg_name and not o.keep:
                try:
                    pg_drop(db.pg_name)
                except Exception as exc:  # noqa: BLE001
                    print(f"could not drop {db.pg_name}: {exc}", file=sys.stderr)
        if not o.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = bench.finish()
    table = print_table(bench.hello + bench.hello_inline, bench.rows, summary)
    print()
    print(table)
    for note in bench.notes:
        print(f"note: {note}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = o.output or RESULTS / f"{bench.stamp}.json"
    meta = {
        "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1), "git": git_describe(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "wrk": wrk_version(wrk),
        "options": {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set)
                        else v) for k, v in vars(o).items()},
        "load": f"wrk -t1 -c{o.connections} -d{o.duration}s --latency (warm-up {o.warmup}s)",
        "server": "authgate server -c production.ini (waitress; SERVER_INLINE_API on by "
                  "default), ENABLE_RATE_LIMIT=false, audit sinks database+log",
    }
    for row in bench.hello + bench.hello_inline + bench.rows:
        row.pop("wrk_output", None)
    output.write_text(json.dumps({"meta": meta, **summary, "hello": bench.hello,
                                  "hello_inline": bench.hello_inline,
                                  "results": bench.rows, "notes": bench.notes,
                                  "table": table}, indent=2, default=str) + "\n")
    print(f"\nresults: {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    if o.keep:
        print(f"kept: {workdir}")
    return 0
