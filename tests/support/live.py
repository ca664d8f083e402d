"""The API's test helpers: `txmon api` as a subprocess, and Debian's Chromium
driven by Playwright (its own browser download is never used: `executable_path`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.obs import free_port, wait_for
from support.processor import TXMON

CHROMIUM = os.environ.get("TXMON_CHROMIUM") or shutil.which("chromium")


class ApiProcess:
    """`txmon api` on a free port, ready once /healthz answers."""

    def __init__(self, env: dict[str, str], log: Path, headers: dict | None = None,
                 timeout: float = 30):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([TXMON, "api", "--port", str(self.port)], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        try:
            wait_for(self._up, 60, what="txmon api /healthz")
        except BaseException:
            self.stop()  # a failed start must not leave the server running
            raise

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1100) -> Iterator:
    """A headless Chromium page; skipped without Chromium, except in CI (which installs
    it through scripts/system-deps.sh)."""
    if not CHROMIUM:
        message = "chromium not installed (bash scripts/system-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: the tests may run as root (containers), where the sandbox refuses.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
