"""The conversation: each question with its streaming answer, notes and a footer of citations.

One exchange is "selected" at a time (the latest, unless the user picks another); the comparison
panel shows the selected one's sources and plain results. Keys while the conversation has focus:
`[` / `]` select the previous / next exchange, `1`…`9` focus that source, `y` copies the answer,
`b` a code block.

Only the last `MOUNTED` exchanges are widgets. Each mounted answer keeps a Markdown widget tree
and Textual's caches for it (1.5-2 MiB an answer), so a long conversation grew the app without
bound; older exchanges fold into one line at the top and are mounted again when the user asks
for them (a click on the line, or `[` at the first exchange shown).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.style import Style
from textual.widgets import Static

from copilot.tui.answer_text import parse_cite_href
from copilot.tui.marks import citation_counts
from copilot.tui.state import ASKING, CANCELLED, FAILED, ExchangeState, format_timings
from copilot.tui.widgets.answer import AnswerView

WELCOME = (
    "Ask a developer question below. The answer streams here, citing its sources as [n]; on the "
    "right you see those sources and what a plain web search returned, each result marked when "
    "the answer cites it.\n\n"
    "Enter asks · Esc stops an answer · Ctrl+P lists every action · F1 help"
)


class CitationChosen(Message):
    """The user picked citation [n] of an exchange."""

    def __init__(self, state: ExchangeState, n: int) -> None:
        super().__init__()
        self.state = state
        self.n = n


class ExchangeSelected(Message):
    def __init__(self, state: ExchangeState) -> None:
        super().__init__()
        self.state = state


class CopyRequested(Message):
    """Copy the answer (`code=False`) or one of its code blocks."""

    def __init__(self, state: ExchangeState, code: bool) -> None:
        super().__init__()
        self.state = state
        self.code = code


def _clickable(text: str, style: str, action: str) -> Content:
    return Content.styled(text, style).stylize(Style.from_meta({"@click": action}))


class Part(Static):
    """A line of an exchange, redrawn only when its content changes (an update re-lays out the
    whole conversation) and hidden while empty."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.drawn = Content("")
        self.display = False

    def show_content(self, content: Content) -> None:
        if content != self.drawn or content.spans != self.drawn.spans:
            self.drawn = content
            self.update(content)
            self.display = bool(content.plain)


class ExchangeFooter(Part):
    """Citations as clickable chips, then the model, the time, and copy actions."""

    def __init__(self, exchange: Exchange, **kwargs) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange

    def action_cite(self, n: int) -> None:
        self.post_message(CitationChosen(self.exchange.state, n))

    def action_copy(self, code: bool = False) -> None:
        self.post_message(CopyRequested(self.exchange.state, code))


