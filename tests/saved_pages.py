"""Small saved pages that tests index: a Stack Overflow thread and a Markdown note (indexed for a
test by the `indexed` fixture in tests/fixtures_index.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAVED_SO = """<!DOCTYPE html><html><head><title>How do I merge two dictionaries in a single expression? - Stack Overflow</title>
<link rel="canonical" href="https://stackoverflow.com/questions/38987/how-do-i-merge-two-dictionaries"></head><body>
<div id="question" class="question" data-questionid="38987"><div class="js-vote-count" data-value="10">10</div>
<div class="s-prose js-post-body"><p>I want to merge two dictionaries x and y into a new dictionary z.</p></div></div>
<div id="answers"><div class="answer accepted-answer" data-answerid="26853961" data-score="8000">
<div class="js-vote-count" data-value="8000">8000</div><div class="s-prose js-post-body">
<p>In Python 3.9 and later use the union operator:</p><pre><code>z = x | y
</code></pre><p>In 3.5 and later unpack both: <code>z = {**x, **y}</code></p></div></div></div></body></html>"""

NOTES_MD = """# Git notes

## Undo the last commit

Keep the changes staged and drop the commit:

```bash
git reset --soft HEAD~1
```
"""


def write_saved(folder: Path) -> Path:
    """Write both pages into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "merge-dicts.html").write_text(SAVED_SO)
    (folder / "git-notes.md").write_text(NOTES_MD)
    return folder


def run_copilot(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m copilot ARGS` in a subprocess, with this process's environment (plus `extra_env`)."""
    return subprocess.run([sys.executable, "-m", "copilot", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env={**os.environ, **(extra_env or {})})
