"""Query latency over a large synthetic index (build it with bench/synthetic_index.py).

Times `copilot.retrieval.hybrid_search(query, settings, 10)` with one LocalIndex kept open across
questions, as the engine calls it (`engine._shared_index`) and `copilot eval` too: query
embedding with the real MiniLM model, HNSW kNN, FTS5 bm25, fusion; after one warm-up, for
hybrid / keyword / dense. And the same with a new LocalIndex per call (manifest, Chroma client
and embedder opened each time), what a one-shot process pays once.

    COPILOT_DATA_DIR=/tmp/copilot-100k COPILOT_EMBED_MODEL_DIR=... .venv/bin/python bench/scale_100k.py

`--memory` measures resident memory instead (issue 5: under 300 MB with a 100k index open):

* where it goes: a fresh process takes the steps of a first question one at a time (import
  chromadb, open the client and collection, first kNN query = HNSW load, load the embedder, embed
  a query, keyword query, hybrid query) and reads /proc/self/smaps_rollup after each, with
  `malloc_trim(0)` first so that memory freed by a step is not counted as held;
* the app: `copilot` (the TUI) in a tmux pane against a FakeOllama, scope local, three questions;
  VmRSS / VmHWM of every process in the pane's tree (the app starts no others) after launch and
  after each answer, and the largest mappings at the end (/proc/PID/smaps);
* `copilot ask --no-web`: its peak (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = [
    "how does functools.lru_cache work",
    "asyncio.run() cannot be called from a running event loop",
    "KeyError when reading a dict key that does not exist",
    "sort a list of tuples by the second item",
    "what is the difference between deep copy and shallow copy",
    "subprocess.run capture output as a string",
    "UnicodeDecodeError utf-8 codec can't decode byte",
    "how to merge two dicts",
    "json.dumps with datetime objects",
    "read a file line by line",
    "thread safe queue with a worker pool",
    "timeout for a request that never returns",
    "collections.defaultdict of lists",
    "itertools.groupby needs sorted input",
    "pathlib.Path join and resolve",
    "__init__ vs __new__",
    "contextlib.contextmanager decorator example",
    "TypeError: unhashable type: 'list'",
    "how do I convert a timestamp to a timezone aware datetime",
    "sqlite3.connect database is locked",
    "dataclasses.dataclass default mutable value",
    "generator vs iterator vs coroutine",
    "os.environ get with a default",
    "logging.getLogger configure format",
    "round a float to two decimals",
    "re.sub with a callback function",
    "isinstance check against several types",
    "enumerate with a start index",
    "zip lists of different length",
    "RuntimeError: dictionary changed size during iteration",
]


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# --- resident memory ------------------------------------------------------------------------------

STEPS = r"""
import ctypes, json, os, sys
trim = ctypes.CDLL("libc.so.6").malloc_trim

def step(name):
    trim(0)  # memory freed by the step is not held
    kb = {}
    for line in open("/proc/self/smaps_rollup"):
        parts = line.split()
        if parts[0] in ("Rss:", "Anonymous:"):
            kb[parts[0][:-1]] = int(parts[1])
    print(json.dumps({"step": name, "rss": kb["Rss"] / 1024, "anon": kb["Anonymous"] / 1024}), flush=True)

