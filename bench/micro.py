"""In-process cost per request: the WSGI app called directly, one thread, no waitress.

    python -m bench.micro [--db sqlite|postgres] [--alg HS256] [-n 2000] [--profile]
                          [--only poll,introspect]

The same app, settings and logging as ``authgate server -c production.ini``
(access log and audit log lines go to a file), seeded like the load bench.
Each scenario runs ``-n`` requests in a row and reports CPU milliseconds per
request (``time.process_time``: every thread, so background work counts) next
to the bare Pyramid hello app's.  With no concurrency and no network this
figure moves much less than req/s when other work shares the machine, so it is
the one to compare optimisations with; ``--profile`` adds the top functions by
cumulative and by own time (cProfile).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import logging
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import seed as seeding
from bench.servers import PRODUCTION_INI, authgate_env, generate_key, pg_create, pg_drop, pg_dsn

FORM = "application/x-www-form-urlencoded"
DEVICE_GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
NAMES = ["hello", "health", "jwks", "discovery", "device-code", "poll", "cc", "introspect",
         "refresh"]


def call(app, method: str, path: str, body: str | None, headers: dict[str, str]) -> int:
    from webob import Request

    request = Request.blank(path, method=method, headers=headers,
                            POST=None if body is None else body.encode(),
                            environ={"REMOTE_ADDR": "127.0.0.1"})
    if body is not None:
        request.content_type = FORM
    response = request.get_response(app)
    return response.status_code


def measure(app, requests: list[tuple[str, str, str | None, dict]], expect: int,
            profile: bool) -> dict:
    statuses: dict[int, int] = {}
    profiler = cProfile.Profile() if profile else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for method, path, body, headers in requests:
        status = call(app, method, path, body, headers)
        statuses[status] = statuses.get(status, 0) + 1
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(requests)
    result = {"n": n, "cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n,
              "statuses": statuses, "unexpected": n - statuses.get(expect, 0)}
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--alg", default="HS256", choices=("HS256", "ES256", "RS256"))
    parser.add_argument("-n", type=int, default=2000, help="requests per scenario")
    parser.add_argument("--rows", type=int, default=20_000, help="token rows")
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    only = {n for n in args.only.split(",") if n}

    workdir = Path(tempfile.mkdtemp(prefix="authgate-micro-"))
    pg_name = None
    try:
        if args.db == "postgres":
            pg_name = pg_create()
            dsn = pg_dsn(pg_name)
        else:
            dsn = str(workdir / "oauth.db")
        key = None if args.alg == "HS256" else generate_key(args.alg, workdir / "key.pem")
        env = authgate_env(workdir=workdir, port=8080, database=args.db, dsn=dsn, alg=args.alg,
                           key_path=key, extra=dict(e.split("=", 1) for e in args.env))
        runtime = seeding.build_runtime(env, workdir)
        seeded = seeding.seed_base(runtime, poll_codes=args.n * 2 + 10)
        pairs = seeding.issue_tokens(runtime, seeded, min(args.n, 500))
        seeding.fill_tokens(runtime, seeded, args.rows)
        runtime.close()

        # Logging exactly as the server configures it, into a file.
        from authgate.app import build_runtime, make_app_from_runtime
        from authgate.cli import load_app_settings, setup_logging

        log_path = workdir / "server.log"
        saved_stderr = sys.stderr
        sys.stderr = open(log_path, "a")  # noqa: SIM115 - the handler keeps it
        setup_logging(str(PRODUCTION_INI), env)
        raw, _ = load_app_settings(str(PRODUCTION_INI))
        runtime = build_runtime(raw, env, cwd=str(workdir))
        app = make_app_from_runtime(runtime, raw)
        sys.stderr = saved_stderr

        from bench.hello_app import make_app as make_hello

        hello = make_hello()
        basic = "Basic " + base64.b64encode(
            f"{seeded.conf_client_id}:{seeded.conf_secret}".encode()).decode()
        n = args.n
        polls = seeding.poll_bodies(seeded)
        scenarios = {
            "hello": (hello, [("GET", "/hello", None, {})] * n, 200),
            "health": (app, [("GET", "/health", None, {})] * n, 200),
            "jwks": (app, [("GET", "/.well-known/jwks.json", None, {})] * n, 200),
            "discovery": (app, [("GET", "/.well-known/openid-configuration", None, {})] * n,
                          200),
            "device-code": (app, [("POST", "/oauth/device/code",
                                   f"client_id={seeded.device_client_id}", {})] * n, 200),
            "poll": (app, [("POST", "/oauth/token", polls[i], {}) for i in range(n)], 400),
            "cc": (app, [("POST", "/oauth/token", "grant_type=client_credentials",
                          {"Authorization": basic})] * n, 200),
            "introspect": (app, [("POST", "/oauth/introspect",
                                  f"token={pairs[i % len(pairs)][0]}",
                                  {"Authorization": basic}) for i in range(n)], 200),
            "refresh": (app, [("POST", "/oauth/token",
                               f"grant_type=refresh_token&refresh_token={pairs[i % 64][1]}"
                               f"&client_id={seeded.device_client_id}", {})
                              for i in range(n)], 200),
        }
        results = {}
        for name in NAMES:
            if only and name not in only:
                continue
            target, requests, expect = scenarios[name]
            measure(target, requests[: max(50, n // 10)], expect, False)  # warm-up
            if name == "poll":  # fresh codes: the warm-up polled the first ones
                requests = [("POST", "/oauth/token", polls[n + i], {}) for i in range(n)]
            results[name] = measure(target, requests, expect, args.profile)
        base = results.get("hello", {}).get("cpu_ms")
        print(f"{'scenario':12} {'cpu ms/req':>10} {'wall ms/req':>11} {'x hello':>8}  statuses")
        for name, r in results.items():
            times = f"{r['cpu_ms'] / base:8.1f}" if base else ""
            print(f"{name:12} {r['cpu_ms']:10.3f} {r['wall_ms']:11.3f} {times}  {r['statuses']}")
        if args.profile:
            for name, r in results.items():
                print(f"\n===== {name} =====\n{r['profile']}")
        runtime.close()
        logging.shutdown()
    finally:
        if pg_name:
            pg_drop(pg_name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
