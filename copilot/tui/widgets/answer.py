"""The answer as Markdown, redrawn at most every `MIN_INTERVAL` seconds while it streams.

Redrawing a whole Markdown document for every token would not keep up with a fast model (and the
widgets it throws away cost garbage-collection pauses), so the screen only ever *appends*: the
widget re-parses just its last block. What is shown is the longest prefix of the answer whose
citation markers are final (`copilot.citations.settled_end`), with each marker turned into a
`cite:n` link the app turns into "focus source n". A marker is held back only until the next word
decides it. When the answer ends, the whole text is rendered again only if that differs from what
is on screen.

Keys come first: a redraw re-lays out the conversation (7-25 ms of CPU in Textual), and a key press
that lands in the same screen update waits for it. So while the user types or scrolls (a key in
the last `TYPING_WINDOW`), the answer is redrawn every `TYPING_INTERVAL` instead of every
`MIN_INTERVAL`, and a redraw waits until `KEY_GRACE` after the last key (the key's own screen update
is then a cheap repaint), though never more than `MAX_DEFER` after the previous redraw.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.message import Message

from copilot.tui.answer_text import groups_from_citations, link_citations, marker_groups, weak_citations

if TYPE_CHECKING:
    from textual.widgets import Markdown

    from copilot.tui.state import ExchangeState

MIN_INTERVAL = 0.05  # seconds between two redraws while streaming
TYPING_INTERVAL = 0.1  # the same while the user types or scrolls
TYPING_WINDOW = 1.0  # seconds after a key press that count as "typing"
MAX_BACKOFF = 0.1  # extra seconds between redraws when the app falls behind
KEY_GRACE = 0.04  # seconds after a key press (or scroll) with no streaming redraw: the key is drawn first
MAX_DEFER = 0.25  # but while the user types, a streaming redraw still comes at least this often


class AnswerView(Vertical):
    """Draws `state.text`; call `changed()` when it grew and `finish()` when it is final."""

    class Drawn(Message):
        """The answer's text on screen changed (the conversation may follow it)."""

    def __init__(self, state: ExchangeState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state
        self._markdown: Markdown | None = None
        self._shown = ""  # the Markdown source on screen
        self._final = False  # the final text is on screen
        self._last = 0.0
        self._due = 0.0  # when the pending redraw timer should fire
        self._backoff = 0.0  # grows while timers fire late (the event loop is busy), so keys stay quick
        self._draw_timer = None
        self._draw_task: asyncio.Task | None = None
        self._again = False
        self.renders = 0  # redraws so far
        self.full_renders = 0  # of which re-rendered the whole document
        self.draw_error: Exception | None = None
        self._then: list = []  # called once the final text is on screen

    # --- public ------------------------------------------------------------------------------

    def changed(self) -> None:
        """The text grew: redraw soon, at most every MIN_INTERVAL."""
        if self._draw_timer is not None:
            return
        now = time.monotonic()
        since_key = now - getattr(self.app, "last_input_at", float("-inf"))
        interval = TYPING_INTERVAL if since_key < TYPING_WINDOW else MIN_INTERVAL
        wait = max(interval + self._backoff - (now - self._last), self._key_wait(now))
        if wait <= 0:
            self._kick()
        else:
            self._due = now + wait
            self._draw_timer = self.set_timer(wait, self._on_timer)

    def finish(self, then=None) -> None:
        """The text is final (done, stopped or failed): draw it now; then call `then` (after the
        screen shows it, so other work does not delay the answer's last words)."""
        if then is not None:
            self._then.append(then)
        if self._draw_timer is not None:
            self._draw_timer.stop()
            self._draw_timer = None
        self._kick()

    @property
    def settled(self) -> bool:
        """No redraw is pending or running."""
        return self._draw_timer is None and (self._draw_task is None or self._draw_task.done())

    @property
    def shown_markdown(self) -> str:
        return self._shown

    # --- drawing -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.state.text or not self.state.in_flight:
            self.finish()

    def _on_timer(self) -> None:
        self._draw_timer = None
        now = time.monotonic()
        late = max(0.0, now - self._due)
        self._backoff = min(MAX_BACKOFF, 0.5 * self._backoff + late)
        wait = self._key_wait(now)
        if wait > 0:  # a key came meanwhile: let its screen update go first
            self._due = now + wait
            self._draw_timer = self.set_timer(wait, self._on_timer)
            return
        self._kick()

    def _key_wait(self, now: float) -> float:
        """How much longer a streaming redraw should wait for the user's last key to be drawn."""
        since_key = now - getattr(self.app, "last_input_at", float("-inf"))
        if since_key >= KEY_GRACE:
            return 0.0
        return max(0.0, min(KEY_GRACE - since_key, MAX_DEFER - (now - self._last)))

    def _kick(self) -> None:
        if self._draw_task is not None and not self._draw_task.done():
            self._again = True
            return
        self._draw_task = asyncio.create_task(self._draw_loop())

    async def _draw_loop(self) -> None:
        try:
            while True:
                self._again = False
                self._last = time.monotonic()
                if await self._draw():
                    self.renders += 1
                    self.post_message(self.Drawn())
                if not self._again:
                    break
        except Exception as e:  # noqa: BLE001 - a redraw must never take the app down
            self.draw_error = e
            self.log.error(f"answer redraw failed: {e!r}")
        if self._then and (self._final or self.draw_error is not None):
            callbacks, self._then = self._then, []
            for callback in callbacks:
                self.call_after_refresh(callback)

    def markdown_now(self) -> str:
        """What the screen should show for the text so far."""
        state = self.state
        text = state.text
        known = None if state.sources is None else {s.n for s in state.sources}
        if not state.in_flight:
            cites = state.citations
            return link_citations(text, groups_from_citations(cites), known, weak=weak_citations(cites))
        from copilot.citations import settled_end

        end = settled_end(text, state.sources)
        return link_citations(text, marker_groups(text, state.sources), known, 0, end)

    async def _draw(self) -> bool:
        """Bring the screen up to date with the text; True if anything was redrawn."""
        if self._final:
            return False
        final = not self.state.in_flight
        markdown = self.markdown_now()
        if final:
            self._final = True
        if markdown == self._shown:
            return False
        if self._markdown is None:
            from textual.widgets import Markdown

            self._markdown = Markdown("", open_links=False, classes="answer-md")
            await self.mount(self._markdown)
        if markdown.startswith(self._shown):
            await self._markdown.append(markdown[len(self._shown):])
        else:
            self.full_renders += 1
            await self._markdown.update(markdown)
        self._shown = markdown
        return True

    def on_unmount(self) -> None:
        if self._draw_timer is not None:
            self._draw_timer.stop()
        if self._draw_task is not None and not self._draw_task.done():
            self._draw_task.cancel()
        callbacks, self._then = self._then, []
        for callback in callbacks:  # removed before its final draw: the rest still happens
            self.app.call_later(callback)
