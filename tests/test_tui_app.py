"""The terminal app driven by Textual's pilot against the loopback Ollama and web servers: the same
engine and clients as `copilot ask`, only the addresses differ."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from copilot.history import History
from copilot.tui.app import CopilotApp
from copilot.tui.screens.history import HistoryScreen
from copilot.tui.screens.models import ModelScreen
from copilot.tui.state import CANCELLED, DONE, FAILED

QUESTION = "why does asyncio.run() fail in a running event loop?"
REPLY = ("asyncio.run() refuses to run inside a loop that is already running [2]. In Jupyter a loop "
         "is already running, so await the coroutine directly [1]:\n\n```python\nresult = await main()\n```\n")
LONG_REPLY = " ".join(f"word{i}" for i in range(300)) + " [1]."


def reply_citing_pages(body: dict) -> str:
    """A model that cites the SO page as [1] and the docs page as [2], whatever their numbers."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    n_so = n_docs = 99
    for line in user.splitlines():
        if line.startswith("[") and "] " in line:
            n = int(line[1:line.index("]")])
            if "Stack Overflow" in line or "cannot be called" in line:
                n_so = min(n_so, n)
            elif "Runners" in line:
                n_docs = min(n_docs, n)
    return REPLY.replace("[1]", f"[{n_so}]").replace("[2]", f"[{n_docs}]")


def dead_host() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def until(pilot, condition, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def ask(app: CopilotApp, pilot, question: str = QUESTION):
    app.ask_input.value = question
    app.ask_input.focus()
    await pilot.press("enter")
    await until(pilot, lambda: app.conversation.exchanges and app.conversation.exchanges[-1].state.question == question,
                what="the exchange to appear")
    return app.conversation.exchanges[-1]


async def answered(app: CopilotApp, pilot, exchange) -> None:
    await until(pilot, lambda: not exchange.state.in_flight, what="the answer to end")
    await until(pilot, lambda: exchange.answer.settled and app.current is None, what="the final redraw")
    await pilot.pause()


def option_texts(olist) -> list[str]:
    return [o.prompt.plain for o in olist.options]


def new_app() -> CopilotApp:
    return CopilotApp(cursor_blink=False)


# --- ask → plain results → stream → citations ----------------------------------------------------


async def test_plain_results_before_first_token_then_stream_and_cite(env, ollama, web, site) -> None:
    ollama.first_token_delay = 1.5
    ollama.reply_with(reply_citing_pages)
    app = new_app()
    async with app.run_test(size=(120, 40)) as pilot:
        exchange = await ask(app, pilot)
        state = exchange.state
        await until(pilot, lambda: state.searched, what="plain results")
        await until(pilot, lambda: any(o.id == "res-0" for o in app.comparison.plain.options), what="plain list")
        # The plain results are on screen while the model has not said a word yet.
        assert state.text == ""
        texts = option_texts(app.comparison.plain)
        assert "asyncio.run() cannot be called" in texts[0] and "Runners" in texts[1]
        assert all("waiting" in t or "read as" in t for t in texts)

        await answered(app, pilot, exchange)
        assert state.phase == DONE
        shown = exchange.answer.shown_markdown
        assert "result = await main()" in shown
        assert "(cite:" in shown  # markers became links
        texts = option_texts(app.comparison.plain)
        assert texts[0].count("cited [") == 1 and texts[1].count("cited [") == 1
        assert "not read" in texts[2] or "not cited" in texts[2]
        assert "✓ cited" in " ".join(option_texts(app.comparison.sources))

        # Selecting citation [n] (keyboard, in the conversation) focuses source n.
        cited = sorted({c.n for c in state.citations if c.valid})
        app.conversation.focus()
        await pilot.press(str(cited[-1]))
        await pilot.pause()
        assert app.focused is app.comparison.sources
        assert app.comparison.sources.highlighted_option.id == f"src-{cited[-1]}"

        # ... and clicking the [n] link in the answer does the same.
        from textual.widgets import Markdown

        md = exchange.answer.query(Markdown).first()
        md.post_message(Markdown.LinkClicked(md, f"cite:{cited[0]}"))
        await until(pilot, lambda: app.comparison.sources.highlighted_option.id == f"src-{cited[0]}",
                    what="the link to focus its source")

        # Enter on a source previews its passage, scrolled to what the answer cites.
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "PreviewScreen", what="the preview")
        preview = app.screen
        assert preview.source.n == cited[0]
        assert preview.claims, "the preview lists the claims that cite the source"
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "PreviewScreen")
        assert app.status_bar.info.timings is not None
        assert app.status_bar.info.search.state == "ok"
        assert app.status_bar.info.model == "qwen2.5-coder:1.5b"


