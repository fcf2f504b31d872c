"""`copilot ask` / `copilot search` end to end: a real subprocess, the real clients, loopback
servers speaking Ollama's and SearXNG's protocols, and pages we wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

QUESTION = "why does asyncio.run() say 'cannot be called from a running event loop'?"




def _source_blocks(user_message: str) -> dict[int, str]:
    """Split the prompt's source block into {n: text}: each source opens with a `[n] title` line
    (inside `<source>` tags or not)."""
    blocks: dict[int, str] = {}
    for chunk in re.split(r"(?m)^(?=\[\d+\] )", user_message):
        m = re.match(r"\[(\d+)\] ", chunk)
        if m:
            blocks.setdefault(int(m.group(1)), chunk.split("</source>")[0])
    return blocks


def grounded_reply(body: dict) -> str:
    """A stand-in for a model that does its job: cite the source that says the decisive thing."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    blocks = _source_blocks(user)
    running = [n for n, t in blocks.items() if "await main()" in t]
    loop = [n for n, t in blocks.items() if "another asyncio event loop is running" in t]
    n1 = running[0] if running else 99
    n2 = loop[0] if loop else 98
    return (f"asyncio.run() starts a new event loop and refuses to run inside one that is already "
            f"running [{n2}]. In Jupyter a loop is already running, so await the coroutine "
            f"directly [{n1}]:\n\n```python\nresult = await main()\n```\n")




def run_cli(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "copilot", *args], input=input, capture_output=True, text=True,
        timeout=timeout, env={**os.environ}, stdin=None if input is not None else subprocess.DEVNULL,
    )


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_ask_json_end_to_end(env, ollama, web, site) -> None:
    ollama.reply_with(grounded_reply)
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "qwen2.5-coder:1.5b"
    assert "await main()" in out["answer"]
    # plain results exactly in the engine's order
    assert [r["url"] for r in out["plain_results"]] == [site["so"], site["docs"], site["blog"]]
    assert [r["rank"] for r in out["plain_results"]] == [1, 2, 3]
    # every citation valid, and each points at the page that says the cited thing
    assert out["citations"] and all(c["valid"] for c in out["citations"])
    by_n = {s["n"]: s for s in out["sources"]}
    cited_urls = [by_n[c["n"]]["url"] for c in out["citations"]]
    assert cited_urls[0].endswith("asyncio-runner.html") or "asyncio.run" in by_n[
        out["citations"][0]["n"]]["title"]
    assert "stackoverflow.com/questions/55409641" in cited_urls[1] or cited_urls[1] == site["so"]
    assert {r["cited"] for r in out["plain_results"] if r["url"] == site["blog"]} <= {False}
    assert set(out["timings"]) >= {"search", "fetch", "first_token", "total"}
    assert out["warnings"] == []
    # page text went into the user message only, never the system role
    chat = ollama.requests[-1]
    system = " ".join(m["content"] for m in chat["messages"] if m["role"] == "system")
    assert "await main()" not in system and "Jupyter" not in system
    assert chat["options"]["num_ctx"] >= 2048


def test_invented_citation_is_reported_not_dropped(env, ollama, web, site) -> None:
    ollama.reply_with("Nested loops are not allowed [1]. See also the manual [7].")
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [(c["n"], c["valid"]) for c in out["citations"]] == [(1, True), (7, False)]
    assert out["invalid_citations"] == [7]
    assert any("[7]" in w for w in out["warnings"])
    assert "[7]" in out["answer"]  # the text is kept as the model wrote it


def test_plain_output_streams_answer_then_sources(env, ollama, web, site) -> None:
    ollama.reply_with(grounded_reply)
    proc = run_cli("ask", QUESTION)
    assert proc.returncode == 0, proc.stderr
    assert "await main()" in proc.stdout
    sources = re.findall(r"^\[(\d+)\] (.+) — (\S+)", proc.stdout, re.M)
    assert sources, proc.stdout
    assert any(url == site["so"] or "stackoverflow.com" in url for _, _, url in sources)
    assert "\x1b[" not in proc.stdout  # piped: plain text, no escape codes


def test_compare_marks_cited_plain_results(env, ollama, web, site) -> None:
    ollama.reply_with(grounded_reply)
    proc = run_cli("ask", "--compare", QUESTION)
    assert proc.returncode == 0, proc.stderr
    assert "Plain search" in proc.stdout and "Cited by the answer" in proc.stdout
    assert proc.stdout.count("✓ cited") == 2  # SO and docs cited, the blog not


def test_piped_input_is_attached_as_context(env, ollama, web, site) -> None:
    ollama.reply_with("The test fails because the loop is already running [1].")
    log = "E   RuntimeError: asyncio.run() cannot be called from a running event loop\n"
    proc = run_cli("ask", "--json", "why does this fail?", input=log)
    assert proc.returncode == 0, proc.stderr
    user = next(m["content"] for m in ollama.requests[-1]["messages"] if m["role"] == "user")
    assert "E   RuntimeError: asyncio.run() cannot be called" in user
    assert "why does this fail?" in user


