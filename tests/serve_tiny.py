"""Shared by the service and report tests: a saved tiny gallery, `python -m pfd.serve` in a subprocess on a
free loopback port, and the headless Chromium (Debian's package) that the browser tests drive."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from engine_tiny import REPO, make_data, tiny_config

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def build_tiny_index(root: Path) -> dict:
    """Tiny synthetic data, an untrained checkpoint (stored config), its model and its saved gallery index."""
    from pfd.api import Gallery, ReIDModel
    from pfd.engine.trainer import Trainer

    make_data(root)
    Trainer(tiny_config(root, root / "run", "TEST.EVAL", "false", "TEST.IMS_PER_BATCH", "8")).save(0, improved=False)
    model = ReIDModel.from_checkpoint(root / "run" / "last.pth", device="cpu")
    gallery = Gallery.build(model, root / "synthetic" / "bounding_box_test")
    gallery.save(root / "index")
    return {"root": root, "model": model, "gallery": gallery, "index": root / "index"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(index: Path, log: Path, *flags: str, timeout: float = 120.0):
    """`python -m pfd.serve --index INDEX` on a free loopback port; yields its base URL once /api/health
    answers (polled, at most `timeout` seconds); stops it afterwards."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pfd.serve", "--index", str(index), "--port", str(port),
                                 "--device", "cpu", *flags], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="2"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pfd.serve exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pfd.serve did not answer /api/health within {timeout} s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.2)  # a poll interval, not a wait for an event
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chromium_path() -> str:
    """Debian's Chromium (PFD_CHROMIUM overrides). Absent: skip, except under CI=true, where .ci/run
    installs it, so its absence is a failure."""
    path = os.environ.get("PFD_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no Chromium found (.ci/run installs Debian's `chromium` package)")
    pytest.skip("no Chromium found (apt-get install chromium, or set PFD_CHROMIUM): browser tests skipped")


@contextlib.contextmanager
def browser_page():
    """A page of headless Chromium driven by Playwright (the system browser: nothing is downloaded)."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 760})
        finally:
            browser.close()


def artefact_dir(tmp_path_factory) -> Path:
    """Where screenshots go: $PFD_TEST_ARTEFACTS when set (e.g. a CI upload folder), else pytest's tmp dir."""
    folder = Path(os.environ.get("PFD_TEST_ARTEFACTS") or tmp_path_factory.mktemp("artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
