"""A short list to choose one item from (which code block to copy)."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ChooseScreen(ModalScreen[int | None]):
    """Dismissed with the chosen index, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, title: str, items: list[Content]) -> None:
        super().__init__()
        self.title_text = title
        self.items = items

    def compose(self):
        with Vertical(id="choose-box"):
            yield Static(Content.styled(self.title_text, "bold"), classes="box-title")
            yield OptionList(*[Option(item) for item in self.items], id="choose-list")

    def on_mount(self) -> None:
        self.query_one("#choose-list", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option_index)
