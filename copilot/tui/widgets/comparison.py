"""The comparison panel: the sources the answer was given, and what a plain search returned.

Sources: number, title › heading, site or file, kind, a glimpse of the passage, and whether the
answer cites it; invalid citations ([n] with no source n) are listed after them. Plain search:
the engine's results in its own order, each marked cited, given-but-not-cited ("ignored") or
not read. Keys in either list: Enter previews, `o` opens the page in the browser, `c` copies its
address.

Everything shown here came from pages or a search engine: it is drawn as plain `Content`, never
parsed as markup.
"""

from __future__ import annotations

import contextlib
import re

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from copilot import events as ev
from copilot.safetext import clean
from copilot.tui.marks import (
    CITED,
    IGNORED,
    PENDING,
    citation_counts,
    invalid_numbers,
    kind_label,
    plain_marks,
    url_key,
    where,
)
from copilot.tui.state import ASKING, DONE, ENGINE_LABELS, ExchangeState

GLIMPSE_CHARS = 110
_FENCE_MARKS = re.compile(r"^\s*(?:```|~~~)\S*\s*$", re.MULTILINE)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(clean(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def glimpse(passage: str) -> str:
    """The start of a passage on one line: without the "Section: …" line the engine puts first
    (the label already says where it is) and without code fences."""
    lines = passage.splitlines()
    if lines and lines[0].startswith("Section: "):
        lines = lines[1:]
    return _one_line(_FENCE_MARKS.sub("", "\n".join(lines)), GLIMPSE_CHARS)


def _host_path(url: str) -> str:
    key = url_key(url)
    return key if len(key) <= 70 else key[:69] + "…"


class PreviewRequested(Message):
    def __init__(self, state: ExchangeState, source: ev.Source | None = None,
                 result: ev.SearchResult | None = None) -> None:
        super().__init__()
        self.state, self.source, self.result = state, source, result


class OpenUrlRequested(Message):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class CopyTextRequested(Message):
    def __init__(self, text: str, what: str) -> None:
        super().__init__()
        self.text, self.what = text, what


class _ItemList(OptionList):
    BINDINGS = [
        Binding("o", "open", "Open page"),
        Binding("c", "copy_url", "Copy URL", show=False),
        Binding("p,space", "preview", "Preview", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state: ExchangeState | None = None

    def _highlighted_source(self, prefix: str) -> ev.Source | None:
        """The source behind the highlighted option when its id is `<prefix>-<n>`."""
        opt = self.highlighted_option
        if opt is None or self.state is None or not (opt.id or "").startswith(f"{prefix}-"):
            return None
        n = int(opt.id.split("-")[1])
        return next((s for s in self.state.sources or () if s.n == n), None)

    def current_url(self) -> str:
        raise NotImplementedError

    def on_focus(self) -> None:
        if self.highlighted is None:
            self.action_first()

    def action_open(self) -> None:
        url = self.current_url()
        if url:
            self.post_message(OpenUrlRequested(url))
        else:
            self.notify("This item has no web address.", severity="warning")

    def action_copy_url(self) -> None:
        url = self.current_url()
        if url:
            self.post_message(CopyTextRequested(url, "the address"))

    def action_preview(self) -> None:
        self.action_select()


class SourceList(_ItemList):
    def current_source(self) -> ev.Source | None:
        return self._highlighted_source("src")

    def current_url(self) -> str:
        s = self.current_source()
        return s.url if s else ""

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        s = self.current_source()
        if s is not None and self.state is not None:
            self.post_message(PreviewRequested(self.state, source=s))


class PlainList(_ItemList):
    def current_local(self) -> ev.Source | None:
        return self._highlighted_source("loc")

    def current_result(self) -> ev.SearchResult | None:
        opt = self.highlighted_option
        if opt is None or self.state is None or not (opt.id or "").startswith("res-"):
            return None
        i = int(opt.id.split("-")[1])
        return self.state.plain[i] if i < len(self.state.plain) else None

    def current_url(self) -> str:
        r = self.current_result()
        if r is not None:
            return r.url
        local = self.current_local()
        return local.url if local is not None else ""

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.state is None:
            return
        r = self.current_result()
        if r is not None:
            self.post_message(PreviewRequested(self.state, result=r))
        elif (local := self.current_local()) is not None:
            self.post_message(PreviewRequested(self.state, source=local))


def source_option(s: ev.Source, count: int, phase: str, weak: int = 0, matched: bool = False) -> Option:
    """`count`: how often the answer cites it; `weak`: how many of those scored as weakly
    supported (the source may not say what the sentence claims); `matched`: the answer cites
    nothing and copilot matched one of its sentences to this source."""
    cited = count > 0
    number = Content.styled(f"[{s.n}] ", "bold $text-success" if cited else "bold $text-muted")
    title = Content.styled(_one_line(s.label, 200), "bold" if cited else "")
    times = f" ×{count}" if count > 1 else ""
    if cited and weak >= count:
        number = Content.styled(f"[{s.n}] ", "bold $text-warning")
        state = Content.styled(f"? cited{times}, weak support", "$text-warning")
    elif cited and weak:
        state = Content.assemble((f"✓ cited{times}", "$text-success"), (f" ({weak} weak)", "$text-warning"))
    elif cited:
        state = Content.styled(f"✓ cited{times}", "$text-success")
    elif phase == DONE and matched:
        state = Content.styled("≈ not cited; copilot matched a sentence to it", "$text-warning")
    elif phase == DONE:
        state = Content.styled("not cited", "$text-warning")
    elif phase == ASKING:
        state = Content.styled("…", "$text-muted")
    else:
        state = Content.styled("given to the model", "$text-muted")
    meta = Content.assemble(state, (f" · {_one_line(where(s), 60)} · {kind_label(s.kind)}", "$text-muted"))
    text = Content.styled(glimpse(s.text), "italic $text-muted")
    return Option(Content("\n").join([number + title, meta, text]), id=f"src-{s.n}")


def invalid_option(n: int, n_sources: int) -> Option:
    text = Content.assemble((f"[{n}✗] ", "bold $text-error"),
                            (f"cited, but there is no source {n} (only {n_sources})", "$text-error"))
    return Option(text, id=f"bad-{n}")


def plain_option(i: int, mark, in_flight: bool, weak: frozenset[int] = frozenset()) -> Option:
    r = mark.result
    if mark.state == CITED:
        glyph, style = "✓", "$text-success"
        words = "cited " + " ".join(f"[{n}{'?' if n in weak else ''}]" for n in mark.numbers)
        if any(n in weak for n in mark.numbers):
            words += ", weak support"
    elif mark.state == IGNORED:
        glyph, style = "○", "$text-warning"
        words = "given as " + " ".join(f"[{n}]" for n in mark.numbers) + ", not cited"
    elif mark.state == PENDING:
        glyph, style = "…" if in_flight else "·", "$text-muted"
        if mark.numbers:
            words = "read as " + " ".join(f"[{n}]" for n in mark.numbers)
        else:
            words = "waiting" if in_flight else "not read"
    else:
        glyph, style = "·", "$text-muted"
        words = "not read"
    head = Content.assemble((f"{r.rank:>2}. ", "bold"), (f"{glyph} ", f"bold {style}"),
                            (_one_line(r.title, 200) or _host_path(r.url), "bold" if mark.state == CITED else ""))
    meta = Content.assemble((words, style), (f" · {_host_path(r.url)}", "$text-muted"))
    lines = [head, meta]
    if r.snippet:
        lines.append(Content.styled(_one_line(r.snippet, GLIMPSE_CHARS), "italic $text-muted"))
    return Option(Content("\n").join(lines), id=f"res-{i}")


def local_option(s: ev.Source, cited: bool, phase: str) -> Option:
    """A hit of the local index (it became source n)."""
    if cited:
        glyph, style, words = "✓", "$text-success", f"cited [{s.n}]"
    elif phase == DONE:
        glyph, style, words = "○", "$text-warning", f"given as [{s.n}], not cited"
    else:
        glyph, style, words = "…" if phase == ASKING else "·", "$text-muted", f"read as [{s.n}]"
    head = Content.assemble((f"{glyph} ", f"bold {style}"), (_one_line(s.label, 200), "bold" if cited else ""))
    meta = Content.assemble((words, style), (f" · {_one_line(where(s), 70)} · {kind_label(s.kind)}", "$text-muted"))
    return Option(Content("\n").join([head, meta]), id=f"loc-{s.n}")


def _placeholder(text: str) -> Option:
    return Option(Content.styled(text, "italic $text-muted"), id="placeholder", disabled=True)


class ComparisonPanel(Vertical):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state: ExchangeState | None = None
        self._drawn: tuple | None = None
        self.sources_title = Static("", classes="section-title", id="sources-title")
        self.sources = SourceList(id="sources")
        self.plain_title = Static("", classes="section-title", id="plain-title")
        self.plain = PlainList(id="plain")

    def compose(self):
        yield self.sources_title
        yield self.sources
        yield self.plain_title
        yield self.plain

    def on_mount(self) -> None:
        self.redraw(force=True)

    def show(self, state: ExchangeState | None) -> None:
        self.state = state
        self.sources.state = state
        self.plain.state = state
        self.redraw(force=True)

    def _signature(self, s: ExchangeState | None) -> tuple:
        """What the lists depend on. While the answer streams, which sources are cited (not how
        often): rebuilding the lists re-lays out the screen, so not at every citation."""
        if s is None:
            return (None,)
        cites = s.citations if s.sources is not None else []
        marks: tuple = (frozenset((c.n, c.valid) for c in cites),)
        if not s.in_flight:
            marks = (tuple(sorted(citation_counts(cites).items())),
                     tuple((c.n, c.valid, c.supported) for c in cites))
        return (id(s), s.phase, s.searched, len(s.plain), None if s.sources is None else len(s.sources), marks)

    def redraw(self, force: bool = False) -> None:
        """Rebuild both lists when what they show changed (cheap to call on every redraw)."""
        sig = self._signature(self.state)
        if not force and sig == self._drawn:
            return
        self._drawn = sig
        self._draw_sources()
        self._draw_plain()

    def _keep_highlight(self, olist: OptionList, options: list[Option]) -> None:
        old = olist.highlighted_option.id if olist.highlighted_option is not None else None
        olist.set_options(options)
        if old is not None:
            with contextlib.suppress(OptionDoesNotExist):
                olist.highlighted = olist.get_option_index(old)

    def _draw_sources(self) -> None:
        s = self.state
        title = Content.styled("Sources", "bold")
        if s is None:
            self.sources_title.update(title)
            self._keep_highlight(self.sources, [_placeholder(
                "The numbered sources the answer was given appear here, each marked when it is cited.")])
            return
        if s.sources is None:
            note = "…" if s.in_flight else "none"
            self.sources_title.update(title + Content.styled(f"  {note}", "$text-muted"))
            waiting = "Waiting for the pages to be read…"
            self._keep_highlight(self.sources, [_placeholder(
                waiting if s.in_flight else "No sources: the answer did not get that far.")])
            return
        counts = citation_counts(c for c in s.citations if c.valid)
        weak = citation_counts(c for c in s.citations if c.valid and c.supported is False)
        invalid = invalid_numbers(s.citations)
        cited = sum(1 for src in s.sources if counts.get(src.n))
        summary = f"  {len(s.sources)} · {cited} cited"
        if weak:
            summary += f" · {len(weak)} weak"
        if invalid:
            summary += f" · {len(invalid)} invalid"
        self.sources_title.update(title + Content.styled(summary, "$text-muted"))
        matched = {m.n for m in s.answer.matched} if s.answer is not None else set()
        options = [source_option(src, counts.get(src.n, 0), s.phase, weak.get(src.n, 0), src.n in matched)
                   for src in s.sources]
        options += [invalid_option(n, len(s.sources)) for n in invalid]
        if not options:
            options = [_placeholder("No sources: this answer comes from the model alone, without citations.")]
        self._keep_highlight(self.sources, options)

    def _draw_plain(self) -> None:
        """The engine's results in its order; then the local index's hits (the engine hands the
        local hits it found to the model as sources, so those are what a local search gave)."""
        s = self.state
        title = Content.styled("Plain search", "bold")
        if s is None:
            self.plain_title.update(title)
            self._keep_highlight(self.plain, [_placeholder(
                "What a plain web search returns for your question, in the engine's order.")])
            return
        cited = {c.n for c in s.citations if c.valid}
        local = [src for src in s.sources or () if src.kind.startswith("local")]
        options: list[Option] = []
        if s.searched:
            marks = plain_marks(s.plain, s.sources, cited, finished=s.phase == DONE)
            n_cited = sum(1 for m in marks if m.state == CITED)
            engine = ENGINE_LABELS.get(s.engine, s.engine) or "no engine"
            note = f"  {engine} · {len(marks)} results · {n_cited} cited"
            weak = frozenset(c.n for c in s.citations if c.valid and c.supported is False)
            options = [plain_option(i, m, s.in_flight, weak) for i, m in enumerate(marks)]
            if not options:
                options = [_placeholder("The web search returned nothing.")]
        elif s.in_flight and s.scope != "local":
            note = "  searching…"
            options = [_placeholder("Searching…")]
        else:
            note = "  —"
            if not local:
                options = [_placeholder("Web search was off for this question." if s.scope == "local"
                                        else "No search was made.")]
        if local:
            note += f" · {len(local)} local"
            options.append(Option(Content.styled("Local index", "bold $text-accent"), id="local-head",
                                  disabled=True))
            options += [local_option(src, src.n in cited, s.phase) for src in local]
        self.plain_title.update(title + Content.styled(note, "$text-muted"))
        self._keep_highlight(self.plain, options)

    def focus_source(self, n: int) -> bool:
        """Highlight source n (or its invalid-citation line) and focus the list. False when the
        answer has no source n."""
        for prefix in ("src", "bad"):
            try:
                index = self.sources.get_option_index(f"{prefix}-{n}")
            except OptionDoesNotExist:
                continue
            self.sources.highlighted = index
            self.sources.focus()
            self.sources.scroll_to_highlight(top=True)
            return prefix == "src"
        return False
