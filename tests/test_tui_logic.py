"""The app's logic that needs no screen: answer text (links, blocks, claims), comparison marks,
the exchange state fed by engine events, search health, status line, clipboard fallbacks."""

from __future__ import annotations

import stat
from pathlib import Path

from copilot import events as ev
from copilot.citations import check_citations, settled_end
from copilot.history import Message
from copilot.tui import demo
from copilot.tui.answer_text import (
    best_lines,
    cited_claims,
    code_blocks,
    finished_blocks_end,
    link_citations,
    marker_groups,
    parse_cite_href,
)
from copilot.tui.clipboard import FALLBACK_NAME, clipboard_commands, copy_outside_terminal
from copilot.tui.marks import CITED, IGNORED, PENDING, UNREAD, plain_marks, url_key
from copilot.tui.services import local_search_wired, make_options
from copilot.tui.state import CANCELLED, DONE, FAILED, ExchangeState, StatusInfo, search_health
from copilot.tui.widgets.status import status_content

# --- answer text --------------------------------------------------------------------------------------


def test_markers_become_links_and_invalid_ones_are_marked() -> None:
    text = "Use run [1, 3] and see [Source 2]; argv[1] is not one. Also [7]."
    groups = marker_groups(text)
    out = link_citations(text, groups, {1, 2, 3})
    assert "[\\[1\\]](cite:1)[\\[3\\]](cite:3)" in out
    assert "[\\[2\\]](cite:2)" in out
    assert "argv[1]" in out
    assert "[\\[7✗\\]](cite:7)" in out
    assert parse_cite_href("cite:12") == 12 and parse_cite_href("https://x") is None


def test_link_citations_only_inside_the_range() -> None:
    text = "A [1]. B [2]."
    groups = marker_groups(text)
    assert link_citations(text, groups, {1, 2}, 0, 7) == "A [\\[1\\]](cite:1). "
    assert link_citations(text, groups, None, 7) == "B [\\[2\\]](cite:2)."


def test_streamed_markdown_only_grows() -> None:
    """What the answer view shows for a prefix is a prefix of what it shows for the whole."""
    text = demo.ANSWER + "Then `code [3]` and [2] at the end."
    known = {s.n for s in demo.SOURCES}
    shown = ""
    for i in range(1, len(text) + 1):
        prefix = text[:i]
        end = settled_end(prefix, demo.SOURCES)
        md = link_citations(prefix, marker_groups(prefix, demo.SOURCES), known, 0, end)
        assert md.startswith(shown), (i, shown[-30:], md[-30:])
        shown = md
    final = link_citations(text, marker_groups(text, demo.SOURCES), known)
    assert final.startswith(shown)


def test_settled_end_holds_back_only_what_may_change() -> None:
    assert settled_end("It fails [1] because") == len("It fails ")
    assert settled_end("It fails [1] because it") == len("It fails [1] because it")
    assert settled_end("see arr[") == len("see arr")
    assert settled_end("plain words.") == len("plain words.")


def test_finished_blocks_and_code_blocks() -> None:
    text = "Para one.\n\n```python\nx = 1\n\ny = 2\n```\n\nTail"
    assert text[finished_blocks_end(text):] == "Tail"
    open_fence = "Intro.\n\n```sh\nls\n\n"
    assert open_fence[:finished_blocks_end(open_fence)] == "Intro.\n\n"
    blocks = code_blocks(text + "\n\n~~~\nraw\n~~~\n\n```js\nlet a\n")
    assert [(b.language, b.code) for b in blocks] == [("python", "x = 1\n\ny = 2\n"), ("", "raw\n"), ("js", "let a\n")]
    assert code_blocks("no ``` fence here") == []


def test_claims_and_best_passage_lines() -> None:
    cites = check_citations(demo.ANSWER, demo.SOURCES)
    claims = [claim for claim, _ in cited_claims(demo.ANSWER, cites, 1)]
    assert claims == ["asyncio.run() always starts a new event loop, and it refuses to run while another "
                      "loop is already running in the same thread"]
    code_claim = cited_claims(demo.ANSWER, cites, 2)[0][0]
    assert "await the coroutine directly" in code_claim and "```" not in code_claim
    lines = best_lines(demo.SOURCES[0].text, claims)
    assert lines is not None
    hit = demo.SOURCES[0].text.splitlines()[lines[0]:lines[1] + 1]
    assert any("cannot be called when another asyncio event loop is running" in h for h in hit)
    assert best_lines("unrelated words", ["nothing matches zzz"]) is None
    assert cited_claims(demo.ANSWER, cites, 4) == []  # given to the model, never cited


