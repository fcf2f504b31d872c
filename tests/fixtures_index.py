"""Fixtures for the local index tests: a real `chroma run` server on 127.0.0.1 for the session,
settings on embedded Chroma or on that server, a counting fake embedder, and `indexed`: the small
saved pages of tests/saved_pages.py indexed by a real `copilot index` (needs `minilm_dir` from
tests.fixtures_models).

Use from a test module with `pytest_plugins = ["tests.fixtures_index"]`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.config import Settings
from tests.index_helpers import CountingEmbedder
from tests.saved_pages import run_copilot, write_saved

CHROMA_BIN = Path(sys.executable).parent / "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _heartbeat(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api/v2/heartbeat", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Chroma server (`chroma run`) on a free loopback port, for the session."""
    if not CHROMA_BIN.exists():
        pytest.skip("the chroma CLI is not installed in this environment")
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen([str(CHROMA_BIN), "run", "--host", "127.0.0.1", "--port", str(port),
                             "--path", str(folder / "data")], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while not _heartbeat(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"`chroma run` did not start: {(folder / 'server.log').read_text(errors='replace')[-800:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(params=["embedded", "server"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Settings:
    """Settings with a fresh data dir, on embedded Chroma or on the test server."""
    url = request.getfixturevalue("chroma_server") if store_kind == "server" else ""
    return Settings(data_dir=str(tmp_path / "data"), chroma_url=url)


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def indexed(env, minilm_dir: Path, tmp_path: Path, monkeypatch) -> Path:
    """Both pages written to tmp_path/saved and indexed by `copilot index` into the test's data dir."""
    monkeypatch.setenv("COPILOT_EMBED_MODEL_DIR", str(minilm_dir))
    saved = write_saved(tmp_path / "saved")
    proc = run_copilot("index", "--json", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["added"] == 2
    return saved
