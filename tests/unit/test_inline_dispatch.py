"""Which requests waitress's I/O thread takes itself (authgate.inline_serving)."""

from __future__ import annotations

import logging

import pytest
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser

from authgate import inline_serving
from authgate.inline_serving import (
    API_GET_PATHS,
    InlineChannel,
    InlineDispatcher,
    answered_inline,
    post_paths_for,
)
from authgate.views.wellknown import PUBLISHED


def parsed(raw: bytes) -> HTTPRequestParser:
    request = HTTPRequestParser(Adjustments())
    while raw and not request.completed:  # as waitress's channel feeds it
        raw = raw[request.received(raw):]
    assert request.completed
    return request


def get(path: str, method: str = "GET") -> HTTPRequestParser:
    return parsed(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def post(path: str, body: bytes = b"grant_type=client_credentials") -> HTTPRequestParser:
    return parsed(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode() + body)


@pytest.mark.parametrize("request_", [
    post("/oauth/token"), post("/oauth/introspect"), post("/oauth/device/code"),
    get("/health"), get("/health", "HEAD"),
    *(get(path) for path in PUBLISHED),
])
def test_the_api_lanes_requests_are_taken(request_):
    assert answered_inline(request_)


@pytest.mark.parametrize("request_", [
    post("/login"), get("/login"), get("/oauth/token"),
    post("/health"), get("/oauth/token/"), get("/admin"), get("/health?x=1", "PUT"),
    parsed(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
])
def test_pages_other_methods_and_malformed_requests_are_not(request_):
    assert not answered_inline(request_)


def channel(request, unsent: int = 0) -> InlineChannel:
    # A channel without a socket: only what add_task looks at.
    each = object.__new__(InlineChannel)
    each.requests = [request]
    each.total_outbufs_len = unsent
    return each


@pytest.fixture
def dispatcher():
    each = InlineDispatcher()  # no threads: queued tasks stay in its queue
    yield each
    inline_serving._reading.active = False


def on_io_thread(active: bool = True) -> None:
    inline_serving._reading.active = active


def test_the_io_thread_marks_a_request_it_takes(dispatcher):
    on_io_thread()
    taken = channel(get("/health"))
    dispatcher.add_task(taken)
    assert taken.inline_due and not dispatcher.queue


def test_a_worker_thread_queues_even_an_api_request(dispatcher):
    on_io_thread(False)  # service() of a worker adding the next pipelined request
    queued = channel(get("/health"))
    dispatcher.add_task(queued)
    assert not queued.inline_due and list(dispatcher.queue) == [queued]


def test_pages_and_connections_with_unsent_output_go_to_the_workers(dispatcher):
    on_io_thread()
    page = channel(get("/login"))
    backlog = channel(get("/health"), unsent=inline_serving.OUTBUF_LIMIT + 1)
    dispatcher.add_task(page)
    dispatcher.add_task(backlog)
    assert list(dispatcher.queue) == [page, backlog]
    assert not page.inline_due and not backlog.inline_due


def test_a_stalled_request_pauses_inline_answers(dispatcher, caplog):
    on_io_thread()
    with caplog.at_level(logging.WARNING, "authgate.server"):
        dispatcher.took(inline_serving.SLOW_SECONDS / 2, "/health")
        assert not caplog.records
        dispatcher.took(inline_serving.STALL_SECONDS * 2, "/oauth/token")
    assert "A request to /oauth/token took" in caplog.text
    paused = channel(get("/health"))
    dispatcher.add_task(paused)
    assert not paused.inline_due and list(dispatcher.queue) == [paused]
    dispatcher.paused_until = 0.0  # the pause is over
    again = channel(get("/health"))
    dispatcher.add_task(again)
    assert again.inline_due


def test_one_slow_request_does_not_pause_two_in_a_row_do(dispatcher, caplog, monkeypatch):
    on_io_thread()
    clock = [1000.0]
    monkeypatch.setattr(inline_serving.time, "monotonic", lambda: clock[0])
    slow = (inline_serving.SLOW_SECONDS + inline_serving.STALL_SECONDS) / 2
    with caplog.at_level(logging.WARNING, "authgate.server"):
        dispatcher.took(slow, "/oauth/token")  # a checkpoint's fsync, say
        assert not caplog.records and dispatcher.paused_until < clock[0]
        clock[0] += inline_serving.SLOW_WINDOW * 2
        dispatcher.took(slow, "/oauth/token")  # long after: alone again
        assert not caplog.records
        clock[0] += inline_serving.SLOW_WINDOW / 2
        dispatcher.took(slow, "/oauth/introspect")  # soon after: the database is held up
    assert "A request to /oauth/introspect took" in caplog.text
    assert dispatcher.paused_until == clock[0] + inline_serving.PAUSE_SECONDS


def test_the_published_documents_are_among_the_paths():
    assert {"/health", "/.well-known/jwks.json",
            "/.well-known/openid-configuration"} <= set(API_GET_PATHS)


def test_on_a_networked_database_device_code_requests_go_to_the_workers():
    dispatcher = InlineDispatcher(post_paths_for("postgresql"))
    on_io_thread()
    try:
        device_code = channel(post("/oauth/device/code", b"client_id=c"))
        basic = parsed(b"POST /oauth/introspect HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                       b"eDp5\r\nContent-Length: 7\r\n\r\ntoken=t")
        introspection, token = channel(basic), channel(post("/oauth/token"))
        for each in (device_code, introspection, token):
            dispatcher.add_task(each)
        assert list(dispatcher.queue) == [device_code]
        assert introspection.inline_due and token.inline_due
    finally:
        on_io_thread(False)


def test_which_paths_are_posted_to_inline():
    everything = {"/oauth/token", "/oauth/introspect", "/oauth/device/code"}
    assert post_paths_for("sqlite") == everything
    assert post_paths_for("postgresql") == everything - {"/oauth/device/code"}


def test_a_channel_holding_an_answer_keeps_its_next_request_back(dispatcher):
    on_io_thread()
    held = channel(post("/oauth/token"))
    held.held = object()  # an answer waiting for the turn's commit
    dispatcher.add_task(held)
    assert held.resume_after_turn and not held.inline_due and not dispatcher.queue
