"""What the app asks of the core, in one place: the engine, the model list, the local index's
size, the history, the browser. Tests and benchmarks swap these for scripted ones; the defaults
import the core's heavy modules only when first called, so the first frame never waits for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from copilot import events as ev
    from copilot.config import Settings
    from copilot.history import History
    from copilot.llm import ModelInfo

AskFn = Callable[[str, "Settings", Any], AsyncIterator["ev.Event"]]


async def _engine_ask(question: str, settings: Settings, options: Any) -> AsyncIterator[ev.Event]:
    from copilot.engine import ask

    async for event in ask(question, settings, options):
        yield event


async def _list_models(settings: Settings) -> list[ModelInfo]:
    from copilot.llm import list_models

    return await list_models(settings)


def make_options(scope: str, model: str) -> Any:
    """AskOptions for a scope ("web" | "local" | "both"). The local index is asked only once the
    engine has a `use_local` option; until then "local" means "no web"."""
    from copilot.engine import AskOptions

    names = {f.name for f in dataclasses.fields(AskOptions)}
    kwargs: dict[str, Any] = {"use_web": scope in ("web", "both"), "model": model}
    if "use_local" in names:
        kwargs["use_local"] = scope in ("local", "both")
    return AskOptions(**kwargs)


def local_search_wired() -> bool:
    """True once the engine can search the local index (AskOptions has `use_local`)."""
    from copilot.engine import AskOptions

    return "use_local" in {f.name for f in dataclasses.fields(AskOptions)}


def index_size(settings: Settings) -> int | None:
    """Chunks in the local index, counted in its manifest (no Chroma, and no integrity check:
    this runs after every answer, and `PRAGMA quick_check` of a 100k-chunk manifest takes
    0.1-0.4 s); None when there is no index or it cannot be read. Blocking: call it from a thread."""
    try:
        from copilot.index.manifest import Manifest, manifest_path
    except ImportError:
        return None
    path = manifest_path(settings.data_path)
    if not path.is_file():
        return None
    try:
        m = Manifest.open(path, create=False)
        try:
            return m.chunk_count() if m.roots() else None  # no folder indexed: no index to show
        finally:
            m.close()
    except Exception:  # noqa: BLE001 - an unreadable index only hides the count
        return None


def open_history(settings: Settings) -> History:
    from copilot.history import History

    return History.open(settings)


def open_in_browser(url: str) -> bool:
    """Open an http(s) URL in the user's browser; anything else is refused. Blocking."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return False
    try:
        return bool(webbrowser.open(url, new=2))
    except webbrowser.Error:
        return False


def warm_up(settings: Settings) -> None:
    """Import what the first question needs (run in a thread after the first frame), so the first
    question costs no more than the ones after it. With a local index, open it and load its
    search structures too (at 100k chunks ~1 s and the ~350 MB the first search would take)."""
    import copilot.citations  # noqa: F401
    import copilot.engine  # noqa: F401
    import copilot.llm  # noqa: F401
    import copilot.passages  # noqa: F401
    import copilot.prompting  # noqa: F401
    import copilot.retrieval  # noqa: F401 - numpy; the engine asks the local index at every question
    import copilot.support  # noqa: F401
    import copilot.web.extract  # noqa: F401
    import copilot.web.fetch  # noqa: F401
    import copilot.web.search  # noqa: F401
    from copilot.tls import ssl_context

    ssl_context()
    import httpx  # noqa: F401
    import ollama  # noqa: F401

    for name in ("trafilatura", "markdownify", "charset_normalizer", "ddgs.engines.duckduckgo"):
        # An engine dependency that does not import is reported by the engine when it is used.
        with contextlib.suppress(ImportError):
            __import__(name)
    import markdown_it  # noqa: F401
    import textual.widgets._markdown  # noqa: F401
    from textual.highlight import highlight

    highlight("x = 1\n", language="python")
    if index_size(settings):
        copilot.engine.prepare_local(settings)


@dataclass
class Services:
    ask: AskFn = _engine_ask
    list_models: Callable[[Settings], Awaitable[list[ModelInfo]]] = _list_models
    index_size: Callable[[Settings], int | None] = index_size
    open_history: Callable[[Settings], History] = open_history
    open_url: Callable[[str], bool] = open_in_browser
    warm_up: Callable[[Settings], None] | None = warm_up
    check_ollama: bool = True  # ask Ollama for its models after the first frame
