"""A loopback web: pages, a SearXNG JSON API and a DuckDuckGo-HTML endpoint on 127.0.0.1.

    with LoopbackWeb() as web:
        url = web.add_page("/docs/a.html", "<h1>A</h1>")
        web.set_search([{"title": "A", "url": url, "content": "about A"}])
        # SearXNG:    GET  {web.base_url}/search?q=...&format=json
        # DuckDuckGo: POST {web.duckduckgo_url}  (form q=..., like html.duckduckgo.com/html/)

Both search endpoints answer from the same configured results, so a test can switch engines and
expect the same list. `fail_search` makes the next calls to either endpoint fail (rate limits).
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._http import Handler, LoopbackServer

DDG_PATH = "/html/"


@dataclass
class _Page:
    body: bytes
    content_type: str
    status: int
    delay: float
    headers: dict[str, str] = field(default_factory=dict)
    redirect_to: str | None = None
    trickle: float | None = None


class LoopbackWeb(LoopbackServer):
    trickle_chunk = 64  # bytes per chunk when a page trickles

    def __init__(self) -> None:
        super().__init__()
        self.pages: dict[str, _Page] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.search_calls = 0
        self.search_queries: list[str] = []
        self.search_times: list[float] = []  # time.monotonic() of each search call
        self.search_delay = 0.0  # seconds before a search endpoint answers
        self.searxng_json = True  # False: answer 403 to format=json, as SearXNG does by default
        self._searches: list[tuple[str | None, list[dict]]] = []
        self._failures: list[tuple[int, str]] = []
        self._slock = threading.Lock()

    # -- configuration -------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def searxng_url(self) -> str:
        return self.base_url

    @property
    def duckduckgo_url(self) -> str:
        return self.url(DDG_PATH)

    def add_page(self, path: str, body: str | bytes = "", *,
                 content_type: str = "text/html; charset=utf-8", status: int = 200,
                 delay: float = 0.0, headers: dict | None = None,
                 redirect_to: str | None = None, trickle: float | None = None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if redirect_to is not None and status == 200:
            status = 302
        self.pages[path] = _Page(data, content_type, status, delay, dict(headers or {}),
                                 redirect_to, trickle)
        return self.url(path)

    def set_search(self, results: list[dict], query: str | None = None) -> None:
        """Results ([{title, url, content}]) for queries containing `query` (None: any query)."""
        with self._slock:
            self._searches = [(q, r) for q, r in self._searches if q != query]
            self._searches.append((query, [dict(r) for r in results]))

    def fail_search(self, status: int, times: int = 1, body: str = "") -> None:
        """The next `times` search calls (either engine) answer `status` with `body`.

        `fail_search(200, body="{not json")` serves malformed JSON to SearXNG."""
        with self._slock:
            self._failures.extend([(status, body)] * times)

    def results_for(self, query: str) -> list[dict]:
        q = query.lower()
        with self._slock:
            specific = [r for k, r in self._searches if k is not None and k.lower() in q]
            if specific:
                return specific[-1]
            general = [r for k, r in self._searches if k is None]
            return general[-1] if general else []

    # -- server --------------------------------------------------------------------------

    def handle(self, req: Handler) -> None:
        self.requests.append((req.command, req.path))
        if req.route == "/search":
            return self._searxng(req)
        if req.route == DDG_PATH:
            return self._duckduckgo(req)
        page = self.pages.get(req.path) or self.pages.get(req.route)
        if page is None:
            return req.send_bytes(404, b"<html><body><h1>404 Not Found</h1></body></html>",
                                  "text/html; charset=utf-8")
        self._page(req, page)

    def _page(self, req: Handler, page: _Page) -> None:
        if page.delay:
            time.sleep(page.delay)
        headers = dict(page.headers)
        if page.redirect_to is not None:
            headers.setdefault("Location", page.redirect_to)
        if not page.trickle:
            return req.send_bytes(page.status, page.body, page.content_type, headers)
        req.send_response(page.status)
        req.send_header("Content-Type", page.content_type)
        req.send_header("Content-Length", str(len(page.body)))
        for k, v in headers.items():
            req.send_header(k, v)
        req.end_headers()
        if req.command == "HEAD":
            return
        for i in range(0, len(page.body), self.trickle_chunk):
            req.wfile.write(page.body[i:i + self.trickle_chunk])
            req.wfile.flush()
            time.sleep(page.trickle)

    def _begin_search(self, req: Handler, query: str) -> bool:
        """Count the call; answer a queued failure. True when the caller should answer."""
        with self._slock:
            self.search_calls += 1
            self.search_queries.append(query)
            self.search_times.append(time.monotonic())
            failure = self._failures.pop(0) if self._failures else None
        if self.search_delay:
            time.sleep(self.search_delay)
        if failure is not None:
            status, body = failure
            ctype = "application/json" if req.route == "/search" and status == 200 else \
                "text/html; charset=utf-8"
            req.send_bytes(status, body.encode(), ctype)
            return False
        return True

    def _searxng(self, req: Handler) -> None:
        query = req.query.get("q", "")
        if not self._begin_search(req, query):
            return
        if req.query.get("format") == "json" and not self.searxng_json:
            return req.send_bytes(403, b"<html><body>403 Forbidden</body></html>",
                                  "text/html; charset=utf-8")
        results = []
        for i, r in enumerate(self.results_for(query), start=1):
            url = r.get("url", "")
            split = urlsplit(url)
            results.append({
                "url": url,
                "title": r.get("title", ""),
                "content": r.get("content", r.get("snippet", "")),
                "engine": r.get("engine", "duckduckgo"),
                "parsed_url": [split.scheme, split.netloc, split.path, "", split.query, ""],
                "template": "default.html",
                "engines": [r.get("engine", "duckduckgo")],
                "positions": [i],
                "score": 1.0 / i,
                "category": "general",
            })
        req.send_json(200, {
            "query": query,
            "number_of_results": 0,
            "results": results,
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        })

    def _duckduckgo(self, req: Handler) -> None:
        query = (req.form() if req.command == "POST" else req.query).get("q", "")
        if not self._begin_search(req, query):
            return
        req.send_bytes(200, ddg_html(query, self.results_for(query)).encode(),
                       "text/html; charset=UTF-8")


def ddg_html(query: str, results: list[dict]) -> str:
    """A page shaped like html.duckduckgo.com's result list (one sponsored result first)."""
    e = html.escape
    items = [
        '<div class="result results_links results_links_deep result--ad">'
        '<div class="links_main links_deep result__body">'
        '<h2 class="result__title"><a class="result__a" '
        'href="https://duckduckgo.com/y.js?ad_domain=example.com&amp;u3=1">Sponsored</a></h2>'
        '<a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=example.com">'
        'An advertisement</a></div></div>'
    ] if results else []
    for r in results:
        url = r.get("url", "")
        snippet = r.get("content", r.get("snippet", ""))
        items.append(
            '<div class="result results_links results_links_deep web-result ">'
            '<div class="links_main links_deep result__body">'
            f'<h2 class="result__title"><a rel="nofollow" class="result__a" href="{e(url)}">'
            f'{e(r.get("title", ""))}</a></h2>'
            '<div class="result__extras"><div class="result__extras__url">'
            f'<a class="result__url" href="{e(url)}">{e(urlsplit(url).netloc)}</a>'
            '</div></div>'
            f'<a class="result__snippet" href="{e(url)}">{e(snippet)}</a>'
            '<div class="clear"></div></div></div>'
        )
    if not results:
        items.append('<div class="no-results">No results.</div>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{e(query)} at DuckDuckGo</title></head><body>'
        '<div id="links" class="results">' + "".join(items) + "</div>"
        f'<form action="/html/" method="post"><input name="q" value="{e(query)}"></form>'
        "</body></html>"
    )

