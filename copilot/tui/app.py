"""`copilot` with no arguments: ask, read the answer as it streams, and judge it against what a
plain search shows, side by side.

The app renders the engine's events (copilot.engine.ask) and nothing else of the pipeline. At
start it imports only Textual and light modules of ours; the engine's heavy dependencies (httpx,
ollama, trafilatura, …) are imported by a background thread after the first frame, so the input
is usable at once and the first question costs no more than later ones.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Footer, Input

from copilot.errors import CopilotError
from copilot.tui.memory import release_free_memory, tune_malloc
from copilot.tui.services import Services
from copilot.tui.state import (
    ERROR_MODEL_STATES,
    MODEL_ERROR,
    MODEL_MISSING,
    MODEL_OFFLINE,
    MODEL_OK,
    SCOPES,
    ExchangeState,
    search_health,
)
from copilot.tui.widgets.ask import AskInput
from copilot.tui.widgets.comparison import (
    ComparisonPanel,
    CopyTextRequested,
    OpenUrlRequested,
    PreviewRequested,
)
from copilot.tui.widgets.conversation import (
    CitationChosen,
    Conversation,
    CopyRequested,
    Exchange,
    ExchangeSelected,
    LinkOpenRequested,
)
from copilot.tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from copilot.config import Settings
    from copilot.history import History

PANEL_REFRESH = 0.1  # seconds between comparison-panel refreshes while an answer streams
RECHECK_OLLAMA = 15.0  # seconds between checks while Ollama is unreachable (the status dot recovers)
# Garbage collection: Textual leaves many small reference cycles behind while it redraws, and a full
# collection over a running app's objects pauses it for 50-200 ms. So the objects that live for the
# whole session (modules, the base widgets) are frozen after start-up, full collections are held
# off while an answer streams (young collections still run), and one runs when the answer is done.
GC_STREAMING_THRESHOLDS = (700, 10, 1_000_000_000)
GC_AFTER_ANSWER = 0.5  # seconds after the final redraw


@dataclass
class Chat:
    """The conversation on screen: its id in the history once its first message is saved. Each
    question keeps the Chat it was asked in, so an answer saved after "new chat" still lands in
    its own conversation."""

    id: int | None = None


class CopilotApp(App[None]):
    CSS_PATH = "copilot.tcss"
    TITLE = "copilot"
    BINDINGS = [
        Binding("escape", "stop", "Stop", show=False),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+r", "history", "History"),
        Binding("ctrl+t", "cycle_scope", "Scope"),
        Binding("f2", "pick_model", "Model"),
        Binding("ctrl+y", "copy_answer", "Copy"),
        Binding("ctrl+o", "copy_code", "Code"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self, settings: Settings | None = None, services: Services | None = None, *,
                 cursor_blink: bool = True) -> None:
        super().__init__()
        self._reload_settings = settings is None
        if settings is None:
            from copilot.config import load_settings

            settings = load_settings()
        self.settings = settings
        self.services = services or Services()
        self.cursor_blink = cursor_blink
        self.model = settings.model  # "" = copilot picks
        self.scope = "both" if settings.engines else "local"  # the engine's own default
        self.history: History | None = None
        self.history_error: str | None = None
        self.chat = Chat()  # the conversation on screen
        self.ready_at: float | None = None  # perf_counter() when the input was first drawn
        self.warm_at: float | None = None  # perf_counter() when the background imports finished
        self.current: ExchangeState | None = None  # the question in flight
        self.last_input_at = float("-inf")  # time.monotonic() of the last key or scroll (answers yield to it)
        self._ask_worker = None
        self._panel_timer = None
        self._save_lock = asyncio.Lock()
        self._background_done = asyncio.Event()  # the history is open (or failed to open)
        self._gc_defaults = gc.get_threshold()
        self._gc_timer = None
        self._recheck_timer = None
        self.conversation = Conversation(id="conversation")
        self.ask_input = AskInput(placeholder="Ask a developer question…  (Enter asks, F1 help)", id="ask")
        self.comparison = ComparisonPanel(id="comparison")
        self.status_bar = StatusBar(id="status")

    @property
    def conversation_id(self) -> int | None:
        """The history id of the conversation on screen (None until its first answer is saved)."""
        return self.chat.id

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Notifications quote addresses, paths and [n] markers: never read them as markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseScrollDown, events.MouseScrollUp)):
            self.last_input_at = time.monotonic()
        await super().on_event(event)

    # --- layout and start --------------------------------------------------------------------

    def compose(self):
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.conversation
                yield self.ask_input
            yield self.comparison
        yield self.status_bar
        yield Footer()

    def on_mount(self) -> None:
        self.ask_input.cursor_blink = self.cursor_blink
        self.ask_input.focus()
        self.status_bar.show(scope=self.scope, model=self.model, model_auto=not self.model)
        self.call_after_refresh(self._first_frame)

    def _first_frame(self) -> None:
        self.ready_at = time.perf_counter()
        self.run_worker(self._start_background, thread=True, name="warm-up", exit_on_error=False)

    def _start_background(self) -> None:
        """Blocking start-up work, in a thread: imports, the history file, the index size."""
        if self.services.warm_up is not None:
            try:
                self.services.warm_up(self.settings)
            except Exception as e:  # noqa: BLE001 - the first question will then say what is wrong
                self.call_from_thread(self.log.warning, f"warm-up failed: {e!r}")
            release_free_memory()  # loading the index and the model leaves freed buffers behind
        try:
            history = self.services.open_history(self.settings)
            error = None
        except Exception as e:  # noqa: BLE001 - HistoryError, OSError: the app works without it
            history, error = None, str(e)
        try:
            chunks = self.services.index_size(self.settings)
        except Exception:  # noqa: BLE001 - the count is only shown
            chunks = None
        self.call_from_thread(self._background_ready, history, error, chunks)

    async def _background_ready(self, history: History | None, error: str | None, chunks: int | None) -> None:
        self.warm_at = time.perf_counter()
        self.history, self.history_error = history, error
        self._background_done.set()
        if error:
            self.notify(f"History is off: {error}", severity="warning", timeout=8)
        self.status_bar.show(index_chunks=chunks)
        await self._prime_markdown()
        gc.collect()
        gc.freeze()
        if self.services.check_ollama:
            self.run_worker(self._check_ollama, name="check-ollama", exit_on_error=False)

    async def _prime_markdown(self) -> None:
        """Mount and drop one Markdown widget so the first answer does not pay for its styles."""
        from textual.widgets import Markdown

        probe = Markdown("x `y`\n\n- z\n\n```python\nx = 1\n```\n", classes="primer")
        await self.mount(probe)
        await probe.remove()

    async def _check_ollama(self) -> None:
        """Which model answers, and is it there? While Ollama is unreachable, ask again every
        RECHECK_OLLAMA seconds so the status line recovers on its own."""
        from copilot.llm import choose_chat_model

        try:
            models = await self.services.list_models(self._settings_for_question())
        except CopilotError as e:
            state = ERROR_MODEL_STATES.get(type(e).__name__, MODEL_ERROR)
            self.status_bar.show(model_state=state)
            if state == MODEL_OFFLINE and self._recheck_timer is None:
                self._recheck_timer = self.set_interval(RECHECK_OLLAMA, self._recheck_ollama)
            return
        if self._recheck_timer is not None:
            self._recheck_timer.stop()
            self._recheck_timer = None
        wanted = self.model
        names = {m.name for m in models}
        if wanted:
            ok = wanted in names or f"{wanted}:latest" in names
            self.status_bar.show(model=wanted, model_state=MODEL_OK if ok else MODEL_MISSING)
            return
        try:
            name, _why = choose_chat_model(models)
        except CopilotError:
            self.status_bar.show(model_state=MODEL_MISSING)
            return
        self.status_bar.show(model=name, model_auto=True, model_state=MODEL_OK)

    def _recheck_ollama(self) -> None:
        if self.current is None and self.status_bar.info.model_state == MODEL_OFFLINE:
            self.run_worker(self._check_ollama, name="check-ollama", group="check", exclusive=True,
                            exit_on_error=False)

    def _refresh_index_size(self) -> None:
        """The index may have grown (`copilot index` in another terminal). Blocking: a thread."""
        chunks = self.services.index_size(self.settings)
        self.call_from_thread(self.status_bar.show, index_chunks=chunks)

    # --- asking ------------------------------------------------------------------------------

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.ask_input:
            return
        question = event.value.strip()
        if not question:
            return
        if self.current is not None:
            self.notify("An answer is still being written — Esc stops it.", severity="warning")
            return
        self.ask_input.value = ""
        await self.ask(question)

    async def ask(self, question: str) -> ExchangeState:
        """Start answering `question`; returns its state (the answer arrives in a worker)."""
        state = ExchangeState(question=question, scope=self.scope, chat=self.chat)
        self.current = state
        if gc.get_threshold() != GC_STREAMING_THRESHOLDS:
            self._gc_defaults = gc.get_threshold()
        gc.set_threshold(*GC_STREAMING_THRESHOLDS)
        exchange = await self.conversation.add(state)
        self.comparison.show(state)
        self.status_bar.show(activity="Starting…")
        self._panel_timer = self.set_interval(PANEL_REFRESH, self._refresh_streaming)
        self._ask_worker = self.run_worker(partial(self._answer, exchange), name="ask", group="ask",
                                           exit_on_error=False)
        return state

    def _settings_for_question(self) -> Settings:
        if self._reload_settings:
            from copilot.config import load_settings

            self.settings = load_settings()
        return self.settings

    async def _answer(self, exchange: Exchange) -> None:
        state = exchange.state
        try:
            from copilot.tui.services import make_options

            settings = self._settings_for_question()
            options = make_options(state.scope, self.model)
            async for event in self.services.ask(state.question, settings, options):
                self._take(exchange, event)
        except asyncio.CancelledError:
            state.cancel()
            self._finish(exchange)
            raise
        except CopilotError as e:
            state.fail(e.one_line(), type(e).__name__)
            model_state = ERROR_MODEL_STATES.get(type(e).__name__)
            if model_state:
                self.status_bar.show(model_state=model_state)
        except Exception as e:  # noqa: BLE001 - shown in the app, never a crash
            state.fail(f"internal error: {type(e).__name__}: {e}", "internal")
            self.log.error(f"ask failed: {e!r}")
        if state.in_flight:  # the engine ended without Done
            state.fail("the answer ended unexpectedly", "internal")
        self._finish(exchange)

    def _take(self, exchange: Exchange, event) -> None:
        state = exchange.state
        what = state.apply(event)
        if what == "token":
            exchange.text_changed()
            if state.status:  # the answer is arriving: progress messages are over
                state.status = ""
                exchange.update_parts()
                self.status_bar.show(activity="")
        elif what == "status":
            if state.text:  # the stream has ended and the checks run: its last words go on screen now
                message, state.status = state.status, ""
                exchange.answer.finish()
                self.status_bar.show(activity=message)
                return
            exchange.update_parts()
            self.status_bar.show(activity=state.status)
        elif what in ("warning", "model"):
            exchange.update_parts()
            if what == "model":
                self.status_bar.show(model=state.model, model_state=MODEL_OK, model_auto=not self.model)
        elif what in ("plain", "sources"):
            if what == "plain":
                self.status_bar.show(search=search_health(state))
            if self.comparison.state is state:
                self.comparison.redraw()
        elif what == "done":
            pass  # _finish draws it

    def _refresh_streaming(self) -> None:
        state = self.current
        if state is None:
            return
        exchange = self.conversation.exchange_for(state)
        if exchange is not None:
            exchange.update_parts()
        if self.comparison.state is state:
            self.comparison.redraw()

    def _finish(self, exchange: Exchange) -> None:
        """The answer ended (done, stopped or failed). Its last words go on screen first; the
        panel, the status line and the history follow."""
        state = exchange.state
        if self._panel_timer is not None:
            self._panel_timer.stop()
            self._panel_timer = None
        if self.current is state:
            self.current = None
            self._gc_timer = self.set_timer(GC_AFTER_ANSWER, self._collect_after_answer)
        if exchange.is_attached:
            exchange.answer.finish(then=lambda: self._after_final_draw(exchange))
        else:
            self._after_final_draw(exchange)

    def _after_final_draw(self, exchange: Exchange) -> None:
        state = exchange.state
        exchange.update_parts()
        if self.comparison.state is state:
            self.comparison.redraw()
        health = search_health(state)
        changes: dict = {"activity": ""}
        if health is not None:
            changes["search"] = health
        if state.answer is not None:
            changes["timings"] = state.answer.timings
        self.status_bar.show(**changes)
        self.run_worker(partial(self._save, state), name="save", group="save", exit_on_error=False)
        self.run_worker(self._refresh_index_size, thread=True, name="index-size", exit_on_error=False)

    def on_unmount(self) -> None:
        for timer in (self._gc_timer, self._recheck_timer):
            if timer is not None:
                timer.stop()
        gc.set_threshold(*self._gc_defaults)

    def _collect_after_answer(self) -> None:
        if self.current is None:  # not if the next question already started
            gc.collect()
            gc.set_threshold(*self._gc_defaults)
            # The C heap keeps what the question freed (index and model loading, activations):
            # hand it back to the system, in a thread (a few ms on a large process).
            self.run_worker(release_free_memory, thread=True, name="trim", group="trim", exclusive=True,
                            exit_on_error=False)

    async def _save(self, state: ExchangeState) -> None:
        await self._background_done.wait()
        if self.history is None or (not state.raw_text and state.phase != "failed" and not state.searched):
            return
        history = self.history
        async with self._save_lock:
            try:
                chat = state.chat if isinstance(state.chat, Chat) else self.chat
                if chat.id is None:
                    chat.id = await asyncio.to_thread(history.new_conversation, state.question)
                state.message_id = await asyncio.to_thread(history.add_message, chat.id,
                                                           state.to_message())
            except Exception as e:  # noqa: BLE001 - sqlite3.Error, OSError: say so, keep going
                self.notify(f"Could not save to the history: {e}", severity="warning")

    # --- reacting to the widgets ---------------------------------------------------------------

    def on_exchange_selected(self, event: ExchangeSelected) -> None:
        if self.comparison.state is not event.state:
            self.comparison.show(event.state)

    def on_citation_chosen(self, event: CitationChosen) -> None:
        self.focus_citation(event.state, event.n)

    def focus_citation(self, state: ExchangeState, n: int) -> bool:
        exchange = self.conversation.exchange_for(state)
        if exchange is not None:
            self.conversation.select(exchange)
        if self.comparison.state is not state:
            self.comparison.show(state)
        if self.comparison.focus_source(n):
            return True
        total = len(state.sources or [])
        cited = any(c.n == n for c in state.citations)
        if cited:
            self.notify(f"[{n}] is not among the {total} sources: an invented citation.", severity="warning")
        else:
            self.notify(f"This answer has no source [{n}].", severity="warning")
        return False

    def on_preview_requested(self, event: PreviewRequested) -> None:
        from copilot.tui.screens.preview import PreviewScreen

        self.push_screen(PreviewScreen(event.state, event.source, event.result))

    def on_open_url_requested(self, event: OpenUrlRequested) -> None:
        self.open_link(event.url)

    def on_link_open_requested(self, event: LinkOpenRequested) -> None:
        self.open_link(event.href)

    def open_link(self, url: str) -> None:
        from urllib.parse import urlsplit

        if urlsplit(url).scheme.lower() not in ("http", "https"):
            self.notify("Only http and https addresses are opened.", severity="warning")
            return

        async def go() -> None:
            ok = await asyncio.to_thread(self.services.open_url, url)
            if ok:
                self.notify(f"Opened {url}", title="Browser")
            else:
                self.notify("No browser could be started; the address is copied instead.", severity="warning")
                await self.copy_text(url, "the address")

        self.run_worker(go, name="open-url", exit_on_error=False)

    def on_copy_requested(self, event: CopyRequested) -> None:
        if event.code:
            self.copy_code(event.state)
        else:
            self.copy_later(answer_for_clipboard(event.state), "the answer")

    def on_copy_text_requested(self, event: CopyTextRequested) -> None:
        self.copy_later(event.text, event.what)

    def on_conversation_deleted(self, event) -> None:
        if event.conversation_id == self.chat.id:
            self.chat = Chat()

    # --- copying -------------------------------------------------------------------------------

    def copy_later(self, text: str, what: str) -> None:
        self.run_worker(partial(self.copy_text, text, what), name="copy", exit_on_error=False)

    async def copy_text(self, text: str, what: str) -> None:
        """OSC 52 to the terminal, plus a clipboard program or a file; the user is told which."""
        from copilot.tui.clipboard import copy_outside_terminal

        self.copy_to_clipboard(text)
        result = await asyncio.to_thread(copy_outside_terminal, text, self.settings.data_path)
        self.last_copy = (text, result)
        self.notify(result.message(what), title="Copy", timeout=6 if result.file else 3)

    def selected_state(self) -> ExchangeState | None:
        e = self.conversation.selected
        if e is not None:
            return e.state
        items = self.conversation.exchanges
        return items[-1].state if items else None

    def copy_code(self, state: ExchangeState | None) -> None:
        from copilot.tui.answer_text import code_blocks

        if state is None:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        blocks = code_blocks(state.text)
        if not blocks:
            self.notify("This answer has no code block.", severity="warning")
            return
        if len(blocks) == 1:
            self.copy_later(blocks[0].code, "the code block")
            return
        from copilot.tui.screens.choose import ChooseScreen

        items = [Content.assemble((f"{i}. ", "bold"), (b.language or "code", "$text-accent"),
                                  (f"  {b.first_line[:60]}", "")) for i, b in enumerate(blocks, 1)]

        def chosen(index: int | None) -> None:
            if index is not None:
                self.copy_later(blocks[index].code, f"code block {index + 1}")

        self.push_screen(ChooseScreen("Copy which code block?", items), chosen)

    # --- actions -----------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.current is not None and self._ask_worker is not None:
            self._ask_worker.cancel()
        elif self.focused is not self.ask_input:
            self.ask_input.focus()

    async def action_new_chat(self) -> None:
        await self._stop_and_wait()
        await self.conversation.clear_all()
        self.chat = Chat()
        self.comparison.show(None)
        self.ask_input.focus()

    async def _stop_and_wait(self) -> None:
        worker = self._ask_worker
        if self.current is not None and worker is not None:
            worker.cancel()
            for _ in range(200):  # the worker's clean-up runs within a few loop turns
                if self.current is None:
                    break
                await asyncio.sleep(0.01)

    def action_cycle_scope(self) -> None:
        self.set_scope(SCOPES[(SCOPES.index(self.scope) + 1) % len(SCOPES)])

    def set_scope(self, scope: str) -> None:
        from copilot.tui.services import local_search_wired

        self.scope = scope
        self.status_bar.show(scope=scope)
        message = f"Scope: {scope}"
        if scope in ("local", "both") and not local_search_wired():
            message += " — the local index is not wired into answers yet"
            message += ": answers come from the model alone" if scope == "local" else ": web only for now"
        if scope in ("web", "both") and not self.settings.engines:
            message += " (web search is off in the settings)"
        self.notify(message, title="Scope")

    def action_pick_model(self) -> None:
        from copilot.tui.screens.models import ModelScreen

        def picked(name: str | None) -> None:
            if name is None:
                return
            self.model = name
            self.status_bar.show(model=name, model_auto=not name, model_state=MODEL_OK if name else "unknown")
            self.notify(f"Model: {name or 'automatic'}", title="Model")
            if not name and self.services.check_ollama:
                self.run_worker(self._check_ollama, exit_on_error=False)

        current = self.model or self.status_bar.info.model
        self.push_screen(ModelScreen(self.services.list_models, self.settings, current), picked)

    def action_history(self) -> None:
        if self.history is None:
            self.notify(f"History is off: {self.history_error or 'still opening'}", severity="warning")
            return
        from copilot.tui.screens.history import HistoryScreen

        def chosen(conversation_id: int | None) -> None:
            if conversation_id is not None:
                self.run_worker(partial(self.resume, conversation_id), exit_on_error=False)

        export_dir = self.settings.data_path / "exports"
        self.push_screen(HistoryScreen(self.history, export_dir, self.chat.id), chosen)

    async def resume(self, conversation_id: int) -> None:
        """Show a past conversation; new questions continue it."""
        from copilot.tui.state import ExchangeState as State

        if self.history is None:
            return
        await self._stop_and_wait()
        messages = await asyncio.to_thread(self.history.messages, conversation_id)
        last = await self.conversation.load([State.from_message(m) for m in messages])
        self.chat = Chat(conversation_id)
        if last is not None:
            self.conversation.select(last)
            self.comparison.show(last.state)
            self.conversation.scroll_end(animate=False)
        else:
            self.comparison.show(None)
        self.notify(f"Resumed a conversation of {len(messages)} questions.", title="History")
        self.ask_input.focus()

    async def action_export(self) -> None:
        if self.history is None or self.chat.id is None:
            self.notify("Nothing saved to export yet.", severity="warning")
            return
        from copilot.tui.screens.history import write_export

        info = await asyncio.to_thread(self.history.conversation, self.chat.id)
        if info is None:
            return
        path = await asyncio.to_thread(write_export, self.history, info, self.settings.data_path / "exports")
        self.notify(f"Exported to {path}", title="History")

    def action_copy_answer(self) -> None:
        state = self.selected_state()
        if state is None or not state.text:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.copy_later(answer_for_clipboard(state), "the answer")

    def action_copy_code(self) -> None:
        self.copy_code(self.selected_state())

    def action_help(self) -> None:
        from copilot.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_focus_sources(self) -> None:
        self.comparison.sources.focus()

    def action_focus_plain(self) -> None:
        self.comparison.plain.focus()

    def action_focus_input(self) -> None:
        self.ask_input.focus()

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Ask", "Focus the question box", self.action_focus_input)
        yield SystemCommand("Stop answer", "Stop the answer being written, keep what arrived (Esc)",
                            self.action_stop)
        yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_chat)
        yield SystemCommand("History", "Resume, delete or export past conversations (Ctrl+R)", self.action_history)
        yield SystemCommand("Export conversation", "Save this conversation as Markdown", self.action_export)
        for scope in SCOPES:
            yield SystemCommand(f"Scope: {scope}", f"Answer from {'web and local index' if scope == 'both' else scope}"
                                " sources (Ctrl+T cycles)", lambda s=scope: self.set_scope(s))
        yield SystemCommand("Model", "Choose the Ollama model (F2)", self.action_pick_model)
        yield SystemCommand("Copy answer", "Copy the selected answer with its sources (Ctrl+Y)",
                            self.action_copy_answer)
        yield SystemCommand("Copy code block", "Copy a code block of the selected answer (Ctrl+O)",
                            self.action_copy_code)
        yield SystemCommand("Sources", "Focus the sources list", self.action_focus_sources)
        yield SystemCommand("Plain search", "Focus the plain search results", self.action_focus_plain)
        yield SystemCommand("Help", "Keys and what the marks mean (F1)", self.action_help)


def answer_for_clipboard(state: ExchangeState) -> str:
    """The answer's text, then the sources it cites as a list (so [n] still means something)."""
    text = state.text.rstrip()
    cited = sorted({c.n for c in state.citations if c.valid})
    by_n = {s.n: s for s in state.sources or ()}
    lines = [f"[{n}] {by_n[n].label} — {by_n[n].url or by_n[n].path or ''}".rstrip(" —") for n in cited]
    if lines:
        text += "\n\nSources:\n" + "\n".join(lines)
    return text + "\n"


def run() -> int:
    """Start the app; returns the exit code."""
    import sys

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("copilot: the app needs a terminal; for scripts use `copilot ask` (see `copilot --help`)",
              file=sys.stderr)
        return 2
    try:
        from copilot.config import load_settings

        settings = load_settings()
    except CopilotError as e:
        print(f"copilot: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    tune_malloc()  # before any thread starts
    app = CopilotApp(settings)
    app._reload_settings = True  # pick up config and OLLAMA_HOST changes at each question
    app.run()
    return app.return_code or 0


__all__ = ["CopilotApp", "answer_for_clipboard", "run"]
