"""Faults `copilot ask` and `copilot search` must survive: Ollama, the search engines and the
pages each failing in the ways they do in the wild.

Every test goes through the real command (`copilot.cli.main` in this process, or a `copilot`
subprocess where a terminal, a second process or a local index is part of the case) against the
loopback servers of tests/fakes, and checks what the user is told (the exact line), the exit
code, that no traceback is printed, and that what had arrived is kept. Cases already proven
elsewhere are not repeated here; the README's fault table names the test of every case.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from copilot.engine import LOADING_NOTICE_AFTER
from tests.cli_run import configure, run_cli, run_in_terminal
from tests.fakes import LoopbackWeb
from tests.saved_pages import write_saved

pytest_plugins = ["tests.fixtures_models"]

MODEL = "qwen2.5-coder:1.5b"
QUESTION = "how do I read a whole text file with pathlib?"
GOOD_PAGE = """<!DOCTYPE html><html><head><title>pathlib — Object-oriented filesystem paths</title></head>
<body><div class="body" role="main"><section id="reading"><h1>Reading a text file with pathlib</h1>
<p>Path.read_text() opens the file in text mode, reads the whole text file and closes it again.</p>
<pre>from pathlib import Path
text = Path("notes.txt").read_text(encoding="utf-8")
</pre></section></div></body></html>"""
REPLY = "Path.read_text() opens the file in text mode, reads the whole text file and closes it [1]."
SLACK = 1.5  # seconds a timing bound may run over on a loaded 2-core machine


@pytest.fixture
def good(env, ollama, web, monkeypatch) -> str:
    """One page that answers QUESTION, the model named (no "using X" line), a reply citing it."""
    monkeypatch.setenv("COPILOT_MODEL", MODEL)
    ollama.reply_with(REPLY)
    url = web.add_page("/docs/pathlib.html", GOOD_PAGE)
    web.set_search(results(url))
    return url


def results(*urls: str) -> list[dict]:
    return [{"title": f"result {i}", "url": u, "content": "read a text file with pathlib"}
            for i, u in enumerate(urls, start=1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host(url: str) -> str:
    return url.split("/")[2]


def search_requests(web: LoopbackWeb) -> list[str]:
    """The methods of the search calls, in order: POST is DuckDuckGo, GET is SearXNG."""
    return [m for m, path in web.requests if path.startswith(("/html/", "/search"))]


def user_message(ollama) -> str:
    return next(m["content"] for m in ollama.requests[-1]["messages"] if m["role"] == "user")


def assert_answered(run, good: str) -> None:
    """The answer and its source list came through whole."""
    assert run.code == 0, run.err
    assert run.out.startswith(REPLY + "\n"), run.out
    assert f"[1] Reading a text file with pathlib — {good}" in run.out.splitlines(), run.out


# --- Ollama -------------------------------------------------------------------------------------


def test_ollama_not_running_at_start(capsys, monkeypatch, env, web, good) -> None:
    # The pages would take 5 s to read: the user hears about Ollama at once, not after them.
    web.set_search(results(web.add_page("/slow", GOOD_PAGE, delay=5)))
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    for args in (["ask", QUESTION], ["ask", "--json", QUESTION]):
        started = time.monotonic()
        run = run_cli(capsys, monkeypatch, *args)
        assert run.code == 3
        assert run.out == ""
        assert run.err == (f"copilot: Ollama is not reachable at http://127.0.0.1:{port} — start it with "
                           "`ollama serve`, or set OLLAMA_HOST to where it runs\n")
        assert time.monotonic() - started < 3.0


def test_ollama_dies_mid_stream_json_keeps_the_partial_answer(capsys, monkeypatch, ollama, good) -> None:
    # The plain-text face of this case: test_ask_cli.py::test_stream_cut_mid_answer_keeps_what_arrived
    ollama.reply_with(["Path.read_text() ", "reads ", "the ", "file [1]."])
    ollama.die_after = 2
    run = run_cli(capsys, monkeypatch, "ask", "--json", QUESTION)
    assert run.code == 5
    assert run.err == ""  # --json: everything is in the object
    out = json.loads(run.out)
    assert out["answer"] == "Path.read_text() reads "
    assert (out["cut"], out["cut_reason"]) == (True, "stream")
    assert out["warnings"][0] == "the answer was cut: the connection to Ollama broke mid-answer (RemoteProtocolError)"
    assert [s["url"] for s in out["sources"]] == [good]  # sources and plain results kept too
    assert [r["url"] for r in out["plain_results"]] == [good]


def test_slow_first_token_says_loading_and_does_not_time_out(env, ollama, good) -> None:
    # The first token comes after the loading notice and after every other timeout has passed
    # (connect, page): only the model timeout may bound a model that is loading.
    configure(env, connect_timeout=1.0, page_timeout=1.0)
    ollama.first_token_delay = LOADING_NOTICE_AFTER + 1.0
    run = run_in_terminal("ask", QUESTION, stdout_tty=False, stderr_tty=True)
    assert run.code == 0, run.err
    assert f"Loading {MODEL}… (the first answer after a start is slow)" in run.err
    assert run.out.startswith(REPLY + "\n")


@pytest.fixture
def tiny(ollama, monkeypatch) -> str:
    """A chat model trained for a 2048-token context, chosen by the user."""
    name = "tiny-coder:1b"
    ollama.models[name] = {"family": "llama", "parameter_size": "1B", "context_length": 2048,
                           "capabilities": ["completion"]}
    monkeypatch.setenv("COPILOT_MODEL", name)
    return name


TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/srv/app/module_{i}.py", line {10 + i}, in handler_{i}\n    result = step_{i}(payload["k{i}"], retries={i})\n'
    for i in range(250)) + "RuntimeError: the real error is on this last line\n"


def test_prompt_larger_than_the_context_is_packed_to_fit(capsys, monkeypatch, ollama, good, tiny) -> None:
    """Ollama lowers num_ctx to what the model was trained for and then cuts the prompt without a
    word (the fake does the same, and records it): the prompt is shrunk to fit instead, and the
    user is told what was shortened."""
    run = run_cli(capsys, monkeypatch, "ask", "why does this fail?", stdin=TRACEBACK)
    assert run.code == 0, run.err
    options = ollama.requests[-1]["options"]
    assert options["num_ctx"] == 2048 and options["num_predict"] == 512
    assert ollama.truncated == []  # Ollama never cut the prompt
    user = user_message(ollama)
    assert "RuntimeError: the real error is on this last line" in user  # the end of the piped input stays
    assert "Path.read_text() opens the file" in user  # and so do the sources
    assert f"warning: the answer is limited to 512 tokens to fit {tiny}'s 2048-token context" in run.err_lines
    assert any(re.fullmatch(rf"warning: the piped input was cut to its last \d+ characters to fit {tiny}'s "
                            r"2048-token context", line) for line in run.err_lines), run.err
    assert run.out.startswith(REPLY)


def test_long_prompt_gets_a_num_ctx_that_holds_it(capsys, monkeypatch, ollama, good) -> None:
    run = run_cli(capsys, monkeypatch, "ask", "why does this fail?", stdin=TRACEBACK)
    assert run.code == 0, run.err
    chat = ollama.requests[-1]
    prompt_tokens = sum(len(m["content"]) for m in chat["messages"]) / 4  # the fake's own count
    assert chat["options"]["num_ctx"] >= prompt_tokens + chat["options"]["num_predict"]
    assert ollama.truncated == []
    assert "to fit" not in run.err  # a 32k model holds it all: nothing shortened
    assert "RuntimeError: the real error is on this last line" in user_message(ollama)


def test_question_too_long_for_the_context_is_one_line(capsys, monkeypatch, ollama, good, tiny) -> None:
    run = run_cli(capsys, monkeypatch, "ask", "why " * 3000)
    assert run.code == 2
    assert re.fullmatch(rf"copilot: the question is too long for {tiny}'s 2048-token context \(it needs about "
                        r"\d+ tokens\) — shorten it, or choose a model with a longer context with --model\n",
                        run.err), run.err
    assert ollama.requests == []  # nothing was sent to be cut


# --- search engines --------------------------------------------------------------------------------


@pytest.fixture
def both_engines(env, monkeypatch) -> None:
    configure(env, search_backoff=0.2, search_timeout=4.0)


def test_duckduckgo_202_ratelimit_backs_off_then_uses_searxng(capsys, monkeypatch, web, good,
                                                              both_engines) -> None:
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "duckduckgo,searxng")
    web.fail_search(202, times=2, body="<html><body>Ratelimit</body></html>")  # the try and the retry
    run = run_cli(capsys, monkeypatch, "ask", QUESTION)
    assert_answered(run, good)
    assert run.err_lines == ["warning: DuckDuckGo rate-limited us — results from SearXNG"]
    assert search_requests(web) == ["POST", "POST", "GET"]
    assert web.search_times[1] - web.search_times[0] >= 0.2  # backed off before the retry


def test_searxng_429_backs_off_then_uses_duckduckgo(capsys, monkeypatch, web, good, both_engines) -> None:
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "searxng,duckduckgo")
    web.fail_search(429, times=2, body="Too Many Requests")
    run = run_cli(capsys, monkeypatch, "search", QUESTION)
    assert run.code == 0
    assert run.err == "warning: SearXNG rate-limited us — results from DuckDuckGo\n"
    assert run.out.splitlines()[:3] == ["Web (duckduckgo)", " 1. result 1", f"    {good}"]
    assert search_requests(web) == ["GET", "GET", "POST"]
    assert web.search_times[1] - web.search_times[0] >= 0.2


def test_search_dns_failure_uses_the_next_engine(capsys, monkeypatch, web, good, both_engines) -> None:
    # The name fails the way an unknown name does, at the system resolver, with no DNS traffic.
    real = socket.getaddrinfo

    def resolver(name, *args, **kwargs):
        if isinstance(name, str | bytes) and (name.decode() if isinstance(name, bytes) else name).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setenv("COPILOT_SEARXNG_URL", "http://searx.copilot-test.invalid")
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "searxng,duckduckgo")
    run = run_cli(capsys, monkeypatch, "ask", QUESTION)
    assert_answered(run, good)
    assert run.err_lines == ["warning: SearXNG unreachable (http://searx.copilot-test.invalid) — results from "
                             "DuckDuckGo"]


def test_search_timeout_leaves_time_for_the_next_engine(capsys, monkeypatch, env, web, good) -> None:
    configure(env, search_timeout=1.0, search_backoff=0.1)
    with LoopbackWeb() as hung:
        hung.search_delay = 10.0
        monkeypatch.setenv("COPILOT_DUCKDUCKGO_URL", hung.duckduckgo_url)
        monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "duckduckgo,searxng")
        run = run_cli(capsys, monkeypatch, "ask", "--json", QUESTION)
    assert run.code == 0, run.err
    out = json.loads(run.out)
    assert out["warnings"] == ["DuckDuckGo timed out — results from SearXNG"]
    assert [r["url"] for r in out["plain_results"]] == [good] and out["answer"] == REPLY
    assert out["timings"]["search"] < 1.0 + SLACK


def test_malformed_search_answer_uses_the_next_engine(capsys, monkeypatch, web, good, both_engines) -> None:
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "searxng,duckduckgo")
    web.fail_search(200, times=2, body='{"results": [{"title": "cut here')
    run = run_cli(capsys, monkeypatch, "search", "--json", QUESTION)
    assert run.code == 0 and run.err == ""
    out = json.loads(run.out)
    assert out["engine"] == "duckduckgo" and [r["url"] for r in out["web"]] == [good]
    assert out["warnings"] == ["SearXNG sent a malformed answer — results from DuckDuckGo"]


def test_every_engine_failing_answers_from_the_local_index(env, ollama, web, minilm_dir, tmp_path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("COPILOT_EMBED_MODEL_DIR", str(minilm_dir))
    monkeypatch.setenv("COPILOT_MODEL", MODEL)
    configure(env, search_backoff=0.05)
    copilot = [sys.executable, "-m", "copilot"]
    indexed = subprocess.run([*copilot, "index", str(write_saved(tmp_path / "saved"))], capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL, env={**os.environ})
    assert indexed.returncode == 0, indexed.stderr
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "duckduckgo,searxng")
    web.fail_search(202, times=2)
    web.fail_search(429, times=2)
    ollama.reply_with("In Python 3.9 and later use the union operator z = x | y [1].")
    run = subprocess.run([*copilot, "ask", "how do I merge two dicts in python?"], capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL, env={**os.environ})
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == "warning: DuckDuckGo rate-limited us; SearXNG rate-limited us — answering from the other sources"
    assert lines[1] == "warning: no web pages could be used: answering from the local index only"
    assert run.stdout.startswith("In Python 3.9 and later use the union operator z = x | y [1].\n")
    assert re.search(r"^\[1\] How do I merge two dictionaries.* — \S+merge-dicts\.html ", run.stdout, re.M), run.stdout
    assert search_requests(web) == ["POST", "POST", "GET", "GET"]


def test_every_engine_failing_with_nothing_local_is_one_clear_line(capsys, monkeypatch, web, ollama, good,
                                                                   both_engines) -> None:
    monkeypatch.setenv("COPILOT_SEARCH_ENGINE", "duckduckgo,searxng")
    web.fail_search(202, times=2)
    web.fail_search(503, times=2)
    run = run_cli(capsys, monkeypatch, "ask", QUESTION)
    assert run.code == 7 and run.out == ""
    assert run.err_lines == [
        "warning: DuckDuckGo rate-limited us; SearXNG failed (HTTP 503) — answering from the other sources",
        "copilot: no search results: every search engine failed (DuckDuckGo rate-limited us; SearXNG failed "
        "(HTTP 503)) — try again in a minute, add a fallback engine (COPILOT_SEARXNG_URL), or use --no-web "
        "to answer from the model alone",
    ]
    assert ollama.requests == []

    web.fail_search(429, times=4)
    run = run_cli(capsys, monkeypatch, "search", QUESTION)
    assert run.code == 6 and run.out == ""
    assert run.err_lines == [
        "warning: DuckDuckGo rate-limited us; SearXNG rate-limited us — answering from the other sources",
        "copilot: no results: every search engine failed — try again in a minute, add a fallback engine "
        "(COPILOT_SEARXNG_URL), or check `copilot doctor`",
    ]


# --- pages ---------------------------------------------------------------------------------------------


def ask_beside(capsys, monkeypatch, web, good: str, *bad: str, args: tuple[str, ...] = ()):
    """Ask with the good page first and `bad` pages after it in the results."""
    web.set_search(results(good, *bad))
    return run_cli(capsys, monkeypatch, "ask", *args, QUESTION)


def skipped(total: int, *failures: tuple[str, str]) -> str:
    return (f"warning: skipped {len(failures)} of {total} pages: "
            + "; ".join(f"{host(url)} ({reason})" for url, reason in failures))


def test_page_that_never_answers_costs_only_its_timeout(capsys, monkeypatch, env, web, good) -> None:
    configure(env, page_timeout=0.5, fetch_deadline=5.0)
    never = web.add_page("/never", GOOD_PAGE, delay=30)
    started = time.monotonic()
    run = ask_beside(capsys, monkeypatch, web, good, never)
    assert time.monotonic() - started < 0.5 + SLACK
    assert_answered(run, good)
    assert run.err_lines == [skipped(2, (never, "timed out after 0.5 s"))]


def test_pages_answering_4xx_or_5xx_are_skipped_with_their_status(capsys, monkeypatch, web, good) -> None:
    pages = {status: web.add_page(f"/status/{status}", GOOD_PAGE, status=status) for status in (403, 404, 500, 503)}
    run = ask_beside(capsys, monkeypatch, web, good, *pages.values())
    assert_answered(run, good)
    assert run.err_lines == [skipped(5, *((url, f"HTTP {status}") for status, url in pages.items()))]


def test_redirect_loop_is_skipped(capsys, monkeypatch, web, good) -> None:
    loop = web.add_page("/loop/a", redirect_to="/loop/b")
    web.add_page("/loop/b", redirect_to="/loop/a")
    run = ask_beside(capsys, monkeypatch, web, good, loop)
    assert_answered(run, good)
    assert run.err_lines == [skipped(2, (loop, "redirect loop"))]
    assert [p for _, p in web.requests if p.startswith("/loop/")] == ["/loop/a", "/loop/b"]


def test_page_over_the_size_cap_is_cut_and_its_start_used(capsys, monkeypatch, env, ollama, web) -> None:
    configure(env, page_max_bytes=50_000)
    filler = "<p>" + "Unrelated filler words about gardening and weather. " * 40 + "</p>\n"
    body = GOOD_PAGE.replace("</section>", "</section>" + filler * 100 + "<p>ZEBRA-AT-THE-END</p>")
    assert len(body) > 4 * 50_000
    big = web.add_page("/docs/big.html", body)
    monkeypatch.setenv("COPILOT_MODEL", MODEL)
    ollama.reply_with(REPLY)
    started = time.monotonic()
    run = ask_beside(capsys, monkeypatch, web, big, args=("--json",))
    assert run.code == 0 and run.err == ""
    out = json.loads(run.out)
    assert [s["url"] for s in out["sources"]] == [big] and out["warnings"] == []
    user = user_message(ollama)
    assert "Path.read_text() opens the file" in user  # the start of the page is used
    assert "ZEBRA-AT-THE-END" not in user  # what lies past the cap was never read
    assert time.monotonic() - started < 5.0


def test_trickling_page_cannot_outlast_the_fetch_deadline(capsys, monkeypatch, env, web, good) -> None:
    # 64 bytes every 50 ms: each read is quick, so only the overall deadline can stop it.
    configure(env, page_timeout=30.0, fetch_deadline=1.0)
    trickle = web.add_page("/trickle", "<p>" + "x" * 64 * 400 + "</p>", trickle=0.05)
    started = time.monotonic()
    run = ask_beside(capsys, monkeypatch, web, good, trickle)
    assert time.monotonic() - started < 1.0 + SLACK
    assert_answered(run, good)
    assert run.err_lines == [skipped(2, (trickle, "timed out after 1 s"))]


def test_binary_pages_are_skipped(capsys, monkeypatch, web, good) -> None:
    pdf = web.add_page("/paper.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", content_type="application/pdf")
    png = web.add_page("/chart", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", content_type="image/png")
    unlabelled = web.add_page("/blob", b"\x00\x01\x02binary\x00" * 50, content_type="")
    run = ask_beside(capsys, monkeypatch, web, good, pdf, png, unlabelled)
    assert_answered(run, good)
    assert run.err_lines == [skipped(4, (pdf, "binary content type application/pdf"),
                                     (png, "binary content type image/png"),
                                     (unlabelled, "binary content (no content type)"))]


CAFE = """<!DOCTYPE html><html><head><title>Café crème brûlée notes</title></head><body><article>
<h1>Café crème brûlée</h1><p>The crème brûlée at the café is made with vanilla; déjà vu for every naïve
visitor to the café. Reading a text file with pathlib works for crème brûlée recipes too.</p>
<p>Öl, Übermaß and façade are words a decoder must keep whole, like crème brûlée.</p></article></body></html>"""


def test_wrong_or_missing_charset_is_decoded_right(capsys, monkeypatch, ollama, web, good) -> None:
    cases = [("cp1252-labelled-utf8", "cp1252", "text/html; charset=utf-8"),
             ("latin1-unlabelled", "latin-1", "text/html"),
             ("utf8-labelled-latin1", "utf-8", "text/html; charset=iso-8859-1"),
             ("utf8-no-content-type", "utf-8", "")]
    pages = [web.add_page(f"/{name}", CAFE.replace("vanilla", f"vanilla {name}").encode(codec), content_type=ctype)
             for name, codec, ctype in cases]
    monkeypatch.setenv("COPILOT_MODEL", MODEL)
    web.set_search(results(*pages))
    run = run_cli(capsys, monkeypatch, "ask", "--json", "café crème brûlée")
    assert run.code == 0, run.err
    out = json.loads(run.out)
    assert sorted(s["url"] for s in out["sources"]) == sorted(pages)
    assert {s["title"] for s in out["sources"]} == {"Café crème brûlée"}
    user = user_message(ollama)
    for name, _, _ in cases:
        assert f"made with vanilla {name}; déjà vu for every naïve" in user, name
    assert "Ã" not in user and "\ufffd" not in user  # no mojibake, no replacement characters
