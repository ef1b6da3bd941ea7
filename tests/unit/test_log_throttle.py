"""waitress's "Task queue depth" warning comes once per interval under a burst, with
a count of the ones held back, instead of once per queued request."""

from __future__ import annotations

import logging
import threading
import time

from waitress.task import ThreadedTaskDispatcher

from authgate.logsetup import Throttle, throttle_noisy_loggers


class BlockedTask:
    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def defer(self) -> None:
        pass

    def service(self) -> None:
        self.gate.wait(5)

    def cancel(self) -> None:
        pass


def queue_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "waitress.queue"]


def test_a_burst_of_queued_requests_logs_one_warning(caplog):
    throttle_noisy_loggers()
    throttle_noisy_loggers()  # idempotent: the app may be created more than once
    logger = logging.getLogger("waitress.queue")
    assert sum(isinstance(f, Throttle) for f in logger.filters) == 1
    throttle = next(f for f in logger.filters if isinstance(f, Throttle))
    throttle._last = -throttle.interval  # a fresh interval, whatever ran before
    gate = threading.Event()
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(1)
    caplog.set_level(logging.WARNING, logger="waitress.queue")
    try:
        for _ in range(30):
            dispatcher.add_task(BlockedTask(gate))
    finally:
        gate.set()
        dispatcher.shutdown(timeout=5)
    warnings = queue_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith("Task queue depth is")


def test_the_next_warning_counts_the_ones_held_back(caplog):
    logger = logging.getLogger("authgate.test.throttled")
    logger.addFilter(Throttle(0.2))
    caplog.set_level(logging.WARNING, logger=logger.name)
    for depth in range(1, 6):
        logger.warning("Task queue depth is %d", depth)
    time.sleep(0.25)
    logger.warning("Task queue depth is %d", 9)
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert messages == ["Task queue depth is 1",
                        "Task queue depth is 9 (and 4 more such warnings in the last 0.2 s)"]
