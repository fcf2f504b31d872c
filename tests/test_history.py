"""copilot.history: conversations in SQLite, private file modes, round trips, export."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from copilot import events as ev
from copilot.citations import check_citations
from copilot.config import Settings
from copilot.history import (
    STATUS_CANCELLED,
    STATUS_ERROR,
    History,
    HistoryError,
    Message,
    title_for,
)

SOURCES = [
    ev.Source(1, "Runners — Python docs", "https://docs.python.org/3/library/asyncio-runner.html", "web-docs",
              "Section: asyncio.run()\nThis function cannot be called when another loop is running.",
              site="docs.python.org", heading="asyncio.run()"),
    ev.Source(2, "[Evil] title_with *stars*", "https://stackoverflow.com/q/1", "web-so",
              "Await it directly:\n```python\nresult = await main()\n```", site="stackoverflow.com"),
]
RESULTS = [
    ev.SearchResult(1, "asyncio.run() cannot be called", "https://stackoverflow.com/q/1", "In Jupyter…", "duckduckgo"),
    ev.SearchResult(2, "Runners", "https://docs.python.org/3/library/asyncio-runner.html", "Execute…", "duckduckgo"),
    ev.SearchResult(3, "Blog (about loops)", "https://blog.example/a b", "loops", "duckduckgo"),
]
TEXT = "It refuses to nest loops [1]. Await instead [2][9].\n\n```python\nresult = await main()\n```\n"


def answer(question: str = "why does asyncio.run fail?") -> ev.Answer:
    cites = check_citations(TEXT, SOURCES)
    cites[0].support, cites[0].supported = 0.81, True
    cites[1].support, cites[1].supported = 0.2, False  # [2]: weak support
    return ev.Answer(question=question, text=TEXT, model="qwen2.5-coder:1.5b", sources=list(SOURCES),
                     citations=cites, plain_results=list(RESULTS),
                     warnings=["the answer cites [9], which is not among the 2 sources"],
                     timings=ev.Timings(search=0.5, fetch=1.25, first_token=2.0, total=6.5))


@pytest.fixture
def history(tmp_path: Path):
    with History(tmp_path / "data" / "history.sqlite") as h:
        yield h


def test_file_is_private_and_directory_too(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "history.sqlite"
    with History(path) as h:
        h.add_message(h.new_conversation("q"), Message.from_answer(answer()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in path.parent.glob("history.sqlite-*"):  # WAL and shared-memory files, if left
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0


def test_wider_existing_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.touch()
    os.chmod(path, 0o644)
    History(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_open_uses_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path / "d"))
    with History.open(s) as h:
        assert h.path == tmp_path / "d" / "history.sqlite"


def test_round_trip_keeps_everything_the_app_shows(history: History) -> None:
    cid = history.new_conversation("why does asyncio.run fail?", now=100.0)
    mid = history.add_message(cid, Message.from_answer(answer(), scope="web", engine="duckduckgo"), now=101.0)
    [m] = history.messages(cid)
    assert m.id == mid and m.conversation_id == cid
    assert m.answer == TEXT and m.model == "qwen2.5-coder:1.5b" and m.status == "done"
    assert m.sources == SOURCES  # passages included: a source can be previewed after a restart
    assert m.citations == answer().citations  # support scores included
    assert m.plain_results == RESULTS
    assert m.timings == ev.Timings(0.5, 1.25, 2.0, 6.5)
    assert m.warnings == ["the answer cites [9], which is not among the 2 sources"]
    assert m.scope == "web" and m.engine == "duckduckgo" and m.created_at == 101.0
    a = m.to_answer()
    assert a.cited_numbers() == {1, 2} and a.text == TEXT


def test_partial_and_failed_answers_are_kept(history: History) -> None:
    cid = history.new_conversation("q")
    history.add_message(cid, Message(question="q", answer="It starts a new loop and", status=STATUS_CANCELLED))
    history.add_message(cid, Message(question="q2", status=STATUS_ERROR,
                                     error="Ollama is not reachable at http://127.0.0.1:11434"))
    first, second = history.messages(cid)
    assert first.status == "cancelled" and first.answer == "It starts a new loop and"
    assert second.status == "error" and "not reachable" in second.error and second.answer == ""
    with pytest.raises(ValueError):
        history.add_message(cid, Message(question="q3", status="weird"))


def test_list_most_recent_first_and_counts(history: History) -> None:
    a = history.new_conversation("first", now=10.0)
    b = history.new_conversation("second", now=20.0)
    history.add_message(a, Message(question="again"), now=30.0)
    history.add_message(a, Message(question="and again"), now=31.0)
    listed = history.list_conversations()
    assert [(c.id, c.messages) for c in listed] == [(a, 2), (b, 0)]
    assert listed[0].updated_at == 31.0 and listed[0].created_at == 10.0
    assert history.conversation(b).title == "second"
    assert history.conversation(9999) is None


def test_delete_removes_messages_too(history: History) -> None:
    cid = history.new_conversation("q")
    history.add_message(cid, Message.from_answer(answer()))
    assert history.delete_conversation(cid)
    assert not history.delete_conversation(cid)
    assert history.list_conversations() == []
    count = sqlite3.connect(history.path).execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert count == 0


def test_titles_are_one_clean_line() -> None:
    assert title_for("  why\n does \x1b[31mthis\x1b[0m fail?  ") == "why does this fail?"
    long = title_for("x" * 200)
    assert len(long) == 80 and long.endswith("…")


def test_export_markdown(history: History) -> None:
    cid = history.new_conversation("why does asyncio.run fail?", now=0.0)
    history.add_message(cid, Message.from_answer(answer(), engine="duckduckgo"))
    history.add_message(cid, Message(question="and then?", answer="Half an answ", status=STATUS_CANCELLED))
    md = history.export_markdown(cid)
    assert md.startswith("# why does asyncio.run fail?\n")
    assert "2 questions" in md
    assert "## why does asyncio.run fail?" in md and TEXT.strip() in md
    # sources: linked, escaped, cited or not
    assert "1. [Runners — Python docs › asyncio.run()](https://docs.python.org/3/library/asyncio-runner.html) (cited)" in md
    assert "2. [\\[Evil\\] title\\_with \\*stars\\*](https://stackoverflow.com/q/1) (cited, weak support)" in md
    assert "**Invalid citations:** \\[9\\]" in md
    # plain search in engine order, cited marked, odd URLs encoded
    assert "**Plain search (duckduckgo)**" in md
    assert "1. [asyncio.run() cannot be called](https://stackoverflow.com/q/1) — cited" in md
    assert "3. [Blog (about loops)](https://blog.example/a%20b)\n" in md
    assert "stopped before the end" in md and "Half an answ" in md
    with pytest.raises(KeyError):
        history.export_markdown(12345)


def test_bad_json_is_tolerated(history: History) -> None:
    cid = history.new_conversation("q")
    history.add_message(cid, Message.from_answer(answer()))
    conn = sqlite3.connect(history.path)
    conn.execute("UPDATE messages SET sources = '{not json', citations = '42', timings = '[]'")
    conn.commit()
    conn.close()
    [m] = history.messages(cid)
    assert m.sources == [] and m.citations == [] and m.timings == ev.Timings()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(HistoryError, match="newer copilot"):
        History(path)


def test_not_a_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError):
        History(path)


def test_threads_and_a_second_process_can_write(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with History(path) as h:
        cid = h.new_conversation("shared")

        def write(i: int) -> None:
            h.add_message(cid, Message(question=f"q{i}"))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        code = ("import sys; from copilot.history import History, Message; "
                f"h = History({str(path)!r}); h.add_message({cid}, Message(question='other process'))")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        for t in threads:
            t.join()
        questions = {m.question for m in h.messages(cid)}
    assert questions == {f"q{i}" for i in range(8)} | {"other process"}


def test_history_does_not_import_textual() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, copilot.history; print('textual' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
