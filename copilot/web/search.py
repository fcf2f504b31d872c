"""Plain web search: DuckDuckGo (through ddgs) and SearXNG, with retries, fallback and a disk cache.

`search()` tries the engines of `settings.engines` in order. An engine that rate-limits us or
fails (HTTP 202/429/5xx, malformed answer, connection error, timeout) gets one retry after
`settings.search_backoff` seconds; then the next engine is tried. When every engine fails the
caller gets `([], "")` and one warning that says what happened to each engine.

Deadline: the whole call takes at most `settings.search_timeout` seconds (plus scheduling slop).
The time left is shared fairly between the engines still to try, so a hanging first engine
cannot starve the fallback, and a retry only happens when the engine's share has room for it.

DuckDuckGo: we use ddgs's own DuckDuckGo engine class (its request payload, browser-impersonating
HTTP client and result parser), not the `DDGS().text()` front door, for three reasons: the front
door cannot be pointed at another URL; it turns every non-200 answer (DuckDuckGo's "202
Ratelimit" included) into "No results found", so a rate limit looks like an empty result; and it
re-ranks results with its own heuristic, while we promise the engine's order. The engine object
is created per call, and `settings.duckduckgo_url` (a proxy or mirror of
html.duckduckgo.com/html/) is set on that instance only. ddgs's client honours HTTP(S)_PROXY /
NO_PROXY from the environment, and DDGS_PROXY like `DDGS()` does.

Cache: one JSON file per (engine list, normalised query, max_results) under
`settings.cache_dir / "search"` (directory 0700, files 0600), valid for
`settings.cache_ttl_hours` (0 turns it off). Empty answers are not cached. A cache hit returns the
engine name "cache"; each `SearchResult.engine` still names the engine that found it. Unreadable
or corrupt cache files are ignored (and removed when possible).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from copilot.config import Settings
from copilot.events import SearchResult
from copilot.safetext import clean
from copilot.tls import ssl_context

log = logging.getLogger(__name__)

LABELS = {"duckduckgo": "DuckDuckGo", "searxng": "SearXNG", "cache": "cache"}
USER_AGENT = "copilot/0.1 (terminal copilot; +https://github.com/)"
CACHE_VERSION = 1
SEARXNG_MAX_BYTES = 4_000_000
TITLE_MAX = 300
SNIPPET_MAX = 1000
MIN_ATTEMPT = 0.2  # don't start a retry with less time than this left
ALL_FAILED = " — answering from the other sources"  # ends the warning when no engine answered

Warn = Callable[[str], None]


class EngineError(Exception):
    """One engine's attempt failed. `message` is user-facing; `retryable` allows one retry."""

    def __init__(self, message: str, *, retryable: bool = True, kind: str = "error"):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.kind = kind  # "ratelimit" | "timeout" | "unreachable" | "error"


@dataclass
class _Raw:
    title: str
    url: str
    snippet: str


# --- public ------------------------------------------------------------------------------


async def search(query: str, settings: Settings, *, on_warning: Warn | None = None,
                 use_cache: bool = True) -> tuple[list[SearchResult], str]:
    """Plain results in the engine's order (rank from 1) and who answered.

    The second value is "duckduckgo" or "searxng" (the engine that answered), "cache" (a fresh
    cached answer; each result's `.engine` keeps the original engine), or "" when no engine
    answered (then `on_warning` was called once with what went wrong)."""
    warn = on_warning if on_warning is not None else (lambda _msg: None)
    query = " ".join(query.split())
    engines = list(settings.engines)
    if not query or not engines:
        return [], ""

    cache = _Cache(settings) if use_cache else None
    if cache is not None and (hit := cache.get(engines, query, settings.max_results)):
        return hit, "cache"

    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(settings.search_timeout, 0.1)
    failures: list[str] = []
    empty_from = ""
    for i, engine in enumerate(engines):
        remaining = deadline - loop.time()
        if remaining <= 0.01:
            failures.append(f"{LABELS.get(engine, engine)} not tried (out of time)")
            continue
        engine_deadline = loop.time() + remaining / (len(engines) - i)
        try:
            raws = await _with_retry(engine, query, settings, engine_deadline)
        except EngineError as e:
            log.info("search engine %s failed: %s", engine, e.message)
            failures.append(e.message)
            continue
        results = _tidy(raws, engine, settings.max_results)
        if not results:
            empty_from = empty_from or engine
            continue
        if failures:
            warn(f"{'; '.join(failures)} — results from {LABELS.get(engine, engine)}")
        if cache is not None:
            cache.put(engines, query, settings.max_results, engine, results)
        return results, engine

    if empty_from:
        if failures:
            warn(f"{'; '.join(failures)}")
        return [], empty_from
    warn(f"{'; '.join(failures)}{ALL_FAILED}")
    return [], ""


