"""Keys and what the panels mean."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("Enter", "ask the question typed below"),
    ("Esc", "stop the answer being written (what arrived is kept)"),
    ("Ctrl+N", "new chat"),
    ("Ctrl+R", "history: resume, delete (d d), export to Markdown (e)"),
    ("Ctrl+T", "scope: web → local → both"),
    ("F2", "choose the model"),
    ("Ctrl+Y", "copy the selected answer"),
    ("Ctrl+O", "copy a code block of the selected answer"),
    ("Ctrl+P", "command palette: every action, searchable"),
    ("Tab", "move between the question, the conversation and the two lists"),
    ("F1", "this help"),
    ("Ctrl+Q", "quit"),
]
CONVERSATION_KEYS = [
    ("[ ]", "select the previous / next answer (the panel follows; past the first, older ones unfold)"),
    ("1…9", "focus that source of the selected answer"),
    ("y / b", "copy the answer / a code block"),
]
LIST_KEYS = [
    ("Enter", "preview: the passage the model was given, scrolled to what the answer cites"),
    ("o", "open the page in your browser (http and https only)"),
    ("c", "copy the address"),
]
MARKS = [
    ("✓ cited [n]", "the answer cites this result, as source n"),
    ("○ given, not cited", "the model had it, and did not use it"),
    ("· not read", "the search ranked it, but it was not among the sources"),
    ("[n?]", "cited, but the source may not say what the sentence claims (weak support)"),
    ("[n✗]", "the answer cites a source that does not exist"),
    ("≈ matched", "the answer cites nothing; copilot found one of its sentences in this source"),
]


def _table(title: str, rows: list[tuple[str, str]]) -> Content:
    width = max(len(k) for k, _ in rows) + 2
    lines = [Content.styled(title, "bold $text-accent")]
    lines += [Content.assemble((k.ljust(width), "bold"), v) for k, v in rows]
    return Content("\n").join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close")]

    def compose(self):
        with Vertical(id="help-box"):
            yield Static(Content.styled("copilot — help", "bold"), classes="box-title")
            with VerticalScroll():
                yield Static(Content("\n\n").join([
                    Content("Ask a question: the answer streams on the left and cites its sources as [n]. "
                            "On the right: the sources it was given, and what a plain search returned, "
                            "so you can judge the answer against it. Click a [n] or press its number to "
                            "focus that source."),
                    _table("Keys", KEYS),
                    _table("In the conversation", CONVERSATION_KEYS),
                    _table("In the Sources and Plain search lists", LIST_KEYS),
                    _table("Marks", MARKS),
                ]))
