"""Background jobs of a serving process: scheduled cleanup and audit retention.

One daemon thread per process.  With several processes each runs the same
batched deletes; they are idempotent, so overlapping runs only waste a little work.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING

from authgate.services import cleanup

if TYPE_CHECKING:
    from authgate.runtime import Runtime

log = logging.getLogger("authgate.jobs")

AUDIT_RETENTION_EVERY = dt.timedelta(hours=24)


class Scheduler:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wanted(self) -> bool:
        s = self.runtime.settings
        return s.enable_expired_token_cleanup or s.audit_log_retention > dt.timedelta(0)

    def start(self) -> None:
        if not self.wanted() or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="authgate-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run_once(self, *, expired: bool, audit: bool) -> None:
        s, engine = self.runtime.settings, self.runtime.engine
        try:
            if expired:
                report = cleanup.purge_expired(engine, batch=s.cleanup_batch_size)
                log.info("expired-row cleanup: %s", report)
            if audit:
                count = cleanup.purge_audit(engine, s.audit_log_retention,
                                            batch=s.cleanup_batch_size)
                log.info("audit retention: deleted %d events older than %s", count,
                         s.audit_log_retention)
        except Exception:
            # A failed run (database down, say) is retried at the next tick.
            log.exception("scheduled cleanup failed")

    def _loop(self) -> None:
        s = self.runtime.settings
        expired_on = s.enable_expired_token_cleanup
        audit_on = s.audit_log_retention > dt.timedelta(0)
        every_expired = s.expired_token_cleanup_interval.total_seconds()
        every_audit = AUDIT_RETENTION_EVERY.total_seconds()
        next_expired = next_audit = time.monotonic()  # both run once at start-up
        while not self._stop.is_set():
            now = time.monotonic()
            do_expired = expired_on and now >= next_expired
            do_audit = audit_on and now >= next_audit
            self.run_once(expired=do_expired, audit=do_audit)
            if do_expired:
                next_expired = now + every_expired
            if do_audit:
                next_audit = now + every_audit
            due = [t for t, on in ((next_expired, expired_on), (next_audit, audit_on)) if on]
            if self._stop.wait(max(1.0, min(due) - time.monotonic())):
                return