async def test_loading_model_status_when_first_token_is_slow(env, ollama, web, site, monkeypatch) -> None:
    import copilot.engine

    monkeypatch.setattr(copilot.engine, "LOADING_NOTICE_AFTER", 0.2)
    ollama.first_token_delay = 1.0
    ollama.reply_with("Fine [1].")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await until(pilot, lambda: "Loading" in app.status_bar.info.activity, what="the loading notice")
        assert "Loading qwen2.5-coder:1.5b" in exchange.state.status
        await answered(app, pilot, exchange)
        assert app.status_bar.info.activity == ""


async def test_last_words_are_on_screen_while_the_citations_are_checked(env, ollama, web, site, monkeypatch) -> None:
    """The support check runs after the stream (0.1-0.5 s with the embedder): the answer's last
    words must not wait for it."""
    import threading

    import copilot.support

    release = threading.Event()
    real_check = copilot.support.check_support

    def slow_check(*args, **kwargs):
        release.wait(timeout=30)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(copilot.support, "check_support", slow_check)
    ollama.reply_with("Call asyncio.run(main()) once at the top [1]. The very last words LASTWORDS.")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        try:
            await until(pilot, lambda: "LASTWORDS" in exchange.answer.shown_markdown, what="the last words drawn")
            assert exchange.state.in_flight  # Done has not come: the check is still running
            assert "Checking the citations" in app.status_bar.info.activity
        finally:
            release.set()
        await answered(app, pilot, exchange)
        assert app.status_bar.info.activity == ""
        assert "(cite:" in exchange.answer.shown_markdown  # the final draw still marks the citations


# --- Esc ---------------------------------------------------------------------------------------------