async def probe_engine(engine: str, settings: Settings, query: str = "python") -> str | None:
    """One attempt, no cache, no retry: None when the engine answers, else what is wrong."""
    timeout = max(min(settings.search_timeout, 10.0), 0.1)
    try:
        async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a Ctrl-C (gh-86296)
            await _run_engine(engine, query, settings, timeout)
    except EngineError as e:
        return e.message
    except TimeoutError:
        return f"{LABELS.get(engine, engine)} timed out after {timeout:.1f} s"
    return None


# --- engines -----------------------------------------------------------------------------


async def _with_retry(engine: str, query: str, settings: Settings,
                      engine_deadline: float) -> list[_Raw]:
    loop = asyncio.get_running_loop()
    label = LABELS.get(engine, engine)
    for attempt in (1, 2):
        timeout = engine_deadline - loop.time()
        try:
            if timeout <= 0.01:
                raise TimeoutError
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a Ctrl-C (gh-86296)
                return await _run_engine(engine, query, settings, timeout)
        except TimeoutError:
            err = EngineError(f"{label} timed out", kind="timeout")
        except EngineError as e:
            err = e
        backoff = max(settings.search_backoff, 0.0)
        room = engine_deadline - loop.time() - backoff
        if attempt == 2 or not err.retryable or room < MIN_ATTEMPT:
            raise err
        log.info("%s: %s; retrying in %.2f s", label, err.message, backoff)
        await asyncio.sleep(backoff)
    raise AssertionError("unreachable")  # pragma: no cover


async def _run_engine(engine: str, query: str, settings: Settings, timeout: float) -> list[_Raw]:
    if engine == "duckduckgo":
        return await asyncio.to_thread(
            _duckduckgo, query, settings.duckduckgo_url.strip(), timeout)
    if engine == "searxng":
        return await _searxng(query, settings, timeout)
    raise EngineError(f"unknown search engine {engine!r}", retryable=False)


def _duckduckgo(query: str, url: str, timeout: float) -> list[_Raw]:
    """Blocking: one request to DuckDuckGo's HTML endpoint through ddgs's engine."""
    try:
        from ddgs.engines.duckduckgo import Duckduckgo
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        engine = Duckduckgo(proxy=os.environ.get("DDGS_PROXY") or None, timeout=timeout)
        if url:
            engine.search_url = url
        payload = engine.build_payload(query=query, region="us-en", safesearch="moderate",
                                       timelimit=None, page=1)
        method = engine.search_method
        where = "params" if method == "GET" else "data"
    except (ImportError, AttributeError, TypeError) as e:
        raise EngineError(f"DuckDuckGo unavailable: this ddgs version differs ({e}); "
                          "pin ddgs 9.x or use SearXNG", retryable=False) from None
    try:
        resp = engine.http_client.request(method, engine.search_url, **{where: payload})
    except RatelimitException:
        raise EngineError("DuckDuckGo rate-limited us", kind="ratelimit") from None
    except TimeoutException:
        raise EngineError("DuckDuckGo timed out", kind="timeout") from None
    except DDGSException as e:
        text = str(e)
        if "Connect" in text or "dns" in text.lower():
            raise EngineError(f"DuckDuckGo unreachable ({_short(engine.search_url)})",
                              kind="unreachable") from None
        raise EngineError(f"DuckDuckGo failed ({text[:120]})") from None

    status = resp.status_code
    if status in (202, 403, 429):  # 202 is DuckDuckGo's "Ratelimit" answer
        raise EngineError("DuckDuckGo rate-limited us", kind="ratelimit")
    if status >= 500:
        raise EngineError(f"DuckDuckGo failed (HTTP {status})")
    if status != 200:
        raise EngineError(f"DuckDuckGo answered HTTP {status}", retryable=False)
    text = resp.text or ""
    if "anomaly-modal" in text or "challenge-form" in text:  # the bot check page
        raise EngineError("DuckDuckGo rate-limited us", kind="ratelimit")
    try:
        items = engine.post_extract_results(engine.extract_results(text))
    except Exception as e:  # noqa: BLE001 - lxml on hostile HTML
        raise EngineError(f"DuckDuckGo sent a page we could not read ({type(e).__name__})") \
            from None
    return [_Raw(getattr(r, "title", ""), getattr(r, "href", ""), getattr(r, "body", ""))
            for r in items]