# --- marks -----------------------------------------------------------------------------------------------


def test_plain_marks() -> None:
    cited = {1, 2, 3}
    marks = plain_marks(demo.RESULTS, demo.SOURCES, cited, finished=True)
    assert [(m.state, m.numbers) for m in marks] == \
        [(CITED, [2]), (CITED, [1]), (CITED, [3]), (IGNORED, [4]), (UNREAD, [])]
    streaming = plain_marks(demo.RESULTS, demo.SOURCES, {1}, finished=False)
    assert [m.state for m in streaming] == [PENDING, CITED, PENDING, PENDING, PENDING]


def test_a_matched_source_says_so_and_an_ignored_one_does_not() -> None:
    from copilot.tui.widgets.comparison import source_option

    src = demo.SOURCES[0]
    matched = str(source_option(src, 0, DONE, matched=True).prompt)
    ignored = str(source_option(src, 0, DONE).prompt)
    assert "copilot matched a sentence to it" in matched and "not cited" in matched
    assert "matched" not in ignored and "not cited" in ignored
    assert "matched" not in str(source_option(src, 1, DONE, matched=True).prompt)  # cited wins


def test_url_key_matches_small_differences() -> None:
    assert url_key("https://www.Example.com/a/") == url_key("http://example.com/a#frag")
    assert url_key("https://x.org/q?id=1") != url_key("https://x.org/q?id=2")


def test_canonical_url_matches_a_plain_result() -> None:
    src = ev.Source(1, "t", "https://mirror.example/p", "web", "x", canonical_url="https://site.example/p")
    res = [ev.SearchResult(1, "t", "https://site.example/p/", "")]
    assert plain_marks(res, [src], {1}, finished=True)[0].state == CITED


# --- exchange state ------------------------------------------------------------------------------------


async def _events(**kw) -> list:
    return [e async for e in demo.demo_ask(demo.QUESTION, None, None, **kw)]


async def test_exchange_state_follows_the_events() -> None:
    state = ExchangeState(question=demo.QUESTION)
    changes = [state.apply(e) for e in await _events()]
    assert changes[:5] == ["status", "plain", "status", "sources", "model"]
    assert changes[-3:] == ["warning", "warning", "done"]
    assert state.phase == DONE and state.text == demo.ANSWER
    assert state.search_warnings == [] and len(state.warnings) == 2
    assert {c.n for c in state.citations if not c.valid} == {7}
    # the engine's support scores survive the re-check on the shown text
    assert [(c.n, c.supported) for c in state.citations] == [(1, True), (2, True), (3, False), (7, False)]
    msg = state.to_message()
    assert msg.status == "done" and msg.answer == demo.ANSWER and msg.engine == "duckduckgo"
    again = ExchangeState.from_message(msg)
    assert again.phase == DONE and again.text == demo.ANSWER and again.answer is not None


async def test_cancel_and_fail_keep_the_text() -> None:
    state = ExchangeState(question="q")
    for e in (await _events())[:12]:
        state.apply(e)
    partial = state.text
    assert partial and state.in_flight
    state.cancel()
    assert state.phase == CANCELLED and state.text == partial
    assert ExchangeState.from_message(state.to_message()).phase == CANCELLED
    failed = ExchangeState(question="q")
    failed.fail("Ollama is not reachable", "OllamaUnavailable")
    assert failed.phase == FAILED and failed.to_message().status == "error"
    assert ExchangeState.from_message(Message(question="q", status="error", error="x")).phase == FAILED


def test_escape_sequences_never_reach_the_screen() -> None:
    state = ExchangeState(question="q")
    state.apply(ev.Token("red \x1b[3"))
    assert state.text == "red "  # the sequence may still be arriving
    state.apply(ev.Token("1mtext\x1b[0m done"))
    assert state.text == "red text"  # the last escape (maybe unfinished) is held back while streaming
    state.apply(ev.Token(" and more words " * 6))
    assert "\x1b" not in state.text and state.text.startswith("red text done")
    state.apply(ev.Done(ev.Answer("q", "x\x1b]0;title\x07y\x9b2J", "m", [], [], [], [], ev.Timings())))
    assert state.text == "xy"


