"""authgate.logsetup.skip_unused_record_fields: serving processes stop collecting the
caller and the process of log records when no configured format shows them."""

from __future__ import annotations

import logging

import pytest

from authgate.logsetup import skip_unused_record_fields


@pytest.fixture
def clean_logging():
    saved = (logging._srcfile, logging.logProcesses, logging.logMultiprocessing)
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield root
    root.handlers = handlers
    logging._srcfile, logging.logProcesses, logging.logMultiprocessing = saved


def with_format(root, fmt: str) -> None:
    # pytest's own capture handlers (whose format shows file and line) are attached
    # to the root logger while a test runs: only this test's handlers count here.
    root.handlers = [h for h in root.handlers if type(h).__module__ == "logging"]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)


def test_production_format_needs_neither(clean_logging):
    with_format(clean_logging, "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] "
                               "%(message)s")
    skip_unused_record_fields()
    assert logging._srcfile is None
    assert logging.logProcesses is False
    record = logging.getLogger("authgate.access").makeRecord(
        "authgate.access", logging.INFO, "x", 0, "line", (), None)
    assert record.getMessage() == "line"


def test_a_format_showing_them_keeps_them(clean_logging):
    with_format(clean_logging, "%(message)s")
    logging.getLogger("authgate.debugging").addHandler(logging.NullHandler())
    with_format(clean_logging, "%(pathname)s:%(lineno)d pid %(process)d %(message)s")
    srcfile = logging._srcfile
    skip_unused_record_fields()
    assert logging._srcfile == srcfile and srcfile is not None
    assert logging.logProcesses is True
