"""Wall time of fetch_pages against the loopback web (no internet needed).

    .venv/bin/python bench/fetch_concurrency.py [--runs 5]

Scenarios:
  A  5 pages that each answer after 1 s                      goal: all read in < 1.5 s
  B  A + a page that never answers + a body that trickles    goal: batch ends at the deadline
     forever, fetch_deadline 2 s, page_timeout 5 s                 (2 s + small slack)
  C  as B with the default Settings (page_timeout 5 s,       goal: batch ends at the page
     fetch_deadline 8 s)                                           timeout (5 s), not later

Prints a table and writes it to bench/results/fetch.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from copilot.config import Settings  # noqa: E402
from copilot.web.fetch import FetchFailure, fetch_pages  # noqa: E402
from tests.fakes.web import LoopbackWeb  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "fetch.md"


async def run(urls: list[str], settings: Settings) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    results = await fetch_pages(urls, settings)
    wall = time.perf_counter() - start
    failures = [r.reason for r in results if isinstance(r, FetchFailure)]
    return wall, len(results) - len(failures), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of scenario A")
    args = parser.parse_args()

    rows: list[str] = []
    with LoopbackWeb() as web:
        slow = [web.add_page(f"/slow{i}", f"<h1>page {i}</h1>" + "x" * 20_000, delay=1.0)
                for i in range(5)]
        never = web.add_page("/never", "never sent", delay=3600)
        trickle = web.add_page("/trickle", "y" * 64 * 100_000, trickle=0.05)

        a = Settings(fetch_allow=["127.0.0.1"])
        walls = []
        for _ in range(args.runs):
            wall, ok, failures = asyncio.run(run(slow, a))
            assert ok == 5, failures
            walls.append(wall)
        rows.append(f"| A: 5 pages × 1 s delay ({args.runs} runs) | 5/5 read | "
                    f"median {statistics.median(walls):.3f} s, max {max(walls):.3f} s | < 1.5 s |")

        b = Settings(fetch_allow=["127.0.0.1"], page_timeout=5.0, fetch_deadline=2.0)
        wall, ok, failures = asyncio.run(run(slow + [never, trickle], b))
        rows.append(f"| B: A + never-answering + endless trickle, deadline 2 s, page timeout "
                    f"5 s | {ok}/7 read; {'; '.join(sorted(set(failures)))} | {wall:.3f} s "
                    f"| ≤ 2 s + slack |")

        c = Settings(fetch_allow=["127.0.0.1"])
        wall, ok, failures = asyncio.run(run(slow + [never, trickle], c))
        rows.append(f"| C: as B with defaults (page timeout {c.page_timeout:g} s, deadline "
                    f"{c.fetch_deadline:g} s) | {ok}/7 read; {'; '.join(sorted(set(failures)))} "
                    f"| {wall:.3f} s | ≤ {min(c.page_timeout, c.fetch_deadline):g} s + slack |")

    table = "\n".join(["| scenario | result | wall time | goal |", "|---|---|---|---|", *rows])
    print(table)
    text = f"""# fetch_pages concurrency and deadlines

Command: `.venv/bin/python bench/fetch_concurrency.py --runs {args.runs}`

Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs.
Server: tests/fakes/web.py `LoopbackWeb` on 127.0.0.1 (threaded); pages of ~20 KB.
The never-answering page sleeps 3600 s before answering; the trickling page sends 64 bytes
every 50 ms (6.4 MB, ~80 minutes in full), so only a deadline or page timeout stops it.

{table}
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
