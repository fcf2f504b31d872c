"""Read web pages concurrently, treating every page as untrusted input.

    results = await fetch_pages(urls, settings)   # [Page | FetchFailure], in the order given

Limits, all from Settings:
- `page_timeout`: one page, all redirect hops and the whole body included (a body that trickles
  a byte at a time is cut too, not only a server that stops sending);
- `fetch_deadline`: all pages together; pages unfinished then become "timed out" failures;
- `page_max_bytes`: bytes of (decompressed) body kept. A longer page is kept, cut at the limit,
  with `page.extra["truncated"] = True` and a warning: the first megabytes of a documentation
  page are still useful, and extraction copes with cut HTML;
- `max_redirects`: redirects are followed by hand, each hop checked by the AddressPolicy.

Only HTML, XHTML, plain text and Markdown are read. Bodies are decompressed here (gzip or
deflate, one layer) with a bound on the output, so a small compressed bomb cannot fill memory.
One bad page never raises: it becomes a `FetchFailure` with a short human reason.
"""

from __future__ import annotations

import asyncio
import codecs
import http.cookiejar
import inspect
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from copilot import __version__
from copilot.errors import FetchBlocked
from copilot.events import Page
from copilot.web.netguard import AddressPolicy, UnresolvedHost, guarded_transport

USER_AGENT = (f"copilot/{__version__} (terminal copilot; reads the pages a user's question "
              "found, one time each)")
ACCEPT = ("text/html,application/xhtml+xml;q=0.9,text/markdown;q=0.8,text/plain;q=0.7,"
          "*/*;q=0.1")
HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": ACCEPT,
    "Accept-Encoding": "gzip, deflate",
    "Accept-Language": "en;q=0.9, *;q=0.5",
}

TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain", "text/markdown",
                        "text/x-markdown"})
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_DEFLATE_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
                      "deflate": zlib.MAX_WBITS}

Warn = Callable[[str], Any]


@dataclass
class FetchFailure:
    """A page that could not be read. `reason` is short and human ("HTTP 404", "timed out")."""

    url: str
    reason: str


class _Failed(Exception):
    """Internal: stop this page with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def human_size(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{round(n / size, 1):g} {unit}"
    return f"{n} bytes"


def make_client(settings: Any, policy: AddressPolicy | None = None) -> httpx.AsyncClient:
    """The client fetch_pages uses: pinned to checked addresses, no redirects, no cookies kept,
    no proxies or .netrc from the environment."""
    policy = policy or AddressPolicy.from_settings(settings)
    no_cookies = http.cookiejar.CookieJar(
        policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        transport=guarded_transport(policy),
        headers=HEADERS,
        timeout=httpx.Timeout(settings.page_timeout,
                              connect=min(settings.connect_timeout, settings.page_timeout)),
        follow_redirects=False,
        trust_env=False,
        cookies=no_cookies,
    )


async def fetch_pages(urls: list[str], settings: Any, *, client: httpx.AsyncClient | None = None,
                      on_warning: Warn | None = None,
                      policy: AddressPolicy | None = None) -> list[Page | FetchFailure]:
    """Fetch `urls` concurrently; one result per URL, in the same order.

    Never raises for a bad page. `on_warning(message)` hears about each failed page and each
    page cut at the size limit. A `client` you pass is used as is: build it with `make_client`
    to keep connections pinned to checked addresses (every hop is checked either way)."""
    if not urls:
        return []
    policy = policy or AddressPolicy.from_settings(settings)
    own_client = client is None
    active = client or make_client(settings, policy)
    deadline = settings.fetch_deadline
    tasks: dict[str, asyncio.Task] = {}
    try:
        for url in dict.fromkeys(urls):  # each distinct URL once
            tasks[url] = asyncio.create_task(_fetch_page(url, settings, active, policy))
        done, pending = await asyncio.wait(tasks.values(), timeout=deadline)
    finally:
        late = [t for t in tasks.values() if not t.done()]
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)
        if own_client:
            await _close_quietly(active)

    results: dict[str, Page | FetchFailure] = {}
    for url, task in tasks.items():
        if task in done and not task.cancelled() and task.exception() is None:
            results[url] = task.result()
        elif task in done and not task.cancelled():
            results[url] = FetchFailure(url, f"failed: {type(task.exception()).__name__}")
        else:
            results[url] = FetchFailure(url, f"timed out after {deadline:g} s")
    if on_warning is not None:
        for url, result in results.items():
            if isinstance(result, FetchFailure):
                await _warn(on_warning, f"skipped {url}: {result.reason}")
            elif result.extra.get("truncated"):
                await _warn(on_warning, f"{url}: larger than "
                                        f"{human_size(settings.page_max_bytes)}, cut")
    return [results[url] for url in urls]


async def fetch_one(url: str, settings: Any,
                    client: httpx.AsyncClient | None = None) -> Page | FetchFailure:
    """One page, with the same limits as fetch_pages (the deadline included)."""
    return (await fetch_pages([url], settings, client=client))[0]


async def _warn(on_warning: Warn, message: str) -> None:
    result = on_warning(message)
    if inspect.isawaitable(result):
        await result


async def _close_quietly(client: httpx.AsyncClient) -> None:
    try:
        async with asyncio.timeout(1.0):
            await client.aclose()
    except (TimeoutError, httpx.HTTPError, OSError):
        pass


# -- one page --------------------------------------------------------------------------------


async def _fetch_page(url: str, settings: Any, client: httpx.AsyncClient,
                      policy: AddressPolicy) -> Page | FetchFailure:
    start = time.monotonic()
    try:
        async with asyncio.timeout(settings.page_timeout):
            page = await _follow(url, settings, client, policy)
    except httpx.ConnectTimeout:
        connect = min(settings.connect_timeout, settings.page_timeout)
        return FetchFailure(url, f"could not connect within {connect:g} s")
    except (TimeoutError, httpx.TimeoutException):
        return FetchFailure(url, f"timed out after {settings.page_timeout:g} s")
    except _Failed as e:
        return FetchFailure(url, e.reason)
    except UnresolvedHost as e:
        return FetchFailure(url, e.message)
    except FetchBlocked as e:
        return FetchFailure(url, f"blocked: {e.message}")
    except httpx.HTTPError as e:
        return FetchFailure(url, _describe_http_error(e))
    except Exception as e:  # noqa: BLE001 - one bad page must not stop the others
        return FetchFailure(url, f"failed: {type(e).__name__}")
    page.elapsed = time.monotonic() - start
    return page


async def _follow(url: str, settings: Any, client: httpx.AsyncClient,
                  policy: AddressPolicy) -> Page:
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _Failed("not a valid URL") from None
    seen = {current.copy_with(fragment=None)}
    hops: list[str] = []
    while True:
        await policy.check_url(current)  # before any connection, at every hop
        request = client.build_request("GET", current)
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_CODES and location:
                target = _redirect_target(response, location)
                if target.copy_with(fragment=None) in seen:
                    raise _Failed("redirect loop")
                if len(hops) >= settings.max_redirects:
                    raise _Failed(f"too many redirects (more than {settings.max_redirects})")
                seen.add(target.copy_with(fragment=None))
                hops.append(str(target))
                current = target
                continue
            if response.status_code >= 300 or response.status_code < 200:
                raise _Failed(f"HTTP {response.status_code}")
            return await _read_page(url, current, response, settings, hops)
        finally:
            await response.aclose()


def _redirect_target(response: httpx.Response, location: str) -> httpx.URL:
    try:
        target = response.url.join(location.strip())
    except (httpx.InvalidURL, ValueError):
        raise _Failed("bad redirect") from None
    if target.scheme not in ("http", "https"):
        raise FetchBlocked(f"redirect to a {target.scheme or 'scheme-less'} URL "
                           "(only http and https)")
    return target


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def charset_of(content_type: str) -> str | None:
    """The charset named in a Content-Type header, if Python knows it."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'").lower()
            try:
                codecs.lookup(name)
            except LookupError:
                return None
            return name or None
    return None


