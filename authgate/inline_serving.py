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

The rows those requests write (tokens, audit events) are committed once per turn of
the event loop, for every request read in it (:class:`~authgate.rawsql.CommitTurn`):
a request whose answer waits for that commit (the lane sets :data:`HELD_KEY`) has
its output held by its channel until the turn ends, then sent -- or, if the commit
failed, the request is answered again by the full stack on a worker thread.

On PostgreSQL, device-code requests are still better answered on the worker
threads, where their round trips overlap: :func:`post_paths_for`.

Guards, because a request on the I/O thread holds up every connection:

* only those paths and methods, and only a request waitress parsed without error;
* not on a connection with more than :data:`OUTBUF_LIMIT` bytes still unsent (a
  client that pipelines requests without reading answers): waitress makes a
  request wait for the I/O thread to send output over its high-water mark, which
  on the I/O thread itself would wait forever;
* a request (or a turn's commit) that took longer than :data:`STALL_SECONDS`, or
  two longer than :data:`SLOW_SECONDS` within :data:`SLOW_WINDOW`, mean the
  database waits on something (a write lock another process holds, a slow or
  unreachable PostgreSQL): for :data:`PAUSE_SECONDS` every request goes to the
  worker threads again, with a warning in the log.  A lone slow one (a WAL
  checkpoint's fsync) does not.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.task import ThreadedTaskDispatcher, WSGITask

from authgate.rawsql import CommitTurn, PendingCommit
from authgate.views.wellknown import PUBLISHED

log = logging.getLogger("authgate.server")

OUTBUF_LIMIT = 1 << 20  # bytes not yet sent on a connection (waitress's mark: 16 MiB)
SLOW_SECONDS = 0.05  # a request or a turn's commit slower than this is slow;
STALL_SECONDS = 0.25  # one slower than this, or two slow ones
SLOW_WINDOW = 1.0  # within this many seconds, send every request to the workers
PAUSE_SECONDS = 5.0  # for this long

API_POST_PATHS = frozenset({"/oauth/token", "/oauth/introspect", "/oauth/device/code"})
API_GET_PATHS = frozenset({"/health", *PUBLISHED})

# WSGI environ keys: the CommitTurn an inline request's rows may join (set by the
# channel), and the PendingCommit its answer waits for (set by the API lane).
TURN_KEY = "authgate.commit_turn"
HELD_KEY = "authgate.commit_pending"

_reading = threading.local()  # set while the I/O thread is in a read handler


def answered_inline(request: Any, post_paths: frozenset[str] = API_POST_PATHS,
                    get_paths: frozenset[str] = API_GET_PATHS) -> bool:
    """Whether a request waitress parsed is one of the API lane's (or a published
    document), by method and path."""
    if request.error is not None:
        return False
    if request.command == "POST":
        return request.path in post_paths
    if request.command in ("GET", "HEAD"):
        return request.path in get_paths
    return False


def post_paths_for(database: str) -> frozenset[str]:
    """The API paths POSTed to inline on ``database``, as the load bench measured:

    * token issuance and introspection are inline on both stores: their rows wait
      for the turn's commit, so even on PostgreSQL a client-credentials request
      makes no round trip of its own (the client is cached; the turn's INSERTs and
      COMMIT are one pipelined round trip) and an introspection one (its SELECT).
      Session 9: client credentials on PostgreSQL 0.12 -> 0.45 of hello,
      introspection 0.13 -> 0.35; with RS256 (2048-bit keys) 0.14 -> 0.23 on
      PostgreSQL and 0.15 -> 0.28 on SQLite, against the worker threads, where
      OpenSSL signs outside the GIL but every request pays the hand-offs;
    * device-code requests go through the full stack, whose INSERTs are not the
      turn's: on PostgreSQL their two or three round trips each overlap better on
      the worker threads (339 inline against 347 req/s, a longer tail inline).
    """
    if database == "sqlite":
        return API_POST_PATHS
    return API_POST_PATHS - {"/oauth/device/code"}


class InlineDispatcher(ThreadedTaskDispatcher):
    """Waitress's worker pool, except for the requests taken by the I/O thread."""

    def __init__(self, post_paths: frozenset[str] = API_POST_PATHS,
                 get_paths: frozenset[str] = API_GET_PATHS) -> None:
        super().__init__()
        self.post_paths = post_paths
        self.get_paths = get_paths
        self.paused_until = 0.0
        # Set by TurnLoop when it runs the event loop (it commits the turn's rows).
        self.turn: CommitTurn | None = None
        self._last_slow = float("-inf")

    def add_task(self, task: Any) -> None:
        if isinstance(task, InlineChannel) and task.held is not None:
            # Its next pipelined request waits until the held answer is sent.
            task.resume_after_turn = True
            return
        if (getattr(_reading, "active", False) and isinstance(task, InlineChannel)
                and task.requests
                and answered_inline(task.requests[0], self.post_paths, self.get_paths)
                and task.total_outbufs_len <= OUTBUF_LIMIT
                and time.monotonic() >= self.paused_until):
            task.inline_due = True  # serviced when its read handler returns
            return
        super().add_task(task)

    def took(self, seconds: float, path: str) -> None:
        """A request on the I/O thread took ``seconds``."""
        if seconds > SLOW_SECONDS and self._held_up(seconds):
            log.warning("A request to %s took %.0f ms on the I/O thread (the database is "
                        "slow or locked?): requests go to the worker threads for %.0f s",
                        path, seconds * 1000, PAUSE_SECONDS)

    def end_turn(self) -> None:
        """Commit the rows of the requests answered in this turn of the loop; their
        answers are then sent (or the requests answered again: InlineChannel)."""
        turn = self.turn
        if turn is None or not len(turn):
            return
        started = time.perf_counter()
        count = turn.commit()
        seconds = time.perf_counter() - started
        if seconds > SLOW_SECONDS and self._held_up(seconds):
            log.warning("Committing the rows of %d requests took %.0f ms on the I/O thread "
                        "(the database is slow or locked?): requests go to the worker "
                        "threads for %.0f s", count, seconds * 1000, PAUSE_SECONDS)

    def _held_up(self, seconds: float) -> bool:
        """After a slow request or commit: whether the database is held up (one stall
        of STALL_SECONDS, or a second slow one within SLOW_WINDOW), in which case
        every request goes to the workers for PAUSE_SECONDS.  A lone slow one is a
        WAL checkpoint or a garbage collection, not worth the workers' hand-offs."""
        now = time.monotonic()
        again = now - self._last_slow <= SLOW_WINDOW
        self._last_slow = now
        if seconds < STALL_SECONDS and not again:
            return False
        self.paused_until = now + PAUSE_SECONDS
        return True


class InlineTask(WSGITask):
    """A worker's or the I/O thread's WSGI task; on the I/O thread its environ
    offers the loop's CommitTurn, and a request answered again after a failed
    commit gets the environ the API lane prepared for the full stack."""

    def get_environment(self) -> dict:
        if self.environ is None:
            replay = self.channel.replay_environ
            if replay is not None:
                self.channel.replay_environ = None
                self.environ = replay
                return replay
        environ = super().get_environment()
        channel = self.channel
        if channel.serving_inline:
            channel.serving_task = self
            turn = channel.server.task_dispatcher.turn
            if turn is not None:
                environ[TURN_KEY] = turn
        return environ


class InlineChannel(HTTPChannel):
    task_class = InlineTask
    inline_due = False
    serving_inline = False  # servicing a request on the I/O thread
    serving_task: InlineTask | None = None
    # The answer of the request served last, until its rows are committed.
    held: PendingCommit | None = None
    held_output: list | None = None
    resume_after_turn = False  # a pipelined request waits for the held answer
    replay_environ: dict | None = None

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
                self.serving_inline = True
                try:
                    self.service()
                finally:
                    self.serving_inline = False
                    task, self.serving_task = self.serving_task, None
                dispatcher.took(time.perf_counter() - started, path)
                if task is not None and self.held is None and task.environ is not None \
                        and HELD_KEY in task.environ:  # an answer without a byte (HEAD)
                    self._hold(task.environ[HELD_KEY], task)
        finally:
            _reading.active = False
        if self.connected and self.total_outbufs_len and not self.requests:
            self.handle_write()  # send now, not on the loop's next turn

    # -- answers held until the turn's commit ------------------------------------

    def write_soon(self, data: Any) -> int:
        task = self.serving_task
        if task is not None and task.environ is not None and HELD_KEY in task.environ:
            # The answer of a request whose rows are not committed yet: kept until the
            # turn's commit (then written as usual) or dropped if it fails.
            if not self.connected:
                raise ClientDisconnected
            if self.held is None:
                # Held from its first byte: a pipelined request behind it, which
                # service() hands to add_task before returning, must wait for it.
                self._hold(task.environ[HELD_KEY], task)
            if self.held_output is None:
                self.held_output = []
            if data:
                self.held_output.append(data)
            return len(data)
        return super().write_soon(data)

    def _hold(self, pending: PendingCommit, task: InlineTask) -> None:
        self.held = pending
        after_commit, after_failure = pending.on_commit, pending.on_failure

        def committed() -> None:
            try:
                if after_commit is not None:
                    after_commit()
            finally:
                self._release()

        def failed(error: BaseException) -> None:
            try:
                if after_failure is not None:
                    after_failure(error)
            finally:
                self._replay(task)

        pending.on_commit, pending.on_failure = committed, failed

    def _release(self) -> None:
        output, self.held_output, self.held = self.held_output or [], None, None
        try:
            for data in output:
                super().write_soon(data)
        except ClientDisconnected:
            return
        self._resume()
        if self.connected and self.total_outbufs_len and not self.requests:
            self.handle_write()

    def _replay(self, task: InlineTask) -> None:
        """The request's rows were not committed: its held answer is dropped and the
        request runs again, through the full stack, on a worker thread."""
        self.held_output, self.held = None, None
        if not self.connected:
            return
        self.resume_after_turn = False  # the worker goes on to the next one itself
        environ = task.environ
        environ.pop(TURN_KEY, None)
        environ.pop(HELD_KEY, None)
        self.replay_environ = environ
        with self.requests_lock:
            self.requests.insert(0, task.request)
        self.server.add_task(self)

    def _resume(self) -> None:
        if self.resume_after_turn:
            self.resume_after_turn = False
            if self.connected and self.requests:
                self.server.add_task(self)

    def readable(self) -> bool:
        return self.held is None and super().readable()

    def writable(self) -> bool:
        return self.held is None and super().writable()

    def handle_write(self) -> None:
        if self.held is None:  # never close or send past an answer not yet released
            super().handle_write()


class TurnLoop:
    """Stands in for the ``wasyncore`` module as a server's ``asyncore`` (waitress's
    own seam for its loop): the same loop, and after each turn the dispatcher
    commits the rows of the requests answered in it."""

    def __init__(self, dispatcher: InlineDispatcher) -> None:
        self.dispatcher = dispatcher

    def __getattr__(self, name: str) -> Any:
        return getattr(wasyncore, name)

    def loop(self, timeout: float = 30.0, use_poll: bool = False, map: dict | None = None,
             count: int | None = None) -> None:
        if self.dispatcher.turn is None:
            self.dispatcher.turn = CommitTurn()
        poll = wasyncore.poll2 if use_poll and hasattr(select, "poll") else wasyncore.poll
        while map and (count is None or count > 0):
            try:
                poll(timeout, map)
            finally:
                self.dispatcher.end_turn()
            if count is not None:
                count -= 1


def create_server(app: Any, *, post_paths: frozenset[str] = API_POST_PATHS,
                  get_paths: frozenset[str] = API_GET_PATHS, **options: Any) -> Any:
    """``waitress.create_server`` with requests of the API lane (or of the paths
    given: the load bench's hello app) answered inline."""
    from waitress.server import BaseWSGIServer, create_server

    dispatcher = InlineDispatcher(post_paths, get_paths)
    dispatcher.set_thread_count(options["threads"])
    server = create_server(app, _dispatcher=dispatcher, **options)
    listeners = [server, *getattr(server, "map", {}).values()]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = InlineChannel
    server.asyncore = TurnLoop(dispatcher)
    return server
