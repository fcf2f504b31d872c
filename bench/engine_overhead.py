"""Engine overhead per question: everything except waiting on the network and the model.

The fake Ollama and the loopback web run in a separate process, answering at once, with five real
pages (three saved Stack Overflow pages, two pages of Python's docs). This process runs the real
engine (search → fetch → extract → passages → prompt → stream → citations) N times; its CPU time
per question is the engine's own cost, and its wall time is an upper bound that also includes
loopback HTTP.

    .venv/bin/python bench/engine_overhead.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SO_DIR = ROOT.parent / "shared" / "data" / "stackoverflow-pages"
DOCS = Path("/usr/share/doc/python3.11-doc/html/library")
PAGES = [SO_DIR / "stackoverflow-1732438.html", SO_DIR / "stackoverflow-6508819.html",
         SO_DIR / "stackoverflow-15920496.html", DOCS / "asyncio-runner.html", DOCS / "functools.html"]

SERVER = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
from tests.fakes import FakeOllama, LoopbackWeb
pages = json.loads(sys.argv[2])
with FakeOllama() as o, LoopbackWeb() as web:
    results = []
    for i, p in enumerate(pages):
        url = web.add_page(f"/p{i}.html", open(p, "rb").read())
        results.append({"title": f"page {i}", "url": url, "content": "snippet"})
    web.set_search(results)
    o.reply_with("asyncio.run() cannot run inside a running loop [1]. Await the coroutine [2]. " * 6)
    print(json.dumps({"ollama": o.host, "web": web.base_url}), flush=True)
    sys.stdin.read()
"""


async def one(question, settings):
    from copilot.engine import ask
    from copilot.events import Done

    async for event in ask(question, settings):
        if isinstance(event, Done):
            return event.answer
    raise RuntimeError("no answer")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    missing = [str(p) for p in PAGES if not p.is_file()]
    if missing:
        sys.exit(f"missing pages (install python3-doc; needs ../shared): {missing}")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT), json.dumps([str(p) for p in PAGES])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        hosts = json.loads(server.stdout.readline())
        data = Path("/tmp") / f"copilot-bench-{os.getpid()}"
        data.mkdir(exist_ok=True)
        (data / "config.toml").write_text("")
        os.environ.update({
            "OLLAMA_HOST": hosts["ollama"], "COPILOT_SEARCH_ENGINE": "searxng",
            "COPILOT_SEARXNG_URL": hosts["web"], "COPILOT_FETCH_ALLOW": "127.0.0.1",
            "COPILOT_DATA_DIR": str(data), "COPILOT_CONFIG": str(data / "config.toml"),
        })
        sys.path.insert(0, str(ROOT))
        from copilot.config import load_settings

        settings = load_settings({"cache_ttl_hours": 0})  # every question really searches
        question = "why does asyncio.run() say 'cannot be called from a running event loop'?"
        asyncio.run(one(question, settings))  # warm-up: imports, first connections
        walls, cpus = [], []
        for _ in range(args.runs):
            w0, c0 = time.perf_counter(), time.process_time()
            answer = asyncio.run(one(question, settings))
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        assert answer.sources and all(c.valid for c in answer.citations)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    row = (f"| {args.runs} | {len(PAGES)} | {statistics.median(cpus) * 1000:.0f} ms | "
           f"{max(cpus) * 1000:.0f} ms | {statistics.median(walls) * 1000:.0f} ms |")
    print("| runs | pages | engine CPU p50 | engine CPU max | wall p50 (incl. loopback HTTP) |")
    print("|---|---|---|---|---|")
    print(row)


if __name__ == "__main__":
    main()
