"""Query latency over a large synthetic index (build it with bench/synthetic_index.py).

Times `copilot.retrieval.hybrid_search(query, settings, 10)` exactly as the engine calls it
(a fresh LocalIndex per question: manifest open, Chroma open, query embedding with the real
MiniLM model, FTS5 bm25, fusion), after one warm-up, for hybrid / keyword / dense; and the same
with one LocalIndex reused across questions (what `copilot eval` does).

    COPILOT_DATA_DIR=/tmp/copilot-100k COPILOT_EMBED_MODEL_DIR=... .venv/bin/python bench/scale_100k.py
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="passes over the 30 queries")
    args = ap.parse_args()

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
            rows.append((mode, "reused LocalIndex" if reuse else "per call (engine path)",
                         statistics.median(times), pct(times, 0.95), max(times), empty))
    lines = ["| mode | index | p50 ms | p95 ms | max ms | no hits |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {how} | {p50:.1f} | {p95:.1f} | {mx:.1f} | {e} |" for m, how, p50, p95, mx, e in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("COPILOT_SEARCH_ENGINE", "none")
    main()