class Exchange(Vertical):
    selected = reactive(False)

    def __init__(self, state: ExchangeState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.question = Static(Content.assemble(("❯ ", "bold $accent"), state.question), classes="question")
        self.progress = Part(classes="progress")
        self.answer = AnswerView(state, classes="answer")
        self.notes = Part(classes="notes")
        self.footer = ExchangeFooter(self, classes="footer")

    def compose(self):
        yield self.question
        yield self.progress
        yield self.answer
        yield self.notes
        yield self.footer

    def on_mount(self) -> None:
        self.update_parts()

    def watch_selected(self, value: bool) -> None:
        self.set_class(value, "-selected")

    def on_click(self) -> None:
        self.query_ancestor(Conversation).select(self)

    def on_markdown_link_clicked(self, event) -> None:
        event.stop()
        n = parse_cite_href(event.href)
        if n is not None:
            self.post_message(CitationChosen(self.state, n))
        else:
            self.app.post_message(LinkOpenRequested(event.href))

    # --- drawing -------------------------------------------------------------------------------

    def text_changed(self) -> None:
        self.answer.changed()

    def update_parts(self) -> None:
        """Redraw the progress line, notes and footer (each only when its text changed: an update
        re-lays out the conversation)."""
        s = self.state
        progress = Content.styled(s.status, "italic $text-muted") if s.in_flight and s.status else Content("")
        self.progress.show_content(progress)
        self.notes.show_content(self._notes())
        self.footer.show_content(self._footer())
        self.set_class(s.phase == FAILED, "-failed")
        self.set_class(s.in_flight, "-asking")

    def _notes(self) -> Content:
        s = self.state
        lines: list[Content] = []
        if s.model_reason:
            lines.append(Content.styled(s.model_reason, "$text-muted"))
        for w in s.warnings:
            lines.append(Content.assemble(("⚠ ", "bold $text-warning"), (w, "$text-warning")))
        if s.phase == CANCELLED:
            lines.append(Content.styled("■ stopped — what arrived is kept", "bold $text-warning"))
        if s.phase == FAILED and s.error:
            lines.append(Content.assemble(("✗ ", "bold $text-error"), (s.error, "$text-error")))
        return Content("\n").join(lines)

    def _footer(self) -> Content:
        s = self.state
        if s.phase == ASKING and not s.text:
            return Content("")
        parts: list[Content] = []
        counts = citation_counts(s.citations)
        valid = {c.n for c in s.citations if c.valid}
        backed = {c.n for c in s.citations if c.valid and c.supported is not False}
        for n in sorted(counts):
            if n not in valid:
                parts.append(_clickable(f"[{n}✗]", "bold $text-error strike", f"cite({n})"))
            elif n not in backed:  # every use of it scored weak
                parts.append(_clickable(f"[{n}?]", "bold $text-warning", f"cite({n})"))
            else:
                parts.append(_clickable(f"[{n}]", "bold $text-accent", f"cite({n})"))
            parts.append(Content(" "))
        if s.answer is not None or not s.in_flight:
            meta = [m for m in (s.model, format_timings(s.answer.timings) if s.answer else "") if m]
            if meta:
                parts.append(Content.styled(("· " if counts else "") + " · ".join(meta) + "  ", "$text-muted"))
            if s.text:
                parts.append(_clickable("copy", "underline $text-primary", "copy(False)"))
                parts.append(Content("  "))
                from copilot.tui.answer_text import code_blocks

                if code_blocks(s.text):
                    parts.append(_clickable("copy code", "underline $text-primary", "copy(True)"))
        return Content("").join(parts)


class LinkOpenRequested(Message):
    """A link in an answer (not a citation) was clicked."""

    def __init__(self, href: str) -> None:
        super().__init__()
        self.href = href


MOUNTED = 4  # exchanges kept as widgets; older ones fold away


class EarlierExchanges(Static):
    """The line that stands for the exchanges folded away above."""

    def __init__(self, count: int) -> None:
        what = "1 earlier question" if count == 1 else f"{count} earlier questions"
        super().__init__(Content.assemble(
            (f"▲ {what} in this chat", "bold"),
            (f" — click, or press [ at the first one below, to show {'it' if count == 1 else 'them'}",
             "$text-muted")), classes="earlier")

    async def on_click(self) -> None:
        await self.query_ancestor(Conversation).unfold()


class Conversation(VerticalScroll, can_focus=True):
    BINDINGS = [
        Binding("left_square_bracket", "select_previous", "Prev answer", show=False),
        Binding("right_square_bracket", "select_next", "Next answer", show=False),
        Binding("y", "copy(False)", "Copy answer", show=False),
        Binding("b", "copy(True)", "Copy code", show=False),
        *[Binding(str(n), f"cite({n})", f"Source {n}", show=False) for n in range(1, 10)],
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.follow = True  # keep the newest text in view (until the user scrolls up)
        self.folded: list[ExchangeState] = []  # the earlier exchanges that are not mounted, oldest first

    def compose(self):
        yield Static(Content(WELCOME), classes="welcome")

    @property
    def exchanges(self) -> list[Exchange]:
        return list(self.query_children(Exchange))

    @property
    def selected(self) -> Exchange | None:
        return next((e for e in self.exchanges if e.selected), None)

    def exchange_for(self, state: ExchangeState) -> Exchange | None:
        return next((e for e in self.exchanges if e.state is state), None)

    async def add(self, state: ExchangeState, *, follow: bool = True) -> Exchange:
        for w in self.query(".welcome"):
            await w.remove()
        exchange = Exchange(state)
        await self.mount(exchange)
        await self._fold()
        self.select(exchange)
        if follow:
            self.follow = True
            self.call_after_refresh(self.scroll_end, animate=False)
        return exchange

    async def load(self, states: list[ExchangeState]) -> Exchange | None:
        """Show a whole conversation (a resumed one): the last `MOUNTED` exchanges mounted, the
        others folded; returns the last exchange."""
        if not states:
            await self.clear_all()
            return None
        await self._reset()
        self.folded = list(states[:-MOUNTED])
        await self.mount_all([Exchange(s) for s in states[-MOUNTED:]])
        await self._show_folded()
        return self.exchanges[-1]

    async def _fold(self) -> None:
        """Fold all but the last `MOUNTED` exchanges away."""
        mounted = self.exchanges
        if len(mounted) <= MOUNTED:
            return
        old = mounted[:-MOUNTED]
        self.folded.extend(e.state for e in old)
        await self.remove_children(old)
        await self._show_folded()

    async def _show_folded(self) -> None:
        await self.remove_children(EarlierExchanges)
        if self.folded:
            await self.mount(EarlierExchanges(len(self.folded)), before=0)

    async def unfold(self) -> None:
        """Mount the folded exchanges again, above the others (the next question folds them
        again)."""
        if not self.folded:
            return
        states, self.folded = self.folded, []
        first = self.exchanges[0] if self.exchanges else None
        await self.mount_all([Exchange(s) for s in states], before=first)
        await self._show_folded()

    def on_answer_view_drawn(self, event: AnswerView.Drawn) -> None:
        """Follow a growing answer: once it is taller than the view, anchor the view to the
        bottom (Textual releases the anchor when the user scrolls up, and restores it when they
        scroll back down). Not before: an anchored view shorter than its content would sit at
        the bottom of the screen."""
        event.stop()
        if not self.is_anchored:
            self.call_after_refresh(self._anchor_if_tall)

    def _anchor_if_tall(self) -> None:
        if self.follow and not self.is_anchored and self.max_scroll_y > 0:
            self.anchor()

    def on_mouse_scroll_up(self) -> None:
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    async def clear_all(self) -> None:
        await self._reset()
        await self.mount(Static(Content(WELCOME), classes="welcome"))

    async def _reset(self) -> None:
        """Nothing mounted, nothing folded, following the end."""
        self.anchor(False)
        self.follow = True
        self.folded = []
        await self.remove_children()

    def select(self, exchange: Exchange | None) -> None:
        changed = False
        for e in self.exchanges:
            if e.selected != (e is exchange):
                e.selected = e is exchange
                changed = True
        if exchange is not None and changed:
            self.post_message(ExchangeSelected(exchange.state))

    async def _step(self, delta: int) -> None:
        items = self.exchanges
        if not items:
            return
        current = self.selected
        i = items.index(current) if current in items else len(items) - 1
        if i + delta < 0 and self.folded:
            shown = len(self.folded)
            await self.unfold()
            items = self.exchanges
            i += shown
        target = items[max(0, min(len(items) - 1, i + delta))]
        self.select(target)
        self.scroll_to_widget(target, animate=False, top=True)

    async def action_select_previous(self) -> None:
        await self._step(-1)

    async def action_select_next(self) -> None:
        await self._step(1)

    def action_cite(self, n: int) -> None:
        if (e := self.selected) is not None:
            self.post_message(CitationChosen(e.state, n))

    def action_copy(self, code: bool) -> None:
        if (e := self.selected) is not None:
            self.post_message(CopyRequested(e.state, code))