async def test_escape_stops_the_answer_and_keeps_what_arrived(env, ollama, web, site) -> None:
    ollama.token_delay = 0.02
    ollama.reply_with(LONG_REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        state = exchange.state
        await until(pilot, lambda: len(state.text) > 40, what="some tokens")
        await pilot.press("escape")
        await until(pilot, lambda: state.phase == CANCELLED, what="the stop")
        await until(pilot, lambda: exchange.answer.settled)
        await pilot.pause()
        kept = state.text
        assert kept and len(kept) < len(LONG_REPLY)
        assert exchange.answer.shown_markdown.startswith(kept.rstrip()[:40])
        assert "stopped" in exchange.notes.visual.plain
        # The stopped answer is in the history, marked so.
        await until(pilot, lambda: state.message_id is not None, what="the save")
        msg = app.history.messages(app.conversation_id)[-1]
        assert msg.status == "cancelled" and msg.answer == state.raw_text
        # And the next question works.
        ollama.token_delay = 0
        ollama.reply_with("Done this time [1].")
        second = await ask(app, pilot, "and now?")
        await answered(app, pilot, second)
        assert second.state.phase == DONE and "Done this time" in second.state.text


async def test_quit_while_an_answer_streams(env, ollama, web, site) -> None:
    ollama.token_delay = 0.02
    ollama.reply_with(LONG_REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await until(pilot, lambda: len(exchange.state.text) > 20)
        await pilot.press("ctrl+q")
    assert app.return_code in (0, None)


async def test_new_chat_while_streaming_keeps_the_partial_answer(env, ollama, web, site) -> None:
    ollama.token_delay = 0.02
    ollama.reply_with(LONG_REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await until(pilot, lambda: len(exchange.state.text) > 20)
        conversation = None
        await until(pilot, lambda: app.conversation_id is not None or app.history is not None)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: not app.conversation.exchanges and app.current is None, what="the new chat")
        await until(pilot, lambda: exchange.state.message_id is not None, what="the save of the stopped answer")
        conversation = app.history.list_conversations()[0]
        [msg] = app.history.messages(conversation.id)
        assert msg.status == "cancelled" and msg.answer.startswith("word0 word1")
        assert app.conversation_id is None  # the next question starts a new conversation


# --- errors and recovery -------------------------------------------------------------------------------


async def test_ollama_down_then_back(env, ollama, web, site, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", dead_host())
    ollama.reply_with("Back again [1].")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        first = await ask(app, pilot)
        await answered(app, pilot, first)
        assert first.state.phase == FAILED
        assert "Ollama is not reachable" in first.state.error
        assert "Ollama is not reachable" in first.notes.visual.plain
        assert app.status_bar.info.model_state == "offline"
        # Plain results still came, so the user has something to read.
        assert first.state.searched and first.state.plain

        # Ollama comes back (here: OLLAMA_HOST now names where it runs, as host:port without a scheme).
        monkeypatch.setenv("OLLAMA_HOST", ollama.host.removeprefix("http://"))
        second = await ask(app, pilot, "again?")
        await answered(app, pilot, second)
        assert second.state.phase == DONE and "Back again" in second.state.text
        assert app.status_bar.info.model_state == "ok"


async def test_status_line_recovers_when_ollama_comes_back(env, ollama, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", dead_host())
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.status_bar.info.model_state == "offline", what="the offline state")
        assert app._recheck_timer is not None  # it will look again by itself
        monkeypatch.setenv("OLLAMA_HOST", ollama.host)
        app._recheck_ollama()  # what the timer does every RECHECK_OLLAMA seconds
        await until(pilot, lambda: app.status_bar.info.model_state == "ok", what="the recovery")
        assert app._recheck_timer is None


async def test_model_error_then_recovery(env, ollama, web, site) -> None:
    ollama.fail_next(500, "llama runner process has terminated", paths=("/api/chat",))
    ollama.reply_with("Recovered [1].")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        first = await ask(app, pilot)
        await answered(app, pilot, first)
        assert first.state.phase == FAILED and "llama runner process has terminated" in first.state.error
        second = await ask(app, pilot, "again?")
        await answered(app, pilot, second)
        assert second.state.phase == DONE


async def test_missing_model_is_a_message(env, ollama, web, site, monkeypatch) -> None:
    monkeypatch.setenv("COPILOT_MODEL", "llama9:70b")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.status_bar.info.model_state == "missing", what="the start-up check")
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        assert exchange.state.phase == FAILED
        assert "not installed" in exchange.state.error and "ollama pull llama9:70b" in exchange.state.error


async def test_search_rate_limited_shows_state_and_error(env, ollama, web, site, monkeypatch) -> None:
    monkeypatch.setenv("COPILOT_CONFIG", str(Path(env["COPILOT_CONFIG"])))
    Path(env["COPILOT_CONFIG"]).write_text("search_backoff = 0.05\nsearch_timeout = 2.0\n", encoding="utf-8")
    web.fail_search(429, times=10)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        assert exchange.state.phase == FAILED
        assert "no search results" in exchange.state.error
        assert app.status_bar.info.search.state == "rate-limited"
        from copilot.tui.widgets.status import status_content

        assert "search rate-limited" in status_content(app.status_bar.info).plain


# --- history ---------------------------------------------------------------------------------------------


async def test_history_resume_continue_export_delete(env, ollama, web, site) -> None:
    ollama.reply_with(reply_citing_pages)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        first = await ask(app, pilot)
        await answered(app, pilot, first)
        await until(pilot, lambda: first.state.message_id is not None, what="the save")
        conversation = app.conversation_id

        await pilot.press("ctrl+n")
        await until(pilot, lambda: not app.conversation.exchanges, what="a new chat")
        assert app.conversation_id is None and app.comparison.state is None

        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.items, what="history")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.conversation.exchanges) == 1, what="the resume")
        resumed = app.conversation.exchanges[0]
        await until(pilot, lambda: resumed.answer.settled)
        assert app.conversation_id == conversation
        assert resumed.state.text == first.state.text
        assert "result = await main()" in resumed.answer.shown_markdown
        assert any(o.id == "src-1" for o in app.comparison.sources.options)
        assert option_texts(app.comparison.plain)[0].count("cited [") == 1

        # A new question continues the resumed conversation.
        second = await ask(app, pilot, "and in a script?")
        await answered(app, pilot, second)
        await until(pilot, lambda: second.state.message_id is not None)
        assert [m.question for m in app.history.messages(conversation)] == [QUESTION, "and in a script?"]

        # Export, then delete (d twice).
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.items)
        await pilot.press("e")
        exports = Path(env["COPILOT_DATA_DIR"]) / "exports"
        await until(pilot, lambda: exports.is_dir() and any(exports.iterdir()), what="the export")
        text = next(exports.iterdir()).read_text(encoding="utf-8")
        assert f"## {QUESTION}" in text
        assert "result = await main()" in text and "**Plain search" in text
        await pilot.press("d")
        await pilot.press("d")
        await until(pilot, lambda: not app.screen.items, what="the delete")
        await pilot.press("escape")
        assert app.conversation_id is None
        assert History(Path(env["COPILOT_DATA_DIR"]) / "history.sqlite").list_conversations() == []


