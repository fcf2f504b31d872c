"""Copying out of a terminal app, never silently failing.

Three ways, all tried, and the user is told which worked:

1. OSC 52 through the terminal (Textual's `App.copy_to_clipboard`): works in most terminals and
   over SSH, but nothing tells us whether the terminal accepted it;
2. a clipboard program when one is present: `wl-copy` (Wayland), `xclip` / `xsel` (X11),
   `pbcopy` (macOS), `clip.exe` (WSL);
3. when no program worked: the text is written to a file in the data directory (0600), and the
   message says where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FALLBACK_NAME = "clipboard.txt"


@dataclass
class CopyResult:
    tool: str | None  # the clipboard program that took the text
    file: Path | None  # the fallback file, when no program did
    error: str | None = None  # why the fallback file could not be written either

    def message(self, what: str) -> str:
        if self.tool:
            return f"Copied {what} (terminal clipboard and {self.tool})."
        if self.file:
            return (f"Copied {what} to the terminal clipboard (OSC 52; if your terminal ignores it, "
                    f"the text is in {self.file}).")
        return f"Sent {what} to the terminal clipboard (OSC 52); no clipboard program and {self.error}."


def clipboard_commands(env: dict[str, str] | None = None) -> list[list[str]]:
    """Clipboard programs present here (full paths), most fitting first."""
    env = dict(os.environ) if env is None else env
    path = env.get("PATH")
    candidates: list[list[str]] = []
    if env.get("WAYLAND_DISPLAY"):
        candidates.append(["wl-copy"])
    if env.get("DISPLAY"):
        candidates += [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
    if sys.platform == "darwin":
        candidates.append(["pbcopy"])
    candidates.append(["clip.exe"])  # WSL
    found = []
    for c in candidates:
        exe = shutil.which(c[0], path=path)
        if exe:
            found.append([exe, *c[1:]])
    return found


def copy_with_program(text: str, env: dict[str, str] | None = None) -> str | None:
    """Give the text to the first clipboard program that takes it; its name, or None. Blocking."""
    for cmd in clipboard_commands(env):
        try:
            proc = subprocess.run(cmd, input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=3, check=False,
                                  start_new_session=True)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            return os.path.basename(cmd[0])
    return None


def save_fallback(text: str, data_dir: Path) -> Path:
    """Write the text to the fallback file (mode 0600). Blocking."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / FALLBACK_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def copy_outside_terminal(text: str, data_dir: Path, env: dict[str, str] | None = None) -> CopyResult:
    """Steps 2 and 3 above (the caller does the OSC 52 part). Blocking: run it in a thread."""
    tool = copy_with_program(text, env)
    if tool:
        return CopyResult(tool=tool, file=None)
    try:
        return CopyResult(tool=None, file=save_fallback(text, data_dir))
    except OSError as e:
        return CopyResult(tool=None, file=None, error=f"cannot write {data_dir / FALLBACK_NAME}: {e.strerror}")
