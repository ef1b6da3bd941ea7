"""Fixtures for end-to-end tests: real server processes and a real browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from e2e_support import CHROMIUM, CHROMIUM_ARGS, LiveServer, start_server


@pytest.fixture
def live_server(tmp_path, store_environ) -> Iterator:
    """Factory: ``live_server(**env)`` starts `authgate server` in a fresh directory,
    on the store chosen with --authgate-store."""
    servers: list[LiveServer] = []

    def factory(**env: str) -> LiveServer:
        cwd = tmp_path / f"srv{len(servers)}"
        cwd.mkdir()
        if "DATABASE_DRIVER" not in env:
            env = {**store_environ(), **env}
        server = start_server(cwd, env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    yield page
    context.close()

