"""fetch_pages against a real loopback web server: concurrency, deadlines, redirects, limits.

Every test records the connections the fetcher opens and checks, at the end, that they all went
to 127.0.0.1: blocked addresses are refused before any connection is tried.
"""

from __future__ import annotations

import gzip
import time
import zlib

import httpcore
import pytest

from copilot.config import Settings
from copilot.events import Page
from copilot.web.fetch import (
    USER_AGENT,
    FetchFailure,
    charset_of,
    fetch_one,
    fetch_pages,
    human_size,
    make_client,
)

SLACK = 0.5  # seconds a timing test may run over its limit on a busy 2-core machine


def settings(**overrides) -> Settings:
    values = {"fetch_allow": ["127.0.0.1"], "page_timeout": 3.0, "fetch_deadline": 4.0,
              "connect_timeout": 1.0, "page_max_bytes": 100_000, "max_redirects": 3}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hosts the fetcher opened TCP connections to; all must be 127.0.0.1."""
    opened: list[str] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def spy(self, host, port, *args, **kwargs):
        opened.append(host)
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", spy)
    yield opened
    assert set(opened) <= {"127.0.0.1"}, opened


def failure(result) -> str:
    assert isinstance(result, FetchFailure), result
    return result.reason


def page(result) -> Page:
    assert isinstance(result, Page), result
    return result


# -- concurrency and time limits ---------------------------------------------------------------


async def test_five_slow_pages_are_read_concurrently(web) -> None:
    urls = [web.add_page(f"/slow{i}", f"<h1>page {i}</h1>", delay=1.0) for i in range(5)]
    start = time.monotonic()
    results = await fetch_pages(urls, settings())
    elapsed = time.monotonic() - start
    assert [page(r).body for r in results] == [f"<h1>page {i}</h1>".encode() for i in range(5)]
    # Read one after another they would take 5 s. The 1.5 s goal itself is measured quietly by
    # bench/fetch_concurrency.py; here a loaded CI machine gets room without hiding a serial fetch.
    assert elapsed < 2.5, f"5 pages of 1 s took {elapsed:.2f} s"


async def test_a_page_that_never_answers_costs_no_more_than_the_deadline(web) -> None:
    never = web.add_page("/never", "x", delay=30)
    quick = web.add_page("/quick", "<p>quick</p>")
    start = time.monotonic()
    results = await fetch_pages([never, quick], settings(page_timeout=10, fetch_deadline=1.0))
    elapsed = time.monotonic() - start
    assert failure(results[0]) == "timed out after 1 s"
    assert page(results[1]).body == b"<p>quick</p>"
    assert elapsed < 1.0 + SLACK


async def test_page_timeout_bounds_one_page(web) -> None:
    never = web.add_page("/never", "x", delay=30)
    start = time.monotonic()
    [result] = await fetch_pages([never], settings(page_timeout=0.5, fetch_deadline=5))
    assert failure(result) == "timed out after 0.5 s"
    assert time.monotonic() - start < 0.5 + SLACK


async def test_trickling_body_is_cut_at_the_deadline(web) -> None:
    # 64 bytes every 50 ms: each read is quick, so a read timeout alone would never fire.
    url = web.add_page("/trickle", "<p>" + "x" * 64 * 200 + "</p>", trickle=0.05)
    start = time.monotonic()
    [result] = await fetch_pages([url], settings(page_timeout=10, fetch_deadline=1.0))
    assert failure(result) == "timed out after 1 s"
    assert time.monotonic() - start < 1.0 + SLACK


async def test_trickling_body_is_cut_by_the_page_timeout(web) -> None:
    url = web.add_page("/trickle", "x" * 64 * 200, trickle=0.05)
    start = time.monotonic()
    [result] = await fetch_pages([url], settings(page_timeout=0.8, fetch_deadline=10))
    assert failure(result) == "timed out after 0.8 s"
    assert time.monotonic() - start < 0.8 + SLACK


# -- status codes and redirects ---------------------------------------------------------------


async def test_http_errors(web) -> None:
    server_error = web.add_page("/boom", "<h1>oops</h1>", status=500)
    gone = web.add_page("/gone", "", status=410)
    results = await fetch_pages([web.url("/missing"), server_error, gone], settings())
    assert [failure(r) for r in results] == ["HTTP 404", "HTTP 500", "HTTP 410"]


async def test_redirect_chain_is_followed(web) -> None:
    start = web.add_page("/start", redirect_to="/middle", status=301)
    web.add_page("/middle", redirect_to="next/../end?x=1", status=307)  # relative Location
    web.add_page("/end", "<h1>end</h1>")
    [result] = await fetch_pages([start], settings())
    result = page(result)
    assert result.url == start
    assert result.final_url == web.url("/end?x=1")
    assert result.body == b"<h1>end</h1>"
    assert result.extra["redirects"] == [web.url("/middle"), web.url("/end?x=1")]
    assert [path for _, path in web.requests] == ["/start", "/middle", "/end?x=1"]


async def test_redirect_with_absolute_location(web) -> None:
    start = web.add_page("/a", redirect_to=web.url("/b"), status=308)
    web.add_page("/b", "b")
    [result] = await fetch_pages([start], settings())
    assert page(result).final_url == web.url("/b")


async def test_redirect_loop(web) -> None:
    ping = web.add_page("/ping", redirect_to="/pong")
    web.add_page("/pong", redirect_to="/ping")
    itself = web.add_page("/self", redirect_to="/self#again")
    results = await fetch_pages([ping, itself], settings(max_redirects=10))
    assert [failure(r) for r in results] == ["redirect loop", "redirect loop"]


async def test_too_many_redirects(web) -> None:
    for i in range(6):
        web.add_page(f"/hop{i}", redirect_to=f"/hop{i + 1}")
    web.add_page("/hop6", "end")
    [result] = await fetch_pages([web.url("/hop0")], settings(max_redirects=3))
    assert failure(result) == "too many redirects (more than 3)"
    [result] = await fetch_pages([web.url("/hop3")], settings(max_redirects=3))
    assert page(result).body == b"end"


async def test_redirect_to_a_private_address_is_refused(web, connections) -> None:
    url = web.add_page("/to-private", redirect_to="http://10.0.0.1/admin")
    start = time.monotonic()
    [result] = await fetch_pages([url], settings(connect_timeout=5, page_timeout=5))
    assert failure(result) == "blocked: 10.0.0.1 is a private address"
    assert time.monotonic() - start < 1.0
    assert "10.0.0.1" not in connections


async def test_redirect_to_another_loopback_address_is_refused(web, connections) -> None:
    port = web.base_url.rsplit(":", 1)[1]
    url = web.add_page("/to-other", redirect_to=f"http://127.0.0.2:{port}/")
    [result] = await fetch_pages([url], settings(fetch_allow=["127.0.0.1"]))
    assert failure(result) == "blocked: 127.0.0.2 is a loopback address"
    assert connections == ["127.0.0.1"]


async def test_redirect_to_metadata_and_local_names_is_refused(web) -> None:
    meta = web.add_page("/meta", redirect_to="http://169.254.169.254/latest/meta-data/")
    local = web.add_page("/local", redirect_to="http://localhost:11434/api/tags")
    results = await fetch_pages([meta, local], settings())
    assert [failure(r) for r in results] == [
        "blocked: 169.254.169.254 is the cloud metadata address",
        "blocked: localhost is a local name",
    ]


async def test_redirect_to_another_scheme_is_refused(web) -> None:
    url = web.add_page("/to-file", redirect_to="file:///etc/passwd")
    [result] = await fetch_pages([url], settings())
    assert failure(result) == "blocked: redirect to a file URL (only http and https)"


async def test_non_http_schemes_are_refused(connections) -> None:
    urls = ["file:///etc/passwd", "ftp://example.com/", "javascript:alert(1)"]
    results = await fetch_pages(urls, settings())
    reasons = [failure(r) for r in results]
    assert reasons[0] == "blocked: file URLs are not fetched (only http and https)"
    assert all(r.startswith("blocked:") for r in reasons)
    assert connections == []


async def test_default_settings_refuse_loopback(web, connections) -> None:
    url = web.add_page("/p", "hi")
    [result] = await fetch_pages([url], Settings(page_timeout=1, fetch_deadline=2))
    assert failure(result) == "blocked: 127.0.0.1 is a loopback address"
    assert web.requests == [] and connections == []


# -- content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("content_type", "reason"), [
    ("application/pdf", "binary content type application/pdf"),
    ("image/png", "binary content type image/png"),
    ("application/octet-stream", "binary content type application/octet-stream"),
    ("application/json", "unsupported content type application/json"),
])
async def test_other_content_types_are_refused(web, content_type: str, reason: str) -> None:
    url = web.add_page("/file", b"%PDF-1.7\x00\x01", content_type=content_type)
    [result] = await fetch_pages([url], settings())
    assert failure(result) == reason


@pytest.mark.parametrize("content_type", [
    "text/html", "TEXT/HTML; charset=utf-8", "application/xhtml+xml", "text/plain",
    "text/markdown; charset=utf-8",
])
async def test_text_content_types_are_read(web, content_type: str) -> None:
    url = web.add_page("/doc", "# Title\n", content_type=content_type)
    [result] = await fetch_pages([url], settings())
    assert page(result).content_type == content_type  # the header, for decode_body
    assert result.extra["media_type"] == content_type.split(";")[0].lower()


async def test_missing_content_type_is_sniffed(web) -> None:
    html = web.add_page("/html", "  <!doctype html><p>x</p>", content_type="")
    text = web.add_page("/text", "plain words", content_type="")
    binary = web.add_page("/bin", b"\x89PNG\x00\x00", content_type="")
    results = await fetch_pages([html, text, binary], settings())
    assert page(results[0]).content_type == "text/html"
    assert page(results[1]).content_type == "text/plain"
    assert results[1].extra["media_type"] == "text/plain"
    assert failure(results[2]) == "binary content (no content type)"


async def test_encoding_comes_from_the_charset(web) -> None:
    latin = web.add_page("/latin", "caf\xe9".encode("latin-1"),
                         content_type='text/html; charset="ISO-8859-1"')
    bare = web.add_page("/bare", "x", content_type="text/html")
    bogus = web.add_page("/bogus", "x", content_type="text/html; charset=no-such-codec")
    results = await fetch_pages([latin, bare, bogus], settings())
    assert [page(r).encoding for r in results] == ["iso-8859-1", None, None]
    assert page(results[0]).body == b"caf\xe9"


def test_charset_of() -> None:
    assert charset_of("text/html; charset=UTF-8") == "utf-8"
    assert charset_of("text/html;foo=bar; Charset='windows-1252'") == "windows-1252"
    assert charset_of("text/plain") is None


async def test_size_cap_keeps_the_start_and_marks_it(web) -> None:
    big = web.add_page("/big", "a" * 5000)
    exact = web.add_page("/exact", "b" * 1000)
    warnings: list[str] = []
    results = await fetch_pages([big, exact], settings(page_max_bytes=1000),
                                on_warning=warnings.append)
    cut, whole = page(results[0]), page(results[1])
    assert cut.body == b"a" * 1000 and cut.extra["truncated"] is True
    assert whole.body == b"b" * 1000 and whole.extra["truncated"] is False
    assert warnings == [f"{big}: larger than 1 KB, cut"]


async def test_size_cap_on_a_trickling_body_stops_reading(web) -> None:
    url = web.add_page("/long", "z" * 64 * 400, trickle=0.01)  # ~4 s to send in full
    start = time.monotonic()
    [result] = await fetch_pages([url], settings(page_max_bytes=640))
    assert page(result).body == b"z" * 640 and result.extra["truncated"]
    assert time.monotonic() - start < 1.0


async def test_compressed_bodies_are_decoded(web) -> None:
    text = "<p>" + "compressed words " * 50 + "</p>"
    gz = web.add_page("/gz", gzip.compress(text.encode()), headers={"Content-Encoding": "gzip"})
    zl = web.add_page("/zlib", zlib.compress(text.encode()),
                      headers={"Content-Encoding": "deflate"})
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    rawdata = raw.compress(text.encode()) + raw.flush()
    rd = web.add_page("/raw", rawdata, headers={"Content-Encoding": "deflate"})
    results = await fetch_pages([gz, zl, rd], settings())
    assert [page(r).body.decode() for r in results] == [text] * 3


async def test_a_compression_bomb_is_cut_at_the_size_cap(web) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # ~50 KB on the wire, 50 MB unpacked
    url = web.add_page("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    [result] = await fetch_pages([url], settings(page_max_bytes=10_000))
    assert len(page(result).body) == 10_000 and result.extra["truncated"]


async def test_unsupported_or_corrupt_encodings_fail(web) -> None:
    br = web.add_page("/br", b"\x0b\x02\x80hi\x03", headers={"Content-Encoding": "br"})
    double = web.add_page("/double", gzip.compress(gzip.compress(b"x")),
                          headers={"Content-Encoding": "gzip, gzip"})
    corrupt = web.add_page("/corrupt", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    results = await fetch_pages([br, double, corrupt], settings())
    assert [failure(r) for r in results] == [
        "unsupported content encoding br",
        "unsupported content encoding gzip, gzip",
        "corrupt compressed body",
    ]


# -- the API ---------------------------------------------------------------------------------


async def test_order_is_kept_and_duplicates_fetched_once(web) -> None:
    a = web.add_page("/a", "A", delay=0.3)
    b = web.add_page("/b", "B")
    results = await fetch_pages([a, web.url("/nope"), b, a], settings())
    assert page(results[0]).body == b"A" and page(results[3]).body == b"A"
    assert failure(results[1]) == "HTTP 404"
    assert page(results[2]).body == b"B"
    assert sorted(path for _, path in web.requests) == ["/a", "/b", "/nope"]
    assert page(results[0]).elapsed >= 0.3


async def test_no_urls() -> None:
    assert await fetch_pages([], settings()) == []


async def test_bad_pages_become_failures_and_warnings(web) -> None:
    closed_port = web.base_url.rsplit(":", 1)[1]
    web.stop()  # nothing listens there any more
    warnings: list[str] = []

    async def on_warning(message: str) -> None:  # async callbacks are awaited
        warnings.append(message)

    results = await fetch_pages(
        ["http://", f"http://127.0.0.1:{closed_port}/x", "not a url"], settings(),
        on_warning=on_warning)
    reasons = [failure(r) for r in results]
    assert reasons[1] == "connection refused"
    assert all(reasons) and all("\n" not in r for r in reasons)
    assert len(warnings) == 3 and warnings[1].startswith(f"skipped http://127.0.0.1:{closed_port}/x:")


async def test_fetch_one_and_a_caller_supplied_client(web) -> None:
    url = web.add_page("/one", "<p>one</p>", content_type="text/html; charset=utf-8")
    one = page(await fetch_one(url, settings()))
    assert (one.status, one.content_type, one.encoding, one.body) == (
        200, "text/html; charset=utf-8", "utf-8", b"<p>one</p>")
    s = settings()
    async with make_client(s) as client:
        first = await fetch_one(url, s, client)
        second = await fetch_pages([url], s, client=client)
        assert not client.is_closed
    assert page(first).body == page(second[0]).body == b"<p>one</p>"


def test_client_identifies_itself() -> None:
    client = make_client(settings())
    assert client.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("copilot/")
    assert client.headers["accept"].startswith("text/html,")
    assert client.follow_redirects is False


def test_human_size() -> None:
    assert human_size(3_000_000) == "3 MB"
    assert human_size(1_500) == "1.5 KB"
    assert human_size(12) == "12 bytes"