def test_question_from_stdin(env, ollama, web, site) -> None:
    ollama.reply_with("Because a loop runs already [1].")
    proc = run_cli("ask", "--json", "-", input=QUESTION + "\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["question"] == QUESTION


def test_no_web_answers_from_the_model_alone(env, ollama, web) -> None:
    ollama.reply_with("A running loop cannot host another.")
    proc = run_cli("ask", "--json", "--no-web", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["sources"] == [] and out["plain_results"] == []
    assert web.search_calls == 0


def test_search_json_gives_engine_order(env, web, site) -> None:
    proc = run_cli("search", "--json", "asyncio.run running loop")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["url"] for r in out["web"]] == [site["so"], site["docs"], site["blog"]]
    assert out["local"] == []
    assert set(out["web"][0]) >= {"rank", "title", "url", "snippet"}


# --- what goes wrong -----------------------------------------------------------------------


def test_ollama_not_running(env, web, site, monkeypatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    proc = run_cli("ask", QUESTION)
    assert proc.returncode == 3
    assert_no_traceback(proc)
    assert "Ollama is not reachable" in proc.stderr and "ollama serve" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_model_missing(env, ollama, web, site) -> None:
    proc = run_cli("ask", "--model", "llama9:70b", QUESTION)
    assert proc.returncode == 4
    assert_no_traceback(proc)
    assert proc.stderr == ("copilot: model 'llama9:70b' is not installed in Ollama (installed: all-minilm:latest, "
                           "qwen2.5-coder:1.5b) — run `ollama pull llama9:70b` or choose another with --model\n")


def test_no_search_results(env, ollama, web) -> None:
    web.set_search([])
    proc = run_cli("ask", QUESTION)
    assert proc.returncode == 7
    assert_no_traceback(proc)
    assert "no search results" in proc.stderr and "--no-web" in proc.stderr


def test_all_pages_failed(env, ollama, web) -> None:
    bad = web.add_page("/gone", "nope", status=404)
    web.set_search([{"title": "gone", "url": bad, "content": "x"}])
    proc = run_cli("ask", QUESTION)
    assert proc.returncode == 7
    assert_no_traceback(proc)
    assert "none of the pages could be read" in proc.stderr
    assert "HTTP 404" in proc.stderr  # the skipped page is named with its reason


def test_stream_cut_mid_answer_keeps_what_arrived(env, ollama, web, site) -> None:
    ollama.reply_with(["Jupyter ", "already ", "runs ", "a ", "loop ", "[1]."])
    ollama.die_after = 3
    proc = run_cli("ask", QUESTION)
    assert proc.returncode == 5
    assert_no_traceback(proc)
    assert proc.stdout.startswith("Jupyter already runs \n")
    lines = proc.stderr.splitlines()
    assert "warning: the answer was cut: the connection to Ollama broke mid-answer (RemoteProtocolError)" in lines
    assert "(the answer was cut off)" in lines


def test_ctrl_c_keeps_partial_answer_and_exits_130(env, ollama, web, site) -> None:
    ollama.reply_with(["word "] * 200)
    ollama.token_delay = 0.05
    # A shell's background job (`ci/run &`) ignores SIGINT and its children inherit that: start this
    # one as a terminal would, or Python never turns SIGINT into KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "copilot", "ask", QUESTION],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while len(ollama.requests) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let some tokens arrive
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, out[-300:], err[-500:])
    assert "Traceback" not in err
    assert "cancelled" in err
    assert out.count("word") >= 1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["ask", " "], 2, "the question is empty"),
    (["ask", "--engine", "bing", "q"], 2, "unknown search engine 'bing'"),
    (["search", " "], 2, "the query is empty"),
])
def test_bad_input_is_one_line(env, args, code, message) -> None:
    proc = run_cli(*args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert_no_traceback(proc)


def test_bad_config_file_is_one_line(env, tmp_path, monkeypatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed")
    monkeypatch.setenv("COPILOT_CONFIG", str(bad))
    proc = run_cli("config")
    assert proc.returncode == 2
    assert "not valid TOML" in proc.stderr
    assert_no_traceback(proc)


def test_config_shows_origins(env) -> None:
    proc = run_cli("config")
    assert proc.returncode == 0
    assert re.search(r"ollama_host\s+http://127\.0\.0\.1:\d+\s+env OLLAMA_HOST", proc.stdout)
    assert re.search(r"max_pages\s+5\s+default", proc.stdout)


def test_cli_import_is_light_and_ask_never_loads_textual(env, ollama, web, site) -> None:
    ollama.reply_with("ok [1].")
    code = ("import sys, io, contextlib\n"
            "import copilot.cli as c\n"
            "heavy = [m for m in ('chromadb', 'textual', 'ollama', 'trafilatura', 'ddgs') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = c.main(['ask', '--json', {QUESTION!r}])\n"
            "assert rc == 0, rc\n"
            "assert 'textual' not in sys.modules and 'chromadb' not in sys.modules\n"
            "print('light')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "light" in proc.stdout
