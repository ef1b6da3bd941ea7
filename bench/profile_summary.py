"""Summarise py-spy raw (collapsed) stacks: where the server's time goes.

    python -m bench.profile_summary bench/results/profile-<stamp>/poll-sqlite-HS256-1.txt

Prints the share of samples spent inside (inclusive) and directly in (self)
each function, plus a few AuthGate-specific buckets (audit delivery, access
log, SQL execution, JWT, session cookie, pyramid_tm commit).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")

BUCKETS = {
    "audit delivery (after commit)": ("AuditDispatcher.deliver",),
    "audit database sink": ("DatabaseSink.write",),
    "audit log sink": ("LogSink.write",),
    "access log line": ("authgate/security.py:83",),
    "logging (any)": ("logging/__init__.py",),
    "SQL execute (SQLAlchemy)": ("Session.execute", "Connection.execute", "Session.scalars",
                                 "Session.get", "Session.flush", "Session.scalar"),
    "DB commit": ("Connection.commit", "SessionTransaction.commit",
                  "_ConnectionFairy._commit"),
    "transaction commit (pyramid_tm)": ("TransactionManager.commit",),
    "JWT (PyJWT)": ("jwt/",),
    "session cookie": ("pyramid/session.py",),
    "request body / params": ("request_params",),
    "webob response": ("webob/response.py",),
    "waitress I/O": ("waitress/channel.py", "waitress/wasyncore.py"),
    "metrics": ("authgate/metrics.py",),
    "rate limit": ("authgate/ratelimit.py",),
}


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: str, top: int = 25, worker_only: bool = True) -> str:
    stacks = load(path)
    if worker_only:
        stacks = [(s, c) for s, c in stacks if any("handler_thread" in f for f in s)]
    total = sum(c for _, c in stacks) or 1
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for frames, count in stacks:
        seen = set()
        for frame in frames:
            if frame not in seen:
                inclusive[frame] += count
                seen.add(frame)
        self_time[frames[-1]] += count
        joined = ";".join(frames)
        for name, needles in BUCKETS.items():
            if any(n in joined for n in needles):
                buckets[name] += count
    out = [f"{path}: {total} samples in worker threads"]
    out.append("buckets (inclusive share of worker samples):")
    for name, count in buckets.most_common():
        out.append(f"  {100 * count / total:5.1f}%  {name}")
    out.append(f"top {top} inclusive (excluding the request plumbing above the view):")
    shown = 0
    for frame, count in inclusive.most_common():
        if any(k in frame for k in ("threading.py", "waitress/task.py", "waitress/channel.py:4",
                                     "proxy_headers", "router.py", "pyramid_retry")):
            continue
        out.append(f"  {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown >= top:
            break
    out.append(f"top {top} self:")
    for frame, count in self_time.most_common(top):
        out.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--all-threads", action="store_true")
    args = parser.parse_args(argv)
    for path in args.paths:
        print(summarise(path, args.top, worker_only=not args.all_threads))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
