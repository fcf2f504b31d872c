"""The question input."""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Input


class AskInput(Input):
    """Textual's Input, without a screen-wide re-layout for every key.

    Input sets its virtual size (the width of its text) at each change of its value, and a
    widget's virtual size is a layout reactive: each key press then re-arranged every widget on
    the screen (7-25 ms of CPU with a few answers on screen, more while one streams), and the key
    waited for it. The input's size never depends on its text (its height and width are fixed),
    so a change of its virtual size needs only a repaint (its own horizontal scrolling reads the
    virtual size directly)."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)