async def test_a_long_conversation_keeps_only_the_last_exchanges_mounted(env, ollama) -> None:
    """Older exchanges fold into one line (memory: each mounted answer keeps its widgets); `[` at
    the first one shown, or a click on the line, mounts them again; a resumed conversation comes
    back the same way."""
    from copilot.tui.widgets.conversation import MOUNTED, EarlierExchanges

    ollama.reply_with("From the model alone.")
    questions = [f"question number {i}" for i in range(MOUNTED + 2)]
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        app.set_scope("local")
        for q in questions:
            await answered(app, pilot, await ask(app, pilot, q))
        conv = app.conversation
        assert [e.state.question for e in conv.exchanges] == questions[2:]
        assert [s.question for s in conv.folded] == questions[:2]
        note = conv.query_one(EarlierExchanges)
        assert "2 earlier questions" in note.render().plain
        assert conv.children[0] is note

        conv.focus()
        for _ in range(MOUNTED - 1):
            await pilot.press("left_square_bracket")
        assert conv.selected is conv.exchanges[0] and len(conv.exchanges) == MOUNTED  # not yet
        await pilot.press("left_square_bracket")  # past the first one shown: the folded come back
        await until(pilot, lambda: len(conv.exchanges) == len(questions), what="the unfold")
        assert [e.state.question for e in conv.exchanges] == questions
        assert conv.selected.state.question == questions[1] and not conv.query(EarlierExchanges)

        await answered(app, pilot, await ask(app, pilot, "one more"))  # folds again
        assert len(conv.exchanges) == MOUNTED and len(conv.folded) == 3
        await until(pilot, lambda: all(e.state.message_id is not None for e in conv.exchanges), what="the saves")
        chat = app.conversation_id

        await pilot.press("ctrl+n")
        await until(pilot, lambda: not conv.exchanges and not conv.folded, what="a new chat")
        await app.resume(chat)
        assert [e.state.question for e in conv.exchanges] == (questions + ["one more"])[-MOUNTED:]
        assert "3 earlier questions" in conv.query_one(EarlierExchanges).render().plain
        conv.focus()
        await pilot.press("home")  # the line is above the last answers: the user scrolls up to it
        await until(pilot, lambda: conv.scroll_y == 0, what="the scroll")
        await pilot.click(EarlierExchanges)
        await until(pilot, lambda: len(conv.exchanges) == len(questions) + 1, what="the click to unfold")
        assert conv.exchanges[0].state.question == questions[0]