async def _searxng(query: str, settings: Settings, timeout: float) -> list[_Raw]:
    import httpx

    base = settings.searxng_url.strip().rstrip("/")
    if not base:
        raise EngineError("SearXNG is not configured (COPILOT_SEARXNG_URL)", retryable=False)
    url = base + "/search"
    limits = httpx.Timeout(timeout, connect=min(settings.connect_timeout, timeout))
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    try:
        async with httpx.AsyncClient(timeout=limits, headers=headers, verify=ssl_context(),
                                     follow_redirects=True, max_redirects=3) as client, \
                client.stream("GET", url, params={"q": query, "format": "json"}) as resp:
            status = resp.status_code
            body = bytearray()
            if status == 200:
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > SEARXNG_MAX_BYTES:
                        raise EngineError("SearXNG sent an oversized answer")
    except httpx.TimeoutException:
        raise EngineError("SearXNG timed out", kind="timeout") from None
    except (httpx.ConnectError, httpx.UnsupportedProtocol) as e:
        retry = isinstance(e, httpx.ConnectError)
        raise EngineError(f"SearXNG unreachable ({_short(base)})", kind="unreachable",
                          retryable=retry) from None
    except httpx.HTTPError as e:
        raise EngineError(f"SearXNG failed ({type(e).__name__})") from None

    if status == 429:
        raise EngineError("SearXNG rate-limited us", kind="ratelimit")
    if status == 403:
        raise EngineError("SearXNG refused the JSON API (HTTP 403) — enable `json` under "
                          "search.formats in its settings.yml", retryable=False)
    if status >= 500:
        raise EngineError(f"SearXNG failed (HTTP {status})")
    if status != 200:
        raise EngineError(f"SearXNG answered HTTP {status}", retryable=False)
    try:
        data = json.loads(bytes(body))
        items = data["results"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise EngineError("SearXNG sent a malformed answer") from None
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(_Raw(str(item.get("title") or ""), str(item.get("url") or ""),
                            str(item.get("content") or "")))
    return out


# --- results -----------------------------------------------------------------------------


_WS = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")  # bidi, zero-width


def _text(value: str, limit: int) -> str:
    value = _INVISIBLE.sub("", clean(value or ""))
    value = _WS.sub(" ", value).strip()
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def _safe_url(url: str) -> str | None:
    url = (url or "").strip()
    if not url or len(url) > 4096 or any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    # Bidi overrides and invisible characters would make the shown URL differ from the real one:
    # percent-encoded, the URL names the same resource and shows what it is.
    return _INVISIBLE.sub(lambda m: quote(m.group()), url)


def _url_key(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def _tidy(raws: list[_Raw], engine: str, limit: int) -> list[SearchResult]:
    """Drop non-http(s) and duplicate URLs, clean the text, rank from 1, keep `limit`."""
    out: list[SearchResult] = []
    seen: set[str] = set()
    for raw in raws:
        url = _safe_url(raw.url)
        if url is None:
            continue
        key = _url_key(url)
        if key in seen:
            continue
        seen.add(key)
        title = _text(raw.title, TITLE_MAX) or urlsplit(url).netloc
        out.append(SearchResult(rank=len(out) + 1, title=title, url=url,
                                snippet=_text(raw.snippet, SNIPPET_MAX), engine=engine))
        if len(out) >= max(limit, 1):
            break
    return out


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


# --- cache -------------------------------------------------------------------------------


class _Cache:
    def __init__(self, settings: Settings):
        self.dir = Path(settings.cache_dir) / "search"
        self.ttl = settings.cache_ttl_hours * 3600.0

    @staticmethod
    def _key(engines: list[str], query: str, max_results: int) -> str:
        ident = json.dumps([CACHE_VERSION, engines, query.lower(), max_results])
        return hashlib.sha256(ident.encode()).hexdigest()[:40]

    def _path(self, engines: list[str], query: str, max_results: int) -> Path:
        return self.dir / f"{self._key(engines, query, max_results)}.json"

    def get(self, engines: list[str], query: str, max_results: int) -> list[SearchResult] | None:
        if self.ttl <= 0:
            return None
        path = self._path(engines, query, max_results)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            age = time.time() - float(data["created"])
            if data.get("v") != CACHE_VERSION or data.get("query") != query.lower():
                return None
            if age > self.ttl or age < -300:
                self._drop(path)
                return None
            results = [SearchResult(rank=int(r["rank"]), title=str(r["title"]),
                                    url=str(r["url"]), snippet=str(r["snippet"]),
                                    engine=str(r["engine"])) for r in data["results"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.info("ignoring unreadable search cache file %s: %s", path, e)
            self._drop(path)
            return None
        return results or None

    def put(self, engines: list[str], query: str, max_results: int, engine: str,
            results: list[SearchResult]) -> None:
        if self.ttl <= 0 or not results:
            return
        data = {
            "v": CACHE_VERSION, "created": time.time(), "engine": engine, "query": query.lower(),
            "results": [{"rank": r.rank, "title": r.title, "url": r.url, "snippet": r.snippet,
                         "engine": r.engine} for r in results],
        }
        path = self._path(engines, query, max_results)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError as e:
            log.info("could not write search cache %s: %s", path, e)
            with contextlib.suppress(OSError):
                tmp.unlink()

    @staticmethod
    def _drop(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

