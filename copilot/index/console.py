"""What `copilot index` and `copilot sources` print: a progress bar on stderr, summaries on stdout."""

from __future__ import annotations

import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from copilot.index.indexer import IndexProgress, IndexReport, SourceInfo

SKIPPED_LISTED = 20  # more skipped files than this are grouped by reason


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """An `on_progress` callback drawing files, chunks, rate and ETA on stderr (a no-op when not
    enabled, e.g. stderr is not a terminal)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("files"), TextColumn("{task.fields[chunks]} chunks"),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=True)
    task = bar.add_task("scanning", total=None, chunks=0, rate="")
    started = time.monotonic()

    def update(p: IndexProgress) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = f"{p.chunks / elapsed:.1f} chunks/s" if p.chunks else ""
        desc = {"scan": "scanning", "index": "indexing", "remove": "removing", "done": "done"}.get(p.phase, p.phase)
        bar.update(task, description=desc, total=p.files_total or None, completed=p.files_done,
                   chunks=p.chunks, rate=rate)

    with bar:
        yield update


def print_report(report: IndexReport, *, out: TextIO | None = None, signum: int | None = None) -> None:
    out = out or sys.stdout
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        print(f"Stopped by {name}: what was finished is in the index; run the same command again to "
              "go on.", file=out)
    total = report.added + report.updated + report.unchanged + len(report.skipped)
    print(f"{total} files in {report.seconds:.1f} s: {report.added} added, {report.updated} updated, "
          f"{report.removed} removed, {report.unchanged} unchanged, {len(report.skipped)} skipped. "
          f"{report.chunks} chunks in the index.", file=out)
    if not report.skipped:
        return
    print("Skipped:", file=out)
    if len(report.skipped) <= SKIPPED_LISTED:
        for path, reason in report.skipped:
            print(f"  {path}: {reason}", file=out)
        return
    by_reason: dict[str, list[str]] = defaultdict(list)
    for path, reason in report.skipped:
        by_reason[reason].append(path)
    for reason, paths in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        print(f"  {reason}: {len(paths)} files, e.g. {paths[0]}", file=out)
    print("  (copilot index --json lists every one)", file=out)


def print_sources(sources: list[SourceInfo], *, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if not sources:
        print("The index is empty: add a folder with `copilot index PATH`.", file=out)
        return
    width = max(len(s.root) for s in sources)
    for s in sources:
        print(f"{s.root:<{width}}  {plural(s.files, 'file'):>12}  {plural(s.chunks, 'chunk'):>14}", file=out)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
