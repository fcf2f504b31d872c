"""`copilot eval retrieval QA.jsonl`: how well the local index finds the pages that answer.

QA.jsonl holds one object per line: `question`, `answer_pages` (paths relative to an indexed
root), optional `id` and `must_contain`. Each question runs through keyword-only, dense-only and
hybrid retrieval over the current index. A chunk is relevant when its file, taken relative to
the root it was indexed under, is one of the question's `answer_pages`.

Metrics are page-level: a mode's ranked chunks become ranked distinct pages (a page's first chunk
sets its rank), judged with binary relevance: `hit@1/5/10` (a relevant page in the top n), `mrr`
(1 / rank of the first relevant page among all fetched pages, 0 when none), `ndcg@10`, and the
per-query latency `p50_ms` / `p95_ms` of the whole search (query embedding included), measured
after a warm-up query per mode.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from copilot.errors import UsageError

if TYPE_CHECKING:
    from copilot.config import Settings

METRIC_KEYS = ("hit@1", "hit@5", "hit@10", "mrr", "ndcg@10", "p50_ms", "p95_ms")
CHUNKS_PER_PAGE = 5  # chunks fetched per page asked for, so every mode can fill k distinct pages


@dataclass(frozen=True)
class Question:
    question: str
    answer_pages: tuple[str, ...]
    id: str = ""
    must_contain: tuple[str, ...] = ()


def load_questions(path: Path) -> list[Question]:
    """Read a QA.jsonl file; any problem is a UsageError naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"no such question file: {path}", "give the path of a QA.jsonl file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    out: list[Question] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not valid JSON ({e.msg})",
                             'each line must be one object like {"question": ..., "answer_pages": [...]}') from None
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: expected a JSON object")
        missing = [key for key in ("question", "answer_pages") if key not in obj]
        if missing:
            raise UsageError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
        q, pages = obj["question"], obj["answer_pages"]
        if not isinstance(q, str) or not q.strip():
            raise UsageError(f"{where}: 'question' must be a non-empty string")
        if (not isinstance(pages, list) or not pages
                or not all(isinstance(p, str) and p.strip() for p in pages)):
            raise UsageError(f"{where}: 'answer_pages' must be a non-empty list of paths")
        must = obj.get("must_contain") or []
        if not isinstance(must, list) or not all(isinstance(x, str) for x in must):
            raise UsageError(f"{where}: 'must_contain' must be a list of strings")
        pages = tuple(p.strip().removeprefix("./") for p in pages)
        out.append(Question(q.strip(), pages, str(obj.get("id") or n), tuple(must)))
    if not out:
        raise UsageError(f"{path} holds no questions", "write one JSON object per line")
    return out


# --- metrics on one ranking --------------------------------------------------------------------


def first_relevant_rank(pages: Sequence[str], relevant: set[str]) -> int | None:
    """1-based rank of the first relevant page, None when there is none."""
    for i, p in enumerate(pages, start=1):
        if p in relevant:
            return i
    return None


def hit_at(pages: Sequence[str], relevant: set[str], n: int) -> float:
    return 1.0 if any(p in relevant for p in pages[:n]) else 0.0


def reciprocal_rank(pages: Sequence[str], relevant: set[str]) -> float:
    r = first_relevant_rank(pages, relevant)
    return 1.0 / r if r else 0.0


def ndcg_at(pages: Sequence[str], relevant: set[str], n: int = 10) -> float:
    """Binary-relevance nDCG@n over distinct pages; the ideal ranks every relevant page first."""
    dcg = sum(1.0 / math.log2(i + 1) for i, p in enumerate(pages[:n], start=1) if p in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), n) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distinct_pages(paths: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def summarize(rankings: Sequence[Sequence[str]], relevants: Sequence[set[str]],
              latencies_ms: Sequence[float]) -> dict[str, float]:
    """The metrics of one mode over all questions (rankings are distinct pages, best first)."""
    n = len(rankings) or 1
    pairs = list(zip(rankings, relevants, strict=True))
    out = {
        "hit@1": sum(hit_at(p, r, 1) for p, r in pairs) / n,
        "hit@5": sum(hit_at(p, r, 5) for p, r in pairs) / n,
        "hit@10": sum(hit_at(p, r, 10) for p, r in pairs) / n,
        "mrr": sum(reciprocal_rank(p, r) for p, r in pairs) / n,
        "ndcg@10": sum(ndcg_at(p, r, 10) for p, r in pairs) / n,
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
    }
    return {k: round(v, 4 if not k.endswith("_ms") else 1) for k, v in out.items()}


# --- running it --------------------------------------------------------------------------------


def _relative_to_roots(path: str, roots: Sequence[str]) -> str:
    """`path` relative to the deepest indexed root holding it (as given when no root does)."""
    best = ""
    for root in roots:
        r = root.rstrip("/")
        if (path == r or path.startswith(r + "/")) and len(r) > len(best):
            best = r
    return path[len(best) + 1:] if best else path


def run_retrieval_eval(questions: Sequence[Question], settings: Settings, k: int = 10,
                       *, per_question: bool = False) -> dict:
    """Run every question through each mode; returns {"modes": {mode: metrics}, "n": N}
    (plus "rows" with each question's ranked pages when `per_question`)."""
    from copilot.errors import IndexUnavailable
    from copilot.index.local import LocalIndex
    from copilot.retrieval import MODES, hybrid_search

    if k < 1:
        raise UsageError("--k must be at least 1")
    index = LocalIndex.open(settings)
    try:
        if index.is_empty():
            raise IndexUnavailable("the local index is empty", "run `copilot index PATH...` first")
        m = index._m()
        assert m is not None
        roots = [r.path for r in m.roots()]
        fetch = max(k, 10) * CHUNKS_PER_PAGE
        relevants = [set(q.answer_pages) for q in questions]
        result: dict = {"modes": {}, "n": len(questions)}
        rows: list[dict] = [{"id": q.id, "question": q.question, "answer_pages": list(q.answer_pages)}
                            for q in questions]
        for mode in MODES:
            hybrid_search(questions[0].question, settings, fetch, mode=mode, index=index)  # warm up
            rankings, latencies = [], []
            for q, row in zip(questions, rows, strict=True):
                t = time.perf_counter()
                hits = hybrid_search(q.question, settings, fetch, mode=mode, index=index)
                latencies.append((time.perf_counter() - t) * 1000)
                pages = distinct_pages([_relative_to_roots(h.source_path, roots) for h in hits])
                rankings.append(pages)
                row[mode] = pages[:k]
            result["modes"][mode] = summarize(rankings, relevants, latencies)
        if per_question:
            result["rows"] = rows
        return result
    finally:
        index.close()


def format_table(result: dict) -> str:
    head = f"{'mode':<8}" + "".join(f"{k:>9}" for k in METRIC_KEYS)
    lines = [head, "-" * len(head)]
    for mode, metrics in result["modes"].items():
        cells = "".join(f"{metrics[k]:>9.1f}" if k.endswith("_ms") else f"{metrics[k]:>9.3f}" for k in METRIC_KEYS)
        lines.append(f"{mode:<8}{cells}")
    lines.append(f"{result['n']} questions; page-level, a hit is any chunk of an answer page")
    return "\n".join(lines)
