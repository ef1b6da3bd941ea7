"""API requests answered on waitress's I/O thread (``SERVER_INLINE_API``).

Waitress reads every request on its I/O thread, wakes a worker thread for it and
is woken again to send the answer.  Under the GIL each of those hand-offs is a
pair of context switches, and every system call a request makes while other
threads wait for the GIL (each SQLite step, each log line) is another: an
introspection under load cost 37 context switches and ~40 % of the process's CPU
in the kernel switching tasks (``perf``; docs/performance.md, session 8).

The requests the API lane answers (authgate.views.api_lane: ``/oauth/token``,
``/oauth/introspect``, ``/health``) and the precomputed JWKS and discovery
documents need well under a millisecond of work each (device-code requests and
refreshes, which the full stack answers, about two), so they are run where they
were read: :class:`InlineChannel` services them inside the I/O thread's read
handler and sends the answer at once.  No thread is woken, nobody else wants the
GIL, and the worker threads stay free for the pages (logins hash passwords for a
third of a second).

Some authenticated POSTs are still better answered on the worker threads (on
PostgreSQL, whose round trips then overlap; RSA signing, which runs outside the
GIL): :func:`policy`.

Guards, because a request on the I/O thread holds up every connection:

* only those paths and methods, and only a request waitress parsed without error;
* not on a connection with more than :data:`OUTBUF_LIMIT` bytes still unsent (a
  client that pipelines requests without reading answers): waitress makes a
  request wait for the I/O thread to send output over its high-water mark, which
  on the I/O thread itself would wait forever;
* a request that took longer than :data:`SLOW_SECONDS` means the database waits on
  something (a write lock another process holds, a checkpoint, a slow or
  unreachable PostgreSQL): for :data:`PAUSE_SECONDS` every request goes to the
  worker threads again, with a warning in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ThreadedTaskDispatcher

from authgate.views.wellknown import PUBLISHED

log = logging.getLogger("authgate.server")

OUTBUF_LIMIT = 1 << 20  # bytes not yet sent on a connection (waitress's mark: 16 MiB)
SLOW_SECONDS = 0.05
PAUSE_SECONDS = 5.0

API_POST_PATHS = frozenset({"/oauth/token", "/oauth/introspect", "/oauth/device/code"})
API_GET_PATHS = frozenset({"/health", *PUBLISHED})

_reading = threading.local()  # set while the I/O thread is in a read handler


def answered_inline(request: Any, post_paths: frozenset[str] = API_POST_PATHS,
                    get_paths: frozenset[str] = API_GET_PATHS,
                    authenticated_to_workers: frozenset[str] = frozenset()) -> bool:
    """Whether a request waitress parsed is one of the API lane's (or a published
    document), by method and path; not a POST to one of ``authenticated_to_workers``
    that carries an ``Authorization`` header (see :func:`policy`)."""
    if request.error is not None:
        return False
    if request.command == "POST":
        return request.path in post_paths and not (
            request.path in authenticated_to_workers
            and "AUTHORIZATION" in request.headers)
    if request.command in ("GET", "HEAD"):
        return request.path in get_paths
    return False


def policy(database: str, algorithm: str) -> tuple[frozenset[str], frozenset[str]]:
    """(the API paths POSTed to inline, those of them whose POSTs with client
    authentication -- an ``Authorization`` header -- go to the workers), as the load
    bench measured them:

    * on a database reached over the network (PostgreSQL), requests that write wait
      through two or three round trips each on the I/O thread, where on the workers
      they overlap with other requests' (introspection 760 inline against 900 req/s,
      device-code requests 339 against 347 with a longer tail): client-authenticated
      POSTs and device-code requests go to the workers; device polls (a public
      client's, no header: one read) stay inline, 1,590 -> 2,500 req/s;
    * with RS256, token issuance with client authentication goes to the workers: an
      RSA signature takes about a millisecond, which OpenSSL computes without the
      GIL, so two run at once there (client credentials 550 inline against 740 req/s
      on SQLite).
    """
    if database != "sqlite":
        return API_POST_PATHS - {"/oauth/device/code"}, frozenset({"/oauth/token",
                                                                  "/oauth/introspect"})
    if algorithm == "RS256":
        return API_POST_PATHS, frozenset({"/oauth/token"})
    return API_POST_PATHS, frozenset()


class InlineDispatcher(ThreadedTaskDispatcher):
    """Waitress's worker pool, except for the requests taken by the I/O thread."""

    def __init__(self, post_paths: frozenset[str] = API_POST_PATHS,
                 get_paths: frozenset[str] = API_GET_PATHS,
                 authenticated_to_workers: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.post_paths = post_paths
        self.get_paths = get_paths
        self.authenticated_to_workers = authenticated_to_workers
        self.paused_until = 0.0

    def add_task(self, task: Any) -> None:
        if (getattr(_reading, "active", False) and isinstance(task, InlineChannel)
                and task.requests
                and answered_inline(task.requests[0], self.post_paths, self.get_paths,
                                    self.authenticated_to_workers)
                and task.total_outbufs_len <= OUTBUF_LIMIT
                and time.monotonic() >= self.paused_until):
            task.inline_due = True  # serviced when its read handler returns
            return
        super().add_task(task)

    def took(self, seconds: float, path: str) -> None:
        if seconds > SLOW_SECONDS:
            self.paused_until = time.monotonic() + PAUSE_SECONDS
            log.warning("A request to %s took %.0f ms on the I/O thread (the database is "
                        "slow or locked?): requests go to the worker threads for %.0f s",
                        path, seconds * 1000, PAUSE_SECONDS)


class InlineChannel(HTTPChannel):
    inline_due = False

    def handle_read(self) -> None:
        dispatcher = self.server.task_dispatcher
        _reading.active = True
        try:
            super().handle_read()  # parses; add_task marks a request it takes
            while self.inline_due:
                self.inline_due = False
                path = self.requests[0].path if self.requests else ""
                started = time.perf_counter()
                # Services one request; marks the next pipelined one due (or queues
                # it for a worker) through add_task, as after a worker's request.
                self.service()
                dispatcher.took(time.perf_counter() - started, path)
        finally:
            _reading.active = False
        if self.connected and self.total_outbufs_len and not self.requests:
            self.handle_write()  # send now, not on the loop's next turn


def create_server(app: Any, *, post_paths: frozenset[str] = API_POST_PATHS,
                  get_paths: frozenset[str] = API_GET_PATHS,
                  authenticated_to_workers: frozenset[str] = frozenset(),
                  **options: Any) -> Any:
    """``waitress.create_server`` with requests of the API lane (or of the paths
    given: the load bench's hello app) answered inline."""
    from waitress.server import BaseWSGIServer, create_server

    dispatcher = InlineDispatcher(post_paths, get_paths, authenticated_to_workers)
    dispatcher.set_thread_count(options["threads"])
    server = create_server(app, _dispatcher=dispatcher, **options)
    listeners = [server, *getattr(server, "map", {}).values()]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = InlineChannel
    return server
