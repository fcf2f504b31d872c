"""Past conversations: Enter resumes one, `d` deletes (press twice), `e` exports it to Markdown."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from copilot.history import ConversationInfo, History


def export_path(export_dir: Path, info: ConversationInfo) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", info.title.lower()).strip("-")[:40] or "conversation"
    return export_dir / f"{time.strftime('%Y%m%d', time.localtime(info.created_at))}-{info.id}-{slug}.md"


def write_export(history: History, info: ConversationInfo, export_dir: Path) -> Path:
    """Write the conversation's Markdown (mode 0600: it holds the user's questions). Blocking."""
    text = history.export_markdown(info.id)
    export_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = export_path(export_dir, info)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def conversation_option(info: ConversationInfo, current: bool) -> Option:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated_at))
    n = f"{info.messages} question{'s' if info.messages != 1 else ''}"
    head = Content.styled(info.title, "bold")
    if current:
        head += Content.styled("  (open)", "$text-accent")
    return Option(Content("\n").join([head, Content.styled(f"{when} · {n}", "$text-muted")]), id=f"conv-{info.id}")


class ConversationDeleted(Message):
    """The conversation open in the app was deleted from the history."""

    def __init__(self, conversation_id: int) -> None:
        super().__init__()
        self.conversation_id = conversation_id


class HistoryScreen(ModalScreen[int | None]):
    """Dismissed with the id of the conversation to resume, or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("d,delete", "delete", "Delete"),
        Binding("e", "export", "Export Markdown"),
    ]

    def __init__(self, history: History, export_dir: Path, current: int | None = None) -> None:
        super().__init__()
        self.history = history
        self.export_dir = export_dir
        self.current = current
        self.items: list[ConversationInfo] = []
        self._armed: int | None = None  # conversation id waiting for the second `d`

    def compose(self):
        with Vertical(id="history-box"):
            yield Static(Content.styled("History", "bold"), classes="box-title")
            yield OptionList(id="history-list")
            yield Static("", id="history-note", classes="box-note")
        yield Footer()

    async def on_mount(self) -> None:
        await self.reload()
        self.query_one("#history-list", OptionList).focus()

    async def reload(self) -> None:
        self.items = await asyncio.to_thread(self.history.list_conversations)
        olist = self.query_one("#history-list", OptionList)
        old = olist.highlighted
        if self.items:
            olist.set_options([conversation_option(c, c.id == self.current) for c in self.items])
            olist.highlighted = min(old or 0, len(self.items) - 1)
        else:
            olist.set_options([Option(Content.styled("No conversations yet.", "italic $text-muted"),
                                      disabled=True)])
        self._note("Enter resumes · d deletes · e exports to Markdown")

    def _note(self, text: str, style: str = "$text-muted") -> None:
        self.query_one("#history-note", Static).update(Content.styled(text, style))

    def selected(self) -> ConversationInfo | None:
        olist = self.query_one("#history-list", OptionList)
        if olist.highlighted is None or not self.items:
            return None
        return self.items[olist.highlighted]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        info = self.selected()
        if info is not None:
            self.dismiss(info.id)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._armed = None

    async def action_delete(self) -> None:
        info = self.selected()
        if info is None:
            return
        if self._armed != info.id:
            self._armed = info.id
            self._note(f"Press d again to delete “{info.title}”.", "$text-warning")
            return
        self._armed = None
        await asyncio.to_thread(self.history.delete_conversation, info.id)
        if info.id == self.current:
            self.current = None
            self.app.post_message(ConversationDeleted(info.id))
        await self.reload()
        self._note(f"Deleted “{info.title}”.", "$text-success")

    async def action_export(self) -> None:
        info = self.selected()
        if info is None:
            return
        try:
            path = await asyncio.to_thread(write_export, self.history, info, self.export_dir)
        except OSError as e:
            self._note(f"Export failed: {e.strerror or e}", "$text-error")
            return
        self._note(f"Exported to {path}", "$text-success")
        self.notify(f"Exported to {path}", title="History")