step("interpreter")
import numpy as np
step("import numpy")
from copilot.index.store import _import_chromadb
_import_chromadb()  # as the product imports it (without the OpenTelemetry gRPC exporter)
step("import chromadb")
from copilot.config import load_settings
from copilot.index.local import LocalIndex
from copilot.index.store import ChromaStore
from copilot.retrieval import hybrid_search
settings = load_settings()
step("import copilot (config, index, retrieval)")
store = ChromaStore.open_for_read(settings)
step("Chroma client + collection")
vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
store.query(vector, 18)
step("first kNN query (HNSW index loaded)")
index = LocalIndex.open(settings)
index.embedder.prepare()
step("embedder loaded (ONNX session, tokenizer)")
index.embedder.embed_query("how does functools.lru_cache work")
step("one query embedded")
hybrid_search("how does functools.lru_cache work", settings, 10, mode="keyword", index=index)
step("keyword query (manifest FTS5)")
hybrid_search("asyncio.run cannot be called from a running event loop", settings, 10, index=index)
step("hybrid query (the engine's call)")
"""


def _status_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _tree(pid: int) -> list[int]:
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo.extend(int(c) for c in children)
    return out


def _largest_mappings(pid: int, n: int = 8) -> list[tuple[str, float]]:
    import re

    sizes: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            name = Path(parts[5]).name if len(parts) > 5 and parts[5].startswith("/") else \
                (parts[5] if len(parts) > 5 else "[anonymous]")
        elif line.startswith("Rss:"):
            sizes[name] = sizes.get(name, 0) + int(line.split()[1])
    return [(k, v / 1024) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:n]]


def memory(settings, answers: int = 10, web: bool = False) -> None:
    """`web`: the app also searches a loopback SearXNG and reads its pages (bench/tui.py's
    Servers: the saved pages of ../shared/data), scope "both", as in daily use."""
    import json
    import re
    import subprocess
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from tui import Pane, Servers, copilot_exe  # bench/tui.py

    from tests.fakes import FakeOllama

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"load average {os.getloadavg()[0]:.1f}; index {settings.data_path}\n")
    print("| step (fresh process, malloc_trim before each reading) | RSS MiB | of which anonymous | step adds |")
    print("|---|---:|---:|---:|")
    out = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True).stdout
    last = 0.0
    for line in out.splitlines():
        row = json.loads(line)
        print(f"| {row['step']} | {row['rss']:.0f} | {row['anon']:.0f} | {row['rss'] - last:+.0f} |")
        last = row["rss"]

    servers = Servers() if web else None
    ollama = servers.ollama if servers else FakeOllama().start()
    ollama.token_delay = 0.002
    ollama.reply_with("Use functools.lru_cache on a pure function [1]. DONEMARK")
    pane = Pane("copilot-rss100k")
    app_env = {k: v for k, v in os.environ.items() if k.startswith(("COPILOT_", "MALLOC_"))}
    app_env.update(OLLAMA_HOST=ollama.host, COPILOT_SEARCH_ENGINE="none", TERM="xterm-256color",
                   HOME=os.environ.get("HOME", "/tmp"))
    if servers:
        # no search cache: results cached by another run name that run's (gone) port
        config = Path(tempfile.mkdtemp()) / "config.toml"
        config.write_text("cache_ttl_hours = 0\n", encoding="utf-8")
        app_env.update(COPILOT_SEARCH_ENGINE="searxng", COPILOT_SEARXNG_URL=servers.web.base_url,
                       COPILOT_FETCH_ALLOW="127.0.0.1", NO_PROXY="127.0.0.1,localhost", COPILOT_CONFIG=str(config))
    try:
        pane.start(copilot_exe(), app_env)
        pane.wait_for(lambda s: "Ask a developer question" in s, timeout=30)
        pid = pane.pid()
        pane.wait_for(lambda s: re.search(r"index [\d,]+", s) is not None, timeout=30)  # the warm-up read it
        time.sleep(3.0)  # the warm-up thread (imports, Chroma's import when there is an index)

        def total() -> tuple[float, float]:
            rows = [_status_mib(p) for p in _tree(pid)]
            return sum(r["VmRSS"] for r in rows), sum(r["VmHWM"] for r in rows)

        rows = [("launched, warm-up done", *total())]
        for i, q in enumerate(QUERIES[:answers], 1):
            pane.send(q, literal=True)
            pane.wait_for(lambda s, q=q: q[:30] in s, timeout=10)
            pane.send("Enter")
            # this question's answer is on screen (earlier ones may have scrolled away)
            pane.wait_for(lambda s, q=q: "DONEMARK" in s[s.rfind("❯ " + q[:30]):] if "❯ " + q[:30] in s else False,
                          timeout=120)
            time.sleep(2.0)  # the collection and trim after an answer (0.5 s after it)
            rows.append((f"after answer {i}", *total()))
        scope = "both: loopback search and pages" if web else "local"
        print(f"\n| the app (tmux, scope {scope}) | VmRSS MiB | VmHWM MiB |\n|---|---:|---:|")
        for label, rss, hwm in rows:
            print(f"| {label} | {rss:.0f} | {hwm:.0f} |")
        if servers:
            fetched = sum(1 for method, path in servers.web.requests if method == "GET" and path.startswith("/p"))
            print(f"\nPages the app fetched from the loopback web: {fetched}")
        print(f"\nLargest mappings after answer {answers} (RSS MiB): " +
              ", ".join(f"{name} {mib:.0f}" for name, mib in _largest_mappings(pid)))
    finally:
        pane.kill()
        if servers:
            servers.stop()
        else:
            ollama.stop()

    ollama = FakeOllama().start()
    ollama.reply_with("Use functools.lru_cache [1].")
    try:
        # A fresh parent whose only child is `copilot ask`: its ru_maxrss is that child's peak.
        measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                   "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", measure, str(Path(sys.executable).parent / "copilot"), "ask",
                              "--json", "--no-web", QUERIES[0]],
                             env={**os.environ, "OLLAMA_HOST": ollama.host, "COPILOT_SEARCH_ENGINE": "none"},
                             capture_output=True, text=True, check=True).stdout
        print(f"\n`copilot ask --json --no-web` peak RSS (ru_maxrss): {int(out.split()[-1]) / 1024:.0f} MiB")
    finally:
        ollama.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="passes over the 30 queries")
    ap.add_argument("--memory", action="store_true", help="measure resident memory instead of latency")
    ap.add_argument("--answers", type=int, default=10, help="questions asked in the app (--memory)")
    ap.add_argument("--web", action="store_true", help="--memory with a loopback search engine and pages")
    args = ap.parse_args()
    if args.memory:
        from copilot.config import load_settings

        memory(load_settings(), args.answers, args.web)
        return

    from copilot.config import load_settings
    from copilot.index.local import LocalIndex
    from copilot.retrieval import hybrid_search

    settings = load_settings()
    with LocalIndex.open(settings) as idx:
        n = idx.count()
    print(f"index {settings.data_path}: {n} chunks; {len(QUERIES)} queries x {args.rounds}, k={args.k}")
    rows = []
    for reuse in (False, True):
        for mode in ("hybrid", "keyword", "dense"):
            index = LocalIndex.open(settings) if reuse else None
            hybrid_search("warm up " + QUERIES[0], settings, args.k, mode=mode, index=index)
            times, empty = [], 0
            for _ in range(args.rounds):
                for q in QUERIES:
                    t = time.perf_counter()
                    hits = hybrid_search(q, settings, args.k, mode=mode, index=index)
                    times.append((time.perf_counter() - t) * 1000)
                    empty += not hits
            if index is not None:
                index.close()
            rows.append((mode, "one open LocalIndex (the engine's path)" if reuse else "a new LocalIndex per call",
                         statistics.median(times), pct(times, 0.95), max(times), empty))
    lines = ["| mode | index | p50 ms | p95 ms | max ms | no hits |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {how} | {p50:.1f} | {p95:.1f} | {mx:.1f} | {e} |" for m, how, p50, p95, mx, e in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("COPILOT_SEARCH_ENGINE", "none")
    main()