def _refuse_type(media: str) -> str:
    textual = (media.startswith("text/") or media.endswith(("+xml", "+json"))
               or media in ("application/json", "application/xml", "application/javascript"))
    return f"{'unsupported' if textual else 'binary'} content type {media}"


async def _read_page(url: str, final: httpx.URL, response: httpx.Response, settings: Any,
                     hops: list[str]) -> Page:
    content_type = response.headers.get("content-type", "")
    media = _media_type(content_type)
    if media and media not in TEXT_TYPES:
        raise _Failed(_refuse_type(media))
    body, truncated = await _read_body(response, settings.page_max_bytes)
    header = content_type.strip() if media else ""
    if not media:  # no Content-Type: look at the bytes
        head = body[:1024]
        if b"\x00" in head:
            raise _Failed("binary content (no content type)")
        media = "text/html" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") \
            else "text/plain"
    # content_type keeps the server's header (extract.decode_body reads its charset label);
    # extra["media_type"] is the bare, lower-case type.
    return Page(url=url, final_url=str(final), status=response.status_code,
                content_type=header or media, body=body,
                encoding=charset_of(content_type),
                extra={"media_type": media, "redirects": hops, "truncated": truncated})


async def _read_body(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` decoded bytes of the body, and whether it was cut."""
    header = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in _DEFLATE_ENCODINGS):
        raise _Failed(f"unsupported content encoding {header.strip()}")
    decoder = _Inflater(codings[0]) if codings else None
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        room = limit - size
        data = decoder.feed(raw, room + 1) if decoder else raw[: room + 1]
        if len(data) > room:
            chunks.append(data[:room])
            return b"".join(chunks), True
        chunks.append(data)
        size += len(data)
    if decoder:
        tail = decoder.finish()
        if size + len(tail) > limit:
            chunks.append(tail[: limit - size])
            return b"".join(chunks), True
        chunks.append(tail)
    return b"".join(chunks), False


class _Inflater:
    """gzip/deflate decoding with a cap on the output of each step."""

    def __init__(self, coding: str):
        self._coding = coding
        self._z = zlib.decompressobj(_DEFLATE_ENCODINGS[coding])
        self._started = False

    def feed(self, data: bytes, max_out: int) -> bytes:
        try:
            out = self._z.decompress(data, max_out)
        except zlib.error:
            if self._coding == "deflate" and not self._started:
                # Some servers send raw deflate without the zlib header.
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.feed(data, max_out)
            raise _Failed("corrupt compressed body") from None
        self._started = True
        return out

    def finish(self) -> bytes:
        try:
            return self._z.flush()
        except zlib.error:
            raise _Failed("corrupt compressed body") from None


def _causes(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = e
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe_http_error(e: httpx.HTTPError) -> str:
    if isinstance(e, httpx.ConnectError):
        causes = _causes(e)
        if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
            return "TLS certificate not valid"
        if any(isinstance(c, ssl.SSLError) for c in causes):
            return "TLS handshake failed"
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return "connection refused"
        return "could not connect"
    if isinstance(e, httpx.RemoteProtocolError):
        return "server broke the connection"
    if isinstance(e, httpx.ReadError | httpx.WriteError):
        return "connection dropped"
    if isinstance(e, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "not a valid URL"
    return f"failed: {type(e).__name__}"