def _searched(engine: str, warnings: list[str]) -> ExchangeState:
    s = ExchangeState(question="q")
    for w in warnings:
        s.apply(ev.Warning(w))
    s.apply(ev.PlainResults([], engine))
    return s


def test_search_health_from_warnings() -> None:
    assert search_health(ExchangeState(question="q")) is None
    assert search_health(_searched("duckduckgo", [])).state == "ok"
    h = search_health(_searched("searxng", ["DuckDuckGo rate-limited us — results from SearXNG"]))
    assert (h.state, h.detail) == ("rate-limited", "fell back to SearXNG")
    assert search_health(_searched("", ["DuckDuckGo rate-limited us — answering from the other sources"])).state \
        == "rate-limited"
    assert search_health(_searched("", ["SearXNG unreachable (127.0.0.1:9) — answering from the other sources"])
                         ).state == "offline"
    assert search_health(_searched("", ["SearXNG failed (HTTP 500) — answering from the other sources"])
                         ).state == "failed"
    off = ExchangeState(question="q")
    off.apply(ev.Warning("web search is off (COPILOT_SEARCH_ENGINE=none)"))
    assert search_health(off).state == "off"


def test_status_line() -> None:
    info = StatusInfo(model="qwen2.5-coder:1.5b", model_state="ok", scope="web", index_chunks=12345,
                      search=search_health(_searched("duckduckgo", [])), timings=demo.TIMINGS)
    line = status_content(info).plain
    assert line.startswith("● qwen2.5-coder:1.5b │ web │ index 12,345 │ search ok (DuckDuckGo) │ search 0.4s")
    assert "total 6.0s" in line
    info.activity = "Loading qwen2.5-coder:1.5b…"
    assert status_content(info).plain.endswith("Loading qwen2.5-coder:1.5b…")
    info.model_state = "offline"
    assert "Ollama offline" in status_content(info).plain


# --- services -----------------------------------------------------------------------------------------


def test_scope_maps_to_ask_options() -> None:
    assert make_options("web", "m").use_web is True
    assert make_options("local", "").use_web is False
    assert make_options("both", "").use_web is True
    if local_search_wired():
        assert make_options("local", "").use_local is True and make_options("web", "").use_local is False


# --- clipboard --------------------------------------------------------------------------------------------


def _tool(dir_: Path, name: str, body: str) -> None:
    p = dir_ / name
    p.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    p.chmod(0o755)


def test_clipboard_programs_by_environment(tmp_path: Path) -> None:
    for name in ("wl-copy", "xclip", "xsel"):
        _tool(tmp_path, name, "cat > /dev/null")
    path = str(tmp_path)
    names = lambda env: [Path(c[0]).name for c in clipboard_commands(env)]  # noqa: E731
    assert names({"PATH": path, "WAYLAND_DISPLAY": "w", "DISPLAY": ":0"}) == ["wl-copy", "xclip", "xsel"]
    assert names({"PATH": path, "DISPLAY": ":0"}) == ["xclip", "xsel"]
    assert clipboard_commands({"PATH": path}) == []  # a headless session: no display, no tool


def test_failing_program_falls_back_to_the_next_then_a_file(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "xclip", "exit 1")
    _tool(bin_dir, "xsel", f"cat > {tmp_path / 'got'}")
    r = copy_outside_terminal("hello", tmp_path / "data", {"PATH": str(bin_dir), "DISPLAY": ":0"})
    assert r.tool == "xsel" and (tmp_path / "got").read_text() == "hello"
    (bin_dir / "xsel").unlink()
    r = copy_outside_terminal("hello again", tmp_path / "data", {"PATH": str(bin_dir), "DISPLAY": ":0"})
    assert r.tool is None and r.file == tmp_path / "data" / FALLBACK_NAME
    assert r.file.read_text() == "hello again" and stat.S_IMODE(r.file.stat().st_mode) == 0o600
    assert str(r.file) in r.message("the answer")


def test_unwritable_fallback_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    r = copy_outside_terminal("text", blocker / "data", {"PATH": str(tmp_path)})
    assert r.tool is None and r.file is None and r.error
    assert "OSC 52" in r.message("the answer")
