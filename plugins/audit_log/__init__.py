"""Audit sink that writes one JSON object per event to the ``authgate.audit.events`` logger."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from authgate import hookimpl
from authgate.components import BuildContext, ComponentSpec
from authgate.interfaces import AuditEvent

LOGGER_NAME = "authgate.audit.events"
_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}


class LogSink:
    name = "log"

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def write(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            self.logger.log(_LEVELS.get(event.severity, logging.INFO),
                            json.dumps(event.as_dict(), default=str, sort_keys=True))


@hookimpl
def authgate_register_audit_sinks():
    return [ComponentSpec("log", lambda ctx: LogSink(), "JSON lines through logging "
                          f"(logger {LOGGER_NAME})")]


__all__ = ["BuildContext", "LogSink"]