# --- copy ---------------------------------------------------------------------------------------------------


async def test_copy_answer_and_code_block_with_file_fallback(env, ollama, web, site, monkeypatch, tmp_path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no clipboard program here
    ollama.reply_with(reply_citing_pages)
    app = new_app()
    osc52: list[str] = []
    app.copy_to_clipboard = osc52.append  # the OSC 52 boundary
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        await pilot.press("ctrl+y")
        await until(pilot, lambda: osc52 and getattr(app, "last_copy", None), what="the copy")
        copied = osc52[-1]
        assert copied.startswith(exchange.state.text.rstrip())
        assert "\nSources:\n[" in copied and site["so"] in copied
        fallback = Path(env["COPILOT_DATA_DIR"]) / "clipboard.txt"
        assert fallback.read_text(encoding="utf-8") == copied
        assert stat.S_IMODE(fallback.stat().st_mode) == 0o600
        assert app.last_copy[1].file == fallback and str(fallback) in app.last_copy[1].message("the answer")

        app.last_copy = None
        await pilot.press("ctrl+o")
        await until(pilot, lambda: app.last_copy, what="the code copy")
        assert osc52[-1] == "result = await main()\n"
        assert fallback.read_text(encoding="utf-8") == "result = await main()\n"


async def test_copy_uses_a_clipboard_program_when_present(env, ollama, web, site, monkeypatch, tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sink = tmp_path / "xclip-got.txt"
    xclip = bin_dir / "xclip"
    xclip.write_text(f"#!/bin/sh\ncat > {sink}\n", encoding="utf-8")
    xclip.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ollama.reply_with("Plain answer [1].")
    app = new_app()
    app.copy_to_clipboard = lambda text: None
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        await pilot.press("ctrl+y")
        await until(pilot, lambda: getattr(app, "last_copy", None), what="the copy")
        assert app.last_copy[1].tool == "xclip"
        assert sink.read_text(encoding="utf-8").startswith("Plain answer [1].")
        assert not (Path(env["COPILOT_DATA_DIR"]) / "clipboard.txt").exists()


# --- the rest of the interaction ---------------------------------------------------------------------------


async def test_open_url_only_http(env, ollama, web, site) -> None:
    ollama.reply_with(reply_citing_pages)
    app = new_app()
    opened: list[str] = []
    app.services.open_url = lambda url: opened.append(url) or True
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        app.comparison.focus_source(1)
        await pilot.press("o")
        await until(pilot, lambda: opened, what="the browser")
        assert opened == [next(s.url for s in exchange.state.sources if s.n == 1)]
        app.open_link("javascript:alert(1)")
        app.open_link("file:///etc/passwd")
        await pilot.pause(0.1)
        assert len(opened) == 1


async def test_page_text_is_never_markup(env, ollama, web) -> None:
    page = web.add_page("/evil", "<html><head><title>[bold]Evil[/bold] [link=https://x.example]y[/link]</title>"
                        "</head><body><p>Use [red]this[/red] and [@click=app.quit]that[/]. " + "Words here. " * 30
                        + "</p></body></html>")
    web.set_search([{"title": "[bold]Evil[/bold] [link=https://x.example]y[/link]", "url": page,
                     "content": "[reverse]snippet[/reverse]"}])
    ollama.reply_with("It says [red]this[/red] [1]. \x1b[31mred?\x1b[0m")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        plain = option_texts(app.comparison.plain)[0]
        assert "[bold]Evil[/bold] [link=https://x.example]y[/link]" in plain
        assert "[reverse]snippet[/reverse]" in plain
        sources = " ".join(option_texts(app.comparison.sources))
        assert "[red]this[/red]" in sources
        from textual.widgets._markdown import MarkdownParagraph

        para = exchange.answer.query(MarkdownParagraph).first()
        assert "[red]this[/red]" in para._content.plain
        assert "\x1b" not in exchange.state.text


async def test_model_picker_lists_chat_models(env, ollama, web) -> None:
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and len(app.screen.names) > 1,
                    what="the model list")
        assert app.screen.names == ["", "qwen2.5-coder:1.5b"]  # all-minilm only embeds
        await pilot.press("down", "enter")
        await until(pilot, lambda: not isinstance(app.screen, ModelScreen))
        assert app.model == "qwen2.5-coder:1.5b"
        assert app.status_bar.info.model == "qwen2.5-coder:1.5b" and not app.status_bar.info.model_auto


async def test_scope_toggle_and_local_does_not_search_the_web(env, ollama, web, site) -> None:
    ollama.reply_with("From the model alone.")
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.scope == "both"  # the engine's default: web, and the local index when it has one
        await pilot.press("ctrl+t")
        assert app.scope == "web" and app.status_bar.info.scope == "web"
        await pilot.press("ctrl+t")
        assert app.scope == "local" and app.status_bar.info.scope == "local"
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        assert exchange.state.phase == DONE and web.search_calls == 0
        assert any("no sources" in w for w in exchange.state.warnings)
        assert "Web search was off" in option_texts(app.comparison.plain)[0]
        await pilot.press("ctrl+t")
        assert app.scope == "both"


async def test_typing_while_an_answer_streams(env, ollama, web, site) -> None:
    ollama.token_delay = 0.05
    ollama.reply_with(LONG_REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await until(pilot, lambda: len(exchange.state.text) > 20)
        app.ask_input.focus()
        await pilot.press("n", "e", "x", "t")
        assert app.ask_input.value == "next"
        assert exchange.state.in_flight
        await pilot.press("enter")  # refused politely while the answer streams
        assert app.ask_input.value == "next"
        await pilot.press("escape")
        await answered(app, pilot, exchange)
        await pilot.press("enter")
        await until(pilot, lambda: len(app.conversation.exchanges) == 2)


async def test_command_palette_has_every_action(env) -> None:
    app = new_app()
    async with app.run_test(size=(100, 30)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
    for title in ("Ask", "Stop answer", "New chat", "History", "Export conversation", "Scope: web", "Scope: local",
                  "Scope: both", "Model", "Copy answer", "Copy code block", "Sources", "Plain search", "Help",
                  "Theme", "Quit"):
        assert title in titles


async def test_help_screen_opens(env) -> None:
    app = new_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "HelpScreen")


# --- start-up --------------------------------------------------------------------------------------------------


def test_importing_the_app_loads_no_heavy_module() -> None:
    probe = ("import sys, copilot.tui.app; "
             "print(','.join(m for m in ('httpx','ollama','trafilatura','chromadb','ddgs','lxml','markdown_it',"
             "'copilot.engine') if m in sys.modules) or 'none')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "none"


def test_core_does_not_import_textual() -> None:
    probe = "import sys, copilot.history, copilot.engine, copilot.cli; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_copilot_without_a_terminal_says_so(env) -> None:
    proc = subprocess.run([sys.executable, "-m", "copilot"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**os.environ})
    assert proc.returncode == 2
    assert "needs a terminal" in proc.stderr and "Traceback" not in proc.stderr


async def test_warm_up_and_background_start(env, ollama) -> None:
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.ready_at is not None, what="the first frame")
        await until(pilot, lambda: app.warm_at is not None and app.history is not None, what="the warm-up")
        await until(pilot, lambda: app.status_bar.info.model_state == "ok", what="the Ollama check")
        assert "ollama" in sys.modules and "httpx" in sys.modules
        assert app.status_bar.info.model == "qwen2.5-coder:1.5b" and app.status_bar.info.model_auto


# --- staying responsive, and lean ------------------------------------------------------------------


async def test_typing_repaints_the_input_without_a_screen_layout(env) -> None:
    """Textual's Input changes its virtual size with every key, which re-laid out the whole
    screen per key (7-25 ms with answers on screen); the ask input needs only a repaint."""
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.warm_at is not None, what="the warm-up")
        await pilot.pause()
        layouts = 0
        refresh_layout = app.screen._refresh_layout

        def counting(*args, **kwargs):
            nonlocal layouts
            layouts += 1
            return refresh_layout(*args, **kwargs)

        app.screen._refresh_layout = counting
        await pilot.press(*"lru cache")
        await pilot.pause()
        assert app.ask_input.value == "lru cache"
        assert layouts == 0
        # Longer than the input: it still scrolls to keep the cursor in view.
        app.ask_input.value = "how does functools.lru_cache decide what to evict " * 3
        await pilot.press("end", "x")
        await pilot.pause()
        field = app.ask_input
        assert field.max_scroll_x > 0 and field.scroll_x == field.max_scroll_x
        await pilot.press("home")
        await pilot.pause()
        assert field.scroll_x == 0


async def test_streaming_redraws_yield_to_keys(env, ollama, web, site) -> None:
    from copilot.tui.widgets import answer as answer_mod

    ollama.token_delay = 0.02
    ollama.reply_with(LONG_REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await until(pilot, lambda: len(exchange.state.text) > 20)
        before = app.last_input_at
        await pilot.press("a")
        assert app.last_input_at > before  # keys reach the app's clock
        view = exchange.answer
        now = time.monotonic()
        app.last_input_at, view._last = now, now - 0.01
        assert 0 < view._key_wait(now) <= answer_mod.KEY_GRACE  # a key just now: the redraw waits
        view._last = now - answer_mod.MAX_DEFER
        assert view._key_wait(now) == 0  # but not past MAX_DEFER since the last redraw
        app.last_input_at = now - answer_mod.KEY_GRACE
        view._last = now
        assert view._key_wait(now) == 0  # an old key holds nothing back
        await answered(app, pilot, exchange)
        assert "word299 [" in exchange.answer.shown_markdown  # the final text is on screen


async def test_freed_memory_is_returned_after_an_answer(env, ollama, web, site, monkeypatch) -> None:
    import copilot.tui.app as app_mod

    calls: list[float] = []
    monkeypatch.setattr(app_mod, "GC_AFTER_ANSWER", 0.01)
    monkeypatch.setattr(app_mod, "release_free_memory", lambda: calls.append(time.monotonic()) or True)
    ollama.reply_with(REPLY)
    app = new_app()
    async with app.run_test(size=(100, 30)) as pilot:
        exchange = await ask(app, pilot)
        await answered(app, pilot, exchange)
        await until(pilot, lambda: calls, what="the trim after the answer")


def test_release_free_memory_is_safe_to_call() -> None:
    from copilot.tui.memory import release_free_memory

    assert release_free_memory() in (True, False)
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert release_free_memory() is True  # glibc has malloc_trim


_MALLOC_PROBE = """
import ctypes, sys
from copilot.tui.memory import tune_malloc
print(",".join(tune_malloc()))
if sys.platform.startswith("linux"):
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    first = bytearray(1 << 20)
    del first  # glibc's dynamic threshold would now rise above 1 MiB
    second = bytearray(1 << 20)
    print(libc.mallinfo2().hblkhd >= 1 << 20)  # the second block is still its own mapping
"""


def test_malloc_is_tuned_unless_the_user_chose() -> None:
    """In a fresh process (it must happen before threads start): glibc takes two arenas and a
    fixed mmap threshold, so a freed 1 MiB block does not move the next one into the heap; a
    setting the user made in the environment is left alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")}

    def probe(**extra: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], capture_output=True, text=True, check=True,
                             env={**env, **extra})
        return out.stdout.split("\n")

    glibc = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    if not glibc:
        assert probe()[0] == ""
        return
    tuned = probe()
    assert tuned[:2] == ["MALLOC_ARENA_MAX,MALLOC_MMAP_THRESHOLD_", "True"]
    untouched = probe(MALLOC_MMAP_THRESHOLD_="4194304")  # the user's 4 MiB: the block goes to the heap
    assert untouched[:2] == ["MALLOC_ARENA_MAX", "False"]
    assert probe(MALLOC_ARENA_MAX="4")[0] == "MALLOC_MMAP_THRESHOLD_"
