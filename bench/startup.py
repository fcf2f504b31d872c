"""Start-up cost of the command line: `copilot --help` wall time and what importing the CLI loads.

    .venv/bin/python bench/startup.py [--runs 20]

Goal (issue: ask/search/doctor): `copilot --help` under 0.2 s; importing the CLI does not import
chromadb or textual.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    exe = shutil.which("copilot", path=str(Path(sys.executable).parent)) or "copilot"
    rows = []
    for label, cmd in [("copilot --help", [exe, "--help"]),
                       ("copilot ask --help", [exe, "ask", "--help"]),
                       ("python -c pass (floor)", [sys.executable, "-c", "pass"])]:
        t = wall(cmd, args.runs)
        rows.append((label, statistics.median(t), max(t)))
    probe = ("import sys, copilot.cli; "
             "print(','.join(m for m in ('chromadb','textual','ollama','httpx','rich','trafilatura','ddgs') "
             "if m in sys.modules) or 'none')")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"| command | median | max | ({args.runs} runs) |")
    print("|---|---|---|---|")
    for label, med, mx in rows:
        print(f"| `{label}` | {med * 1000:.0f} ms | {mx * 1000:.0f} ms | |")
    print(f"\nheavy modules loaded by `import copilot.cli`: {loaded}")


if __name__ == "__main__":
    main()
