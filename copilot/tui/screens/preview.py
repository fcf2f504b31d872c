"""A source's passage (the text the model was given), scrolled to the lines the answer's claims
most likely came from; or a plain result's snippet. `o` opens the page, `c` copies the text."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from copilot import events as ev
from copilot.safetext import clean
from copilot.tui.answer_text import best_lines, cited_claims
from copilot.tui.marks import kind_label, url_key, where
from copilot.tui.state import ExchangeState
from copilot.tui.widgets.comparison import CopyTextRequested, OpenUrlRequested


def split_passage(text: str, highlight: tuple[int, int] | None) -> tuple[str, str, str]:
    """The passage as (before, matched lines, after)."""
    lines = clean(text).splitlines() or [""]
    if not highlight:
        return "\n".join(lines), "", ""
    first, last = highlight
    return "\n".join(lines[:first]), "\n".join(lines[first:last + 1]), "\n".join(lines[last + 1:])


def claim_line(claim: str, c) -> Content:
    quoted = claim if len(claim) <= 220 else claim[:219].rstrip() + "…"
    line = Content.assemble(("“", "$text-muted"), (quoted, "italic"), ("”", "$text-muted"))
    if c.supported is False:
        line += Content.styled(f"  weak support ({c.support:.2f}): the passage may not say this", "$text-warning")
    elif c.supported:
        line += Content.styled(f"  supported ({c.support:.2f})", "$text-success")
    return line


class PreviewScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("o", "open", "Open in browser"),
        Binding("c", "copy", "Copy text"),
    ]

    def __init__(self, state: ExchangeState, source: ev.Source | None = None,
                 result: ev.SearchResult | None = None) -> None:
        super().__init__()
        self.state, self.source, self.result = state, source, result
        if source is None and result is not None:
            key = url_key(result.url)
            self.source = next((s for s in state.sources or () if key in
                                {url_key(s.url), url_key(s.canonical_url or "")}), None)
        self.highlight: tuple[int, int] | None = None
        self.claims: list[str] = []  # what the answer cites the source for

    @property
    def url(self) -> str:
        if self.source is not None:
            return self.source.url
        return self.result.url if self.result else ""

    @property
    def body_text(self) -> str:
        if self.source is not None:
            return self.source.text
        return self.result.snippet if self.result else ""

    def compose(self):
        s, r = self.source, self.result
        with Vertical(id="preview-box"):
            if s is not None:
                title = Content.assemble((f"[{s.n}] ", "bold $text-accent"), (clean(s.label), "bold"))
                meta = f"{where(s)} · {kind_label(s.kind)}"
            else:
                assert r is not None
                title = Content.assemble((f"{r.rank}. ", "bold"), (clean(r.title), "bold"))
                meta = "plain search result — not read for the answer"
            yield Static(title, classes="preview-title")
            yield Static(Content.styled(clean(meta), "$text-muted"), classes="preview-meta")
            if self.url:
                yield Static(Content.styled(clean(self.url), "$text-muted"), classes="preview-url")
            if s is not None:
                found = cited_claims(self.state.text, self.state.citations, s.n)
                self.claims = [claim for claim, _ in found]
                if found:
                    lines = [Content.styled("The answer cites it for:", "bold")]
                    lines += [claim_line(claim, c) for claim, c in found[:4]]
                    yield Static(Content("\n").join(lines), classes="preview-claims")
                else:
                    yield Static(Content.styled("The answer does not cite this source.", "$text-warning"),
                                 classes="preview-claims")
                self.highlight = best_lines(s.text, self.claims)
            before, match, after = split_passage(self.body_text, self.highlight)
            with VerticalScroll(id="preview-body"):
                if before:
                    yield Static(Content(before), classes="passage")
                if match:
                    yield Static(Content(match), classes="passage -match", id="preview-match")
                if after:
                    yield Static(Content(after), classes="passage")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one("#preview-body", VerticalScroll)
        body.focus()
        if self.highlight:
            match = self.query_one("#preview-match", Static)
            self.call_after_refresh(body.scroll_to_widget, match, animate=False, top=True)

    def action_open(self) -> None:
        if self.url:
            self.app.post_message(OpenUrlRequested(self.url))

    def action_copy(self) -> None:
        self.app.post_message(CopyTextRequested(self.body_text, "the passage" if self.source else "the snippet"))
