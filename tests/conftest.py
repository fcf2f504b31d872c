"""Shared fixtures: a fake Ollama, a loopback web, and an environment that never touches the
real user's files or the internet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeOllama, LoopbackWeb

# Variables that would let a test reach the user's real config, data or network.
_SCRUB = (
    "COPILOT_MODEL", "COPILOT_CONFIG", "COPILOT_DATA_DIR", "COPILOT_SEARCH_ENGINE",
    "COPILOT_SEARXNG_URL", "COPILOT_DUCKDUCKGO_URL", "COPILOT_FETCH_ALLOW", "OLLAMA_HOST",
    "COPILOT_CHROMA_URL", "COPILOT_EMBED_MODEL", "COPILOT_EMBED_MODEL_DIR", "COPILOT_EMBED_MODEL_URL",
    "DDGS_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and XDG dirs, so nothing reads ~/.config or ~/.local."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as o:
        yield o


@pytest.fixture
def web() -> Iterator[LoopbackWeb]:
    with LoopbackWeb() as w:
        yield w


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ollama: FakeOllama,
        web: LoopbackWeb) -> dict[str, str]:
    """os.environ pointed at the fakes and temp dirs; also returned as a dict (a copy of the
    COPILOT_*/OLLAMA_HOST values set) for tests that pass `env=` explicitly or to a subprocess
    (use `{**os.environ}` there, which includes these)."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    values = {
        "COPILOT_DATA_DIR": str(data),
        "COPILOT_CONFIG": str(config),
        "OLLAMA_HOST": ollama.host,
        "COPILOT_SEARCH_ENGINE": "searxng",
        "COPILOT_SEARXNG_URL": web.base_url,
        # Should a test switch to DuckDuckGo, it still never leaves the machine.
        "COPILOT_DUCKDUCKGO_URL": web.duckduckgo_url,
        "COPILOT_FETCH_ALLOW": "127.0.0.1",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("COPILOT_MODEL", raising=False)
    return dict(values)


@pytest.fixture
def site(web: LoopbackWeb) -> dict[str, str]:
    """The asyncio pages of tests/asyncio_pages.py served, and a search that finds them."""
    from tests.asyncio_pages import add_asyncio_site

    return add_asyncio_site(web)
