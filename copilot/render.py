"""How the command line shows things: Markdown on a terminal, plain text when piped, or JSON.

Everything that came from a page, a file or the model passes through `clean()` before it is
printed, and reaches Rich as plain Text, never as markup.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from copilot import events as ev
from copilot.safetext import clean, clean_data

# The start of an escape sequence at the end of what has arrived, that may still be arriving.
_ESCAPE_TAIL = re.compile(r"[\x1b\x9b\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]{0,63}\Z")


def _console(stderr: bool = False):
    from rich.console import Console

    # Messages on stderr are one line each, whatever the width: never wrapped by Rich.
    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


def _json(data: dict) -> str:
    """JSON for stdout: every string cleaned like the plain output (json.dumps would escape C0
    controls, but not DEL, C1 controls or bidi overrides)."""
    return json.dumps(clean_data(data), ensure_ascii=False, indent=2)


def _markdown(text: str):
    """The answer as Rich Markdown. Links are shown as `text (url)`, not as terminal hyperlinks
    (OSC 8): a link whose target hides behind other words is how a page would phish through the
    model."""
    from rich.markdown import Markdown

    return Markdown(text, hyperlinks=False)


class _BlockStreamer:
    """Renders streamed Markdown on a terminal: finished blocks are printed for good, only the
    block still arriving is redrawn. Long answers scroll normally and nothing is printed twice."""

    def __init__(self, console):
        from rich.live import Live

        self.console = console
        self.buffer = ""
        self.live = Live(console=console, refresh_per_second=12, transient=True)
        self.live.start()

    @staticmethod
    def _split(text: str) -> tuple[str, str]:
        """(finished blocks, open block): cut at the last blank line outside a code fence."""
        cut, in_fence, pos = 0, False, 0
        for line in text.splitlines(keepends=True):
            pos += len(line)
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
            elif not in_fence and not line.strip() and line.endswith("\n"):
                cut = pos
        return text[:cut], text[cut:]

    def feed(self, text: str) -> None:
        self.buffer += text
        done, rest = self._split(self.buffer)
        if done.strip():
            self.live.update("")
            self.live.refresh()
            self.console.print(_markdown(done))
        self.buffer = rest
        self.live.update(_markdown(rest))

    def close(self) -> None:
        self.live.update("")
        self.live.stop()
        if self.buffer.strip():
            self.console.print(_markdown(self.buffer))
        self.buffer = ""


class AskPrinter:
    def __init__(self, json_mode: bool = False, compare: bool = False):
        self.json_mode = json_mode
        self.compare = compare
        self.tty = sys.stdout.isatty()
        self.err = _console(stderr=True)
        self.out = _console()
        self.streamer: _BlockStreamer | None = None
        self.status = None
        self.mid_line = False  # piped output ended without a newline
        self.held = ""  # the start of an escape sequence that may still be arriving
        self.answering = False  # a token has arrived

    def _status(self, message: str) -> None:
        if self.json_mode or not sys.stderr.isatty():
            return
        if self.status is None:
            self.status = self.err.status(message, spinner="dots")
            self.status.start()
        else:
            self.status.update(message)

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def _end_line(self) -> None:
        if self.mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.mid_line = False

    def _warn(self, message: str) -> None:
        from rich.text import Text

        self._stop_status()
        self._end_line()
        self.err.print(Text("warning: ", style="yellow") + Text(clean(message)))

    async def run(self, question: str, settings, options) -> int:
        from copilot.engine import ask

        answer: ev.Answer | None = None
        try:
            async for event in ask(question, settings, options):
                answer = self.handle(event) or answer
        finally:
            self._stop_status()
            self._flush_held()
            if self.streamer:
                self.streamer.close()
        if answer is None:
            return 1
        if self.json_mode:
            print(_json(answer.to_json()))
        else:
            self.print_footer(answer)
        return 5 if answer.cut_reason == "stream" else 0

    def handle(self, event: ev.Event) -> ev.Answer | None:
        if isinstance(event, ev.Status):
            if not self.answering:  # no spinner between the answer's words
                self._status(event.message)
        elif isinstance(event, ev.Warning):
            if not self.json_mode:
                self._warn(event.message)
        elif isinstance(event, ev.ModelChosen):
            if event.reason and not self.json_mode:
                self._stop_status()
                from rich.text import Text

                self.err.print(Text(clean(event.reason), style="dim"))
            self._status(f"Asking {event.model}…")
        elif isinstance(event, ev.Token):
            self.answering = True
            if self.json_mode:
                return None
            self._stop_status()
            raw = self.held + event.text
            tail = _ESCAPE_TAIL.search(raw, max(0, len(raw) - 64))
            cut = tail.start() if tail else len(raw)
            self.held = raw[cut:]
            self._write_answer(clean(raw[:cut]))
        elif isinstance(event, ev.Done):
            self._stop_status()
            self._flush_held()
            if self.streamer:
                self.streamer.close()
                self.streamer = None
            return event.answer
        return None

    def _write_answer(self, text: str) -> None:
        if not text:
            return
        if self.tty:
            if self.streamer is None:
                self.streamer = _BlockStreamer(self.out)
            self.streamer.feed(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.mid_line = not text.endswith("\n")

    def _flush_held(self) -> None:
        held, self.held = self.held, ""
        self._write_answer(clean(held))

    def print_footer(self, answer: ev.Answer) -> None:
        from rich.text import Text

        self._end_line()
        if answer.cut:
            self.err.print(Text("(the answer was cut off)", style="yellow"))
        cited = answer.cited_numbers()
        if answer.sources:
            self.out.print()
            self.out.print(Text("Sources", style="bold"))
            weak = {c.n for c in answer.citations if c.valid and c.supported is False}
            matched = {m.n for m in answer.matched}
            for s in answer.sources:
                mark = "" if s.n in cited else "  (not cited)"
                if s.n in weak:
                    mark = "  (weak support)"
                elif s.n in matched:
                    mark = "  (not cited; copilot matched a sentence to it)"
                line = Text(f"[{s.n}] ", style="bold cyan" if s.n in cited else "dim")
                line += Text(clean(s.label)) + Text(" — ") + Text(clean(s.where), style="blue")
                line += Text(mark, style="yellow" if s.n in weak else "dim")
                self.out.print(line, soft_wrap=True)
        invalid = sorted({c.n for c in answer.citations if not c.valid})
        for n in invalid:
            self.out.print(Text(f"[{n}] ", style="bold red") + Text("cited, but there is no source "
                                                                   f"{n}: an invented citation"))
        if self.compare:
            self.out.print()
            self.out.print(compare_table(answer))
        t = answer.timings
        if sys.stderr.isatty():
            first = f"{t.first_token:.1f}s" if t.first_token is not None else "—"
            self.err.print(Text(f"{clean(answer.model)} · search {t.search:.1f}s · pages {t.fetch:.1f}s · "
                                f"first token {first} · total {t.total:.1f}s", style="dim"))


def compare_table(answer: ev.Answer):
    """The cited sources next to the plain search results, each plain result marked when cited."""
    from rich.table import Table
    from rich.text import Text

    cited = answer.cited_numbers()
    cited_urls = {s.url for s in answer.sources if s.n in cited}
    table = Table(title="Answer's sources vs. plain search", expand=True, show_lines=False)
    table.add_column("Cited by the answer", ratio=1)
    table.add_column("Plain search (engine order)", ratio=1)
    left = [Text(f"[{s.n}] ") + Text(clean(s.label)) + Text(f"\n    {clean(s.where)}", style="dim")
            for s in answer.sources if s.n in cited]
    if not left:
        left = [Text("(no valid citations)", style="dim")]
    right = []
    for r in answer.plain_results:
        mark = Text("✓ cited ", style="green") if r.url in cited_urls else Text("  ")
        right.append(mark + Text(f"{r.rank}. ") + Text(clean(r.title))
                     + Text(f"\n    {clean(r.url)}", style="dim"))
    if not right:
        right = [Text("(no plain results)", style="dim")]
    for i in range(max(len(left), len(right))):
        table.add_row(left[i] if i < len(left) else "", right[i] if i < len(right) else "")
    return table


def _snippet(text: str, query: str, width: int = 240) -> str:
    """A window of `text` around the first query word it contains, on one line."""
    import re

    flat = " ".join(text.split())
    words = [w for w in re.findall(r"[\w.]+", query.lower()) if len(w) > 2]
    low = flat.lower()
    at = min((i for i in (low.find(w) for w in words) if i >= 0), default=0)
    start = max(0, at - width // 3)
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


async def print_search(query: str, settings, use_web: bool = True, use_local: bool = True,
                       json_mode: bool = False) -> int:
    import asyncio

    from rich.text import Text

    from copilot.errors import CopilotError, SearchFailed

    warnings: list[str] = []
    results: list[ev.SearchResult] = []
    engine = ""
    local_task = None
    if use_local:
        from copilot.engine import local_hits

        local_task = asyncio.create_task(asyncio.to_thread(local_hits, query, settings, 10))
    if use_web and settings.engines:
        from copilot.web.search import search

        results, engine = await search(query, settings, on_warning=warnings.append)
    hits = []
    if local_task is not None:
        try:
            hits = await local_task
        except CopilotError as e:
            warnings.append(f"the local index was not used: {e.one_line()}")
    local = [{"rank": i, "title": clean(h.title), "heading": clean(h.heading), "path": h.source_path,
              "url": h.url or None, "snippet": clean(_snippet(h.text, query)), "score": round(h.similarity, 4)}
             for i, h in enumerate(hits, start=1)]
    if json_mode:
        print(_json({
            "web": [{"rank": r.rank, "title": r.title, "url": r.url, "snippet": r.snippet}
                    for r in results],
            "local": local,
            "engine": engine,
            "warnings": warnings,
        }))
        return 0 if results or local or not (use_web and settings.engines) else 6
    err, out = _console(stderr=True), _console()
    for w in warnings:
        err.print(Text("warning: ", style="yellow") + Text(clean(w)))
    if use_web and not settings.engines:
        err.print(Text("web search is off (COPILOT_SEARCH_ENGINE=none)", style="yellow"))
    if results:
        out.print(Text(f"Web ({engine})", style="bold underline"))
    for r in results:
        out.print(Text(f"{r.rank:>2}. ", style="bold") + Text(clean(r.title), style="bold"))
        out.print(Text("    " + clean(r.url), style="blue"), soft_wrap=True)
        if r.snippet:
            out.print(Text("    " + clean(r.snippet)))
    if local:
        out.print(Text("Local index", style="bold underline"))
    for h in local:
        label = h["title"] + (f" › {h['heading']}" if h["heading"] else "")
        out.print(Text(f"{h['rank']:>2}. ", style="bold") + Text(label, style="bold")
                  + Text(f"  ({h['score']:.2f})", style="dim"))
        where = h["path"] + (f" ({h['url']})" if h["url"] else "")
        out.print(Text("    " + clean(where), style="blue"), soft_wrap=True)
        out.print(Text("    " + h["snippet"]))
    if use_web and settings.engines and not results and not local:
        if not engine:  # every engine failed; the warning above says how
            raise SearchFailed("no results: every search engine failed",
                               "try again in a minute, add a fallback engine (COPILOT_SEARXNG_URL), "
                               "or check `copilot doctor`")
        raise SearchFailed(f"no results for {query!r}", "check `copilot doctor`, or try other words")
    return 0


def print_config(settings, config_path: Path) -> None:
    from rich.table import Table
    from rich.text import Text

    out = _console()
    exists = "exists" if config_path.is_file() else "not present"
    out.print(Text(f"config file: {config_path} ({exists})"))
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("setting")
    table.add_column("value")
    table.add_column("from", style="dim")
    for name, value, origin in settings.items():
        shown = ",".join(value) if isinstance(value, list) else str(value)
        table.add_row(name, Text(shown or "(unset)"), origin)
    out.print(table)
