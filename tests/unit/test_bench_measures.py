"""The load bench's own measurements: thread context switches and pinned servers."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # bench/ is a directory of the checkout
    import bench.servers

    return bench.servers


def test_context_switches_count_every_thread(servers):
    before = servers.proc_context_switches(os.getpid())

    def nap():
        for _ in range(20):
            time.sleep(0.001)  # each sleep gives the CPU up: a voluntary switch

    worker = threading.Thread(target=nap)
    worker.start()
    worker.join()  # counted while alive; the join itself sleeps in this thread
    nap()
    assert servers.proc_context_switches(os.getpid()) - before >= 20
    assert servers.proc_context_switches(2**22 + 7) == 0  # no such process: nothing


def test_pinned_process_and_its_threads_stay_on_one_cpu(servers, tmp_path):
    cpu = max(os.sched_getaffinity(0))
    port = servers.free_port()
    # A threaded HTTP server: each request runs in a thread started after exec.
    process = servers.Process("pinned", [sys.executable, "-m", "http.server", str(port),
                                         "--bind", "127.0.0.1"],
                              dict(os.environ), tmp_path, port, ready_path="/", cpus={cpu})
    process.start(timeout=30)
    try:
        status, _, _ = servers.http_request(port, "GET", "/")
        assert status == 200
        assert os.sched_getaffinity(process.pid) == {cpu}
        for task in os.listdir(f"/proc/{process.pid}/task"):
            assert os.sched_getaffinity(int(task)) == {cpu}
        assert os.sched_getaffinity(0) != {cpu}  # the bench itself is not pinned
    finally:
        process.stop()
