"""Pick the chat model from the ones Ollama has (embedding models are left out)."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from copilot.errors import CopilotError

AUTO = ""  # the dismiss value for "let copilot pick"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class ModelScreen(ModalScreen[str | None]):
    """Dismissed with a model name, AUTO, or None (cancelled)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, list_models, settings, current: str) -> None:
        super().__init__()
        self.list_models = list_models
        self.settings = settings
        self.current = current
        self.names: list[str] = []

    def compose(self):
        with Vertical(id="models-box"):
            yield Static(Content.styled("Model", "bold"), classes="box-title")
            yield OptionList(Option(Content.styled("Asking Ollama…", "italic $text-muted"), disabled=True),
                             id="models-list")
            yield Static("", id="models-note", classes="box-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#models-list", OptionList).focus()
        self.run_worker(self._load, exclusive=True)

    async def _load(self) -> None:
        olist = self.query_one("#models-list", OptionList)
        note = self.query_one("#models-note", Static)
        try:
            models = await self.list_models(self.settings)
        except CopilotError as e:
            olist.set_options([Option(Content.styled("Automatic (copilot picks an installed chat model)", ""),
                                      id="auto")])
            self.names = [AUTO]
            note.update(Content.styled(e.one_line(), "$text-error"))
            return
        chat = [m for m in models if not m.is_embedding]
        self.names = [AUTO] + [m.name for m in chat]
        options = [Option(Content.assemble(("Automatic", "bold"),
                                           (" — copilot picks (coding models first)", "$text-muted")), id="auto")]
        for m in chat:
            line = Content.assemble((m.name, "bold" if m.name == self.current else ""),
                                    (f"  {m.parameter_size} · {m.family} · {_size(m.size)}", "$text-muted"))
            if m.name == self.current:
                line += Content.styled("  (in use)", "$text-accent")
            options.append(Option(line, id=f"m-{len(options)}"))
        olist.set_options(options)
        olist.highlighted = self.names.index(self.current) if self.current in self.names else 0
        if not chat:
            note.update(Content.styled("Ollama has no chat model: run `ollama pull qwen2.5-coder:1.5b`.",
                                       "$text-warning"))
        else:
            note.update(Content.styled(f"{len(chat)} chat models · Enter picks", "$text-muted"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.names and event.option_index < len(self.names):
            self.dismiss(self.names[event.option_index])
