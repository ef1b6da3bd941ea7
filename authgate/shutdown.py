"""Graceful shutdown of ``authgate server`` (waitress) on SIGTERM or SIGINT.

waitress's own ``run()`` turns a signal into an abrupt stop: the main loop
ends, queued requests are cancelled and responses still in the output buffers
are never sent.  :class:`GracefulServer` runs the same loop itself and, on the
first SIGTERM/SIGINT:

1. stops accepting: the listening sockets are closed, so new connections are
   refused (a load balancer moves on to the next instance);
2. keeps serving every connection that has a request in progress -- queued,
   running, partly received (a slow upload) or with a response still being
   sent -- until it is done, for at most SERVER_SHUTDOWN_TIMEOUT; responses
   finished during the drain carry ``Connection: close``; idle keep-alive
   connections are closed;
3. stops the worker threads.

A second signal skips the rest of the wait.  The caller then closes the rest in
order (:func:`close_runtime`): the rate limiter's Redis connection, then the
runtime (background jobs, auth sources, audit sinks, the database engine).
Audit events need no flush: the sinks are synchronous, so every event is
written before the response of the request that caused it is sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from authgate.settings import Setting

if TYPE_CHECKING:
    from authgate.runtime import Runtime

log = logging.getLogger("authgate.shutdown")

SETTINGS: list[Setting] = [
    Setting("server_shutdown_timeout", "SERVER_SHUTDOWN_TIMEOUT", "duration",
            dt.timedelta(seconds=5), minimum=dt.timedelta(0), section="Server",
            help="On SIGTERM or SIGINT, `authgate server` stops accepting connections and "
                 "waits this long for requests in progress to finish before it exits "
                 "(a second signal stops waiting). `pserve` stops at once."),
]

POLL_SECONDS = 0.2  # how often the loop looks at the stop flag
MAX_BACKLOG_ACCEPTS = 4096  # connections taken from the listen backlog at most
# A connection that has not sent anything yet is given this long for its first
# request (it was accepted a moment before the signal); idle keep-alive
# connections, which have had their answers, are closed at once.
NEW_CONNECTION_GRACE = 1.0


def _closing_task_class(base: type) -> type:
    class ClosingTask(base):  # type: ignore[misc, valid-type]
        """A response during the drain tells the client the connection closes."""

        def build_response_header(self):
            self.set_close_on_finish()
            return super().build_response_header()

    return ClosingTask


class GracefulServer:
    """Runs a waitress server (from ``waitress.create_server``) until stopped."""

    def __init__(self, server: Any, timeout: float):
        from waitress.channel import HTTPChannel
        from waitress.server import BaseWSGIServer

        self.server = server
        self.timeout = max(0.0, timeout)
        self.adj = server.adj
        # One listener: the server is the map's listener; several: a MultiSocketServer.
        self.map: dict = server.map if hasattr(server, "map") else server._map
        self._listener_type = BaseWSGIServer
        self._channel_type = HTTPChannel
        self.stopping = threading.Event()
        self.forced = threading.Event()
        self.timed_out = False

    # -- signals -------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """Signal handler: the first call starts the drain, the second cuts it short."""
        if self.stopping.is_set():
            self.forced.set()
        else:
            self.stopping.set()

    def install_signal_handlers(self) -> dict[int, Any]:
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self.request_stop)
        return previous

    # -- the loop --------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        from waitress import wasyncore

        # The server's own loop module (authgate.inline_serving.TurnLoop commits
        # each turn's rows); waitress's wasyncore otherwise.
        loop = getattr(self.server, "asyncore", wasyncore)
        loop.loop(timeout=timeout, map=self.map, use_poll=self.adj.asyncore_use_poll, count=1)

    def serve(self) -> None:
        """Serve until :meth:`request_stop`, then drain and stop the workers."""
        while not self.stopping.is_set():
            self._poll(min(POLL_SECONDS, float(self.adj.asyncore_loop_timeout)))
        self.drain()

    def listeners(self) -> list:
        return [obj for obj in list(self.map.values()) if isinstance(obj, self._listener_type)]

    def channels(self) -> list:
        return [obj for obj in list(self.map.values()) if isinstance(obj, self._channel_type)]

    def stop_accepting(self) -> None:
        from waitress import wasyncore

        for listener in self.listeners():
            # Connections the kernel already completed (the listen backlog) were
            # accepted as far as their clients know: take them before closing, or
            # closing the socket would reset them.
            for _ in range(MAX_BACKLOG_ACCEPTS):
                if listener.socket is None or not self._readable(listener.socket):
                    break
                listener.handle_accept()
            # The dispatcher's close, not the server's: that would also close the
            # trigger the worker threads still use to wake this loop.
            wasyncore.dispatcher.close(listener)

    @staticmethod
    def _busy(channel) -> bool:
        """A request queued, running or partly received, output not yet sent, or a
        connection just opened whose first request has not arrived yet."""
        if channel.requests or channel.request is not None or channel.total_outbufs_len:
            return True
        fresh = channel.last_activity == channel.creation_time
        return (fresh and channel.connected
                and time.time() - channel.creation_time < NEW_CONNECTION_GRACE)

    @staticmethod
    def _readable(sock) -> bool:
        """Data, EOF or a pending connection, without waiting (poll(): no FD_SETSIZE)."""
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def _has_input(self, channel) -> bool:
        """Bytes (or EOF) waiting: a request may be arriving; let the loop read it."""
        sock = getattr(channel, "socket", None)
        return sock is not None and self._readable(sock)

    def drain(self) -> None:
        started = time.monotonic()
        deadline = started + self.timeout
        self.stop_accepting()
        closing = _closing_task_class(self._channel_type.task_class)
        in_flight = [c for c in self.channels() if self._busy(c)]
        log.info("Shutting down: no longer accepting connections; waiting up to %.1fs for "
                 "%d connection(s) with requests in progress", self.timeout, len(in_flight))
        while True:
            busy = []
            for channel in self.channels():
                channel.task_class = closing
                if self._busy(channel) or (channel.connected and self._has_input(channel)):
                    busy.append(channel)
                else:
                    channel.handle_close()  # idle keep-alive connection
            if not busy:
                break
            now = time.monotonic()
            if self.forced.is_set() or now >= deadline:
                self.timed_out = True
                log.warning("Shutdown: %d connection(s) still busy after %.1fs%s; closing "
                            "them", len(busy), now - started,
                            " (second signal)" if self.forced.is_set() else
                            " (SERVER_SHUTDOWN_TIMEOUT)")
                break
            self._poll(min(POLL_SECONDS, max(0.01, deadline - now)))
        remaining = max(0.5, deadline - time.monotonic())
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=remaining)
        from waitress import wasyncore

        wasyncore.close_all(self.map)
        if not self.timed_out:
            log.info("Shutdown: every request finished (%.2fs)", time.monotonic() - started)


def close_runtime(runtime: Runtime, registry: Any | None = None) -> None:
    """After the server: Redis (rate limiter), then the runtime (jobs, auth sources,
    audit sinks, database engine), each step isolated from the others' failures."""
    if registry is not None:
        from authgate.ratelimit import get_limiter

        limiter = get_limiter(registry)
        if limiter is not None:
            try:
                limiter.close()
            except Exception:
                log.exception("closing the rate limiter failed")
    runtime.close()
