"""Running `copilot` the way a user does, for the fault and security tests.

- `run_cli(capsys, monkeypatch, *args, stdin=...)`: `copilot.cli.main` in this process, stdout and
  stderr captured, stdin replaced (a pipe, as far as the CLI can tell). Fast: no interpreter start.
- `run_in_terminal(*args, ...)`: a `copilot` subprocess whose stdout and/or stderr is a
  pseudo-terminal, for what only happens on a terminal (spinner status, Markdown rendering).
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from copilot.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str,
            stdin: str = "") -> Run:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out and "Traceback" not in err, err
    return Run(code, out, err)


def configure(env: dict[str, str], **values: object) -> None:
    """Write settings into the test's config file (COPILOT_CONFIG), as a user would."""
    # A JSON string or list of strings is also a TOML one; numbers are written as they are.
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    Path(env["COPILOT_CONFIG"]).write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_in_terminal(*args: str, stdout_tty: bool = True, stderr_tty: bool = True,
                    timeout: float = 60) -> Run:
    """`python -m copilot ARGS` with stdout and/or stderr on a pseudo-terminal (100 columns).
    What the terminal received is in `.out` when stdout is the terminal, else in `.err`
    (stdout and stderr both on it: everything is in `.out`)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "copilot", *args], stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE, env=env)
    os.close(slave)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            received.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        piped_out, piped_err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(master)
    terminal = received.decode("utf-8", "replace")
    out = terminal if stdout_tty else piped_out.decode("utf-8", "replace")
    err = (terminal if not stdout_tty else "") if stderr_tty else piped_err.decode("utf-8", "replace")
    assert "Traceback" not in out + err, out + err
    return Run(proc.returncode, out, err)
