"""Snapshots of the app (pytest-textual-snapshot). Stable by construction: fixed terminal sizes, no
cursor blink, scripted engine events with fixed content (copilot.tui.demo: no network, so no random
loopback ports in the picture), and each test waits for the background start-up, the answer's last
redraw and any animation before the picture is taken.

Update them with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at the SVGs in
tests/__snapshots__/ before committing.
"""

from __future__ import annotations

import time
from pathlib import Path

from copilot.config import Settings
from copilot.tui import demo
from copilot.tui.app import CopilotApp


def make_app(tmp_path: Path, services, theme: str | None = None) -> CopilotApp:
    settings = Settings(data_dir=str(tmp_path / "data"), search_engine=["duckduckgo"])
    app = CopilotApp(settings, services, cursor_blink=False)
    if theme:
        app.theme = theme
    return app


async def _until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


async def settle(pilot) -> None:
    app = pilot.app
    await _until(pilot, lambda: app.warm_at is not None)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def ask_and_settle(pilot) -> None:
    app = pilot.app
    await settle(pilot)
    app.ask_input.value = demo.QUESTION
    await pilot.press("enter")
    await _until(pilot, lambda: app.conversation.exchanges and app.current is None)
    exchange = app.conversation.exchanges[-1]
    await _until(pilot, lambda: exchange.answer.settled)
    app.clear_notifications()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def test_empty_state(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, demo.services()), terminal_size=(80, 24), run_before=settle)


def test_comparison_view_with_a_finished_answer(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, demo.services()), terminal_size=(110, 34), run_before=ask_and_settle)


def test_comparison_view_at_80x24(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, demo.services()), terminal_size=(80, 24), run_before=ask_and_settle)


def test_comparison_view_light_theme(snap_compare, tmp_path: Path) -> None:
    app = make_app(tmp_path, demo.services(), theme="textual-light")
    assert snap_compare(app, terminal_size=(110, 34), run_before=ask_and_settle)


def test_error_state(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path, demo.failing_services()), terminal_size=(100, 30),
                        run_before=ask_and_settle)
