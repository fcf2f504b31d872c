"""Index benchmark: the whole `copilot index` path on a real corpus, with the real model.

Corpus: the HTML pages of Debian's Python docs (`python3-doc`, 530 pages, copied to a temporary
folder so one can be edited) plus the saved Stack Overflow pages of `../shared/data`.

1. First run into a fresh data dir: pages/s, chunks/s, time spent embedding, peak RSS, index size.
2. Re-index of the unchanged corpus, as `copilot index` in a new process (wall clock, the goal is
   < 3 s) and in-process.
3. Touch one page (mtime only): what is re-embedded. Edit one page (a paragraph added): what is
   re-embedded, against that page's chunk count.
4. Code survival: the share of the docs' multi-line `<pre>` blocks whose lines are found,
   consecutive and with their line breaks, in the chunks stored for the page (the check of
   bench/extraction.py, imported from there).

`--many N` measures something else instead: memory and time over N tiny Markdown files (one chunk
each) with a stand-in embedder (hashed words), so what grows is the indexer and Chroma, not the model.

Usage:
    PYTHONPATH=. .venv/bin/python bench/index_corpus.py [--docs DIR] [--so DIR] [--limit N]
        [--model-dir DIR] [--write bench/results/index.md]
    PYTHONPATH=. .venv/bin/python bench/index_corpus.py --many 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.extraction import _line_index, _norm_lines, block_survives, pre_blocks  # noqa: E402
from copilot.config import load_settings  # noqa: E402
from copilot.index.embeddings import MiniLMEmbedder, find_model_dir  # noqa: E402
from copilot.index.indexer import run_index  # noqa: E402
from copilot.index.manifest import manifest_path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = Path("/usr/share/doc/python3.11-doc/html")
DEFAULT_SO = REPO.parent / "shared" / "data" / "stackoverflow-pages"
_FENCE = ("```", "~~~")


class TimedEmbedder:
    """Wraps an embedder to add up the time and texts it embeds."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.embedder_id = inner.embedder_id
        self.dim = inner.dim
        self.seconds = 0.0
        self.texts = 0

    def embed(self, texts):
        t0 = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        return out

    def embed_query(self, text):
        return self.inner.embed_query(text)


def du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_size
    return total


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def copy_pages(docs: Path, so: Path, dest: Path, limit: int | None) -> tuple[Path, Path, int]:
    docs = docs.resolve()
    pages = sorted(docs.rglob("*.html"))[:limit] if limit else sorted(docs.rglob("*.html"))
    docs_out = dest / "python-docs"
    for p in pages:
        target = docs_out / p.relative_to(docs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    so_out = dest / "stackoverflow"
    shutil.copytree(so, so_out)
    return docs_out, so_out, len(pages)


def chunk_texts(data: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(str(manifest_path(data)))
    try:
        out: dict[str, list[str]] = {}
        for path, text in conn.execute("SELECT source_path, text FROM chunks ORDER BY source_path, doc_key, position"):
            out.setdefault(path, []).append(text)
        return out
    finally:
        conn.close()


def code_survival(docs_src: Path, docs_copy: Path, texts: dict[str, list[str]]) -> dict:
    """Blocks kept whole inside one chunk, and kept across chunk boundaries (a block longer than a
    chunk is cut at line boundaries and each part re-fenced; fence lines are ignored there)."""
    blocks = within = across = 0
    missing: list[tuple[int, str]] = []
    for page in sorted(docs_copy.rglob("*.html")):
        found = pre_blocks(page.read_text(encoding="utf-8", errors="replace"))
        if not found:
            continue
        chunks = texts.get(str(page), [])
        per_chunk = []
        for t in chunks:
            lines = _norm_lines(t)
            per_chunk.append((lines, _line_index(lines)))
        joined = [line for t in chunks for line in _norm_lines(t) if not line.startswith(_FENCE)]
        joined_index = _line_index(joined)
        lost = 0
        for block, _in_dd in found:
            blocks += 1
            whole = any(block_survives(block, lines, index) for lines, index in per_chunk)
            within += whole
            ok = whole or block_survives(block, joined, joined_index)
            across += ok
            lost += not ok
        if lost:
            missing.append((lost, str(page.relative_to(docs_copy))))
    missing.sort(reverse=True)
    return {"blocks": blocks, "within": within, "across": across, "worst": missing[:8]}


def cli_reindex(roots: list[Path], data: Path, model_dir: Path) -> tuple[float, dict]:
    env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_EMBED_MODEL_DIR": str(model_dir)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "copilot", "index", *map(str, roots), "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"copilot index failed: {done.stderr}")
    return wall, json.loads(done.stdout)


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def many_files(n: int) -> str:
    """Resident memory while indexing n tiny files, and the unchanged re-run's time."""
    import chromadb  # noqa: F401 - loaded first, so its import is not counted as growth

    from copilot.config import Settings
    from tests.index_helpers import CountingEmbedder

    work = Path(tempfile.mkdtemp(prefix="copilot-index-many-"))
    try:
        src = work / "notes"
        for i in range(n):
            folder = src / f"d{i // 500:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"n{i:05d}.md").write_text(f"# Note {i}\n\nSmall note number {i} about topic {i % 97}.\n")
        settings = Settings(data_dir=str(work / "data"))
        start = _rss_mb()
        marks: list[tuple[int, int]] = []
        step = max(1, n // 10)

        def progress(p) -> None:
            if p.files_done and p.files_done % step == 0 and (not marks or marks[-1][0] != p.files_done):
                marks.append((p.files_done, _rss_mb()))

        first = run_index([src], settings, embedder=CountingEmbedder(), on_progress=progress)
        again = run_index([src], settings, embedder=CountingEmbedder())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join([
        f"## Many small files ({n} one-chunk Markdown notes, stand-in embedder)",
        "",
        f"Command: `PYTHONPATH=. .venv/bin/python bench/index_corpus.py --many {n}`",
        "",
        f"First run {first.seconds:.1f} s ({first.added} files, {first.chunks} chunks); unchanged re-run "
        f"{again.seconds:.2f} s. Resident memory: {start} MB before (chromadb loaded), then by files done: "
        + ", ".join(f"{done}: {mb_} MB" for done, mb_ in marks) + ".",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--so", type=Path, default=DEFAULT_SO)
    parser.add_argument("--limit", type=int, default=None, help="first N docs pages only")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="all-MiniLM-L6-v2 files (default: as copilot finds them)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--write", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--many", type=int, default=0, help="only the many-small-files measurement")
    args = parser.parse_args(argv)
    if args.many:
        print(many_files(args.many))
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="copilot-index-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = load_settings({"data_dir": str(work / "data")})
    model_dir = args.model_dir or find_model_dir(settings)
    if model_dir is None:
        raise SystemExit("no all-MiniLM-L6-v2 files found: pass --model-dir or set COPILOT_EMBED_MODEL_DIR")
    settings.embed_model_dir = str(model_dir)
    docs_copy, so_copy, n_docs = copy_pages(args.docs, args.so, work / "corpus", args.limit)
    roots = [docs_copy, so_copy]
    n_files = sum(1 for r in roots for p in r.rglob("*") if p.is_file())
    print(f"corpus: {n_docs} docs pages + {n_files - n_docs} files of saved SO pages in {work}", file=sys.stderr)

    embedder = TimedEmbedder(MiniLMEmbedder(settings, model_dir=model_dir))
    t0 = time.perf_counter()
    embedder.inner.prepare()
    load_s = time.perf_counter() - t0
    first = run_index(roots, settings, embedder=embedder)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sizes = {"chroma": du(settings.data_path / "index" / "chroma"),
             "manifest": sum(p.stat().st_size for p in (settings.data_path / "index").glob("manifest.sqlite*"))}
    pages = first.added + first.updated
    print(f"first run: {first.seconds:.1f} s, {pages} files, {first.chunks} chunks", file=sys.stderr)

    cli_wall, cli_obj = cli_reindex(roots, settings.data_path, model_dir)
    embedder.texts = 0
    again = run_index(roots, settings, embedder=embedder)

    page = docs_copy / "library" / "functools.html"
    if not page.exists():
        page = sorted(docs_copy.rglob("*.html"))[0]
    st = page.stat()
    os.utime(page, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = run_index(roots, settings, embedder=embedder)
    touched_embedded = embedder.texts

    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    page_chunks = conn.execute("SELECT chunks FROM files WHERE path = ?", (str(page),)).fetchone()[0]
    conn.close()
    html = page.read_text(encoding="utf-8")
    marker = '<div class="body" role="main">'
    added_para = ('<p>Benchmark edit: a new paragraph about memoizing recursive functions with a bounded '
                  'cache, added to see what is embedded again.</p>')
    if marker in html:
        html = html.replace(marker, marker + added_para, 1)
    else:
        html = html.replace("</body>", added_para + "</body>")
    page.write_text(html, encoding="utf-8")
    embedder.texts = 0
    edited = run_index(roots, settings, embedder=embedder)
    edited_embedded = embedder.texts
    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    page_chunks_after = conn.execute("SELECT chunks FROM files WHERE path = ?", (str(page),)).fetchone()[0]
    conn.close()

    survival = code_survival(args.docs.resolve(), docs_copy, chunk_texts(settings.data_path))

    cpu = os.cpu_count()
    command = (f" --limit {args.limit}" if args.limit else "") + (f" --write {args.write}" if args.write else "")
    share = {k: f"{100 * survival[k] / max(1, survival['blocks']):.1f} %" for k in ("within", "across")}
    lines = [
        "# Index benchmark",
        "",
        f"Command: `PYTHONPATH=. .venv/bin/python bench/index_corpus.py{command}`",
        "",
        f"Machine: {cpu} cores, Python {platform.python_version()}; the model is all-MiniLM-L6-v2 "
        f"(`{model_dir.name}`), in process with onnxruntime. Embedded Chroma. Numbers from one run; the "
        "machine was shared with other work, so rates are lower bounds.",
        "",
        f"Corpus: {n_docs} pages of Debian's Python docs (HTML) + {n_files - n_docs} files from "
        "`shared/data/stackoverflow-pages` (saved SO pages, a manifest.json and a PROVENANCE.md).",
        "",
        "## First run (fresh data dir)",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| files indexed / skipped | {pages} / {len(first.skipped)} |",
        f"| chunks stored | {first.chunks} |",
        f"| chunk texts embedded / vectors reused | {first.embedded} / {first.reused} |",
        f"| wall time (model already loaded; loading took {load_s:.1f} s) | {first.seconds:.1f} s |",
        f"| pages/s | {pages / first.seconds:.2f} |",
        f"| chunks/s | {first.chunks / first.seconds:.1f} |",
        f"| of which embedding | {embedder.seconds:.1f} s ({100 * embedder.seconds / first.seconds:.0f} %) |",
        f"| peak RSS (whole process: model, Chroma, extraction) | {mb(rss)} |",
        f"| index on disk: Chroma folder | {mb(sizes['chroma'])} |",
        f"| index on disk: manifest + FTS (SQLite) | {mb(sizes['manifest'])} |",
        "",
        "Skipped: " + (", ".join(f"`{Path(p).name}` ({r})" for p, r in first.skipped) or "none") + ".",
        "",
        "## Re-index, touch, edit",
        "",
        "| run | wall time | added / updated / removed / unchanged | chunk texts embedded | Chroma opened |",
        "| --- | ---: | --- | ---: | --- |",
        f"| unchanged, `copilot index` in a new process | {cli_wall:.2f} s | {cli_obj['added']} / {cli_obj['updated']}"
        f" / {cli_obj['removed']} / {cli_obj['unchanged']} | 0 | no |",
        f"| unchanged, in process | {again.seconds:.2f} s | {again.added} / {again.updated} / {again.removed} / "
        f"{again.unchanged} | {again.embedded} | {'yes' if again.opened_store else 'no'} |",
        f"| `{page.name}` touched (mtime only) | {touched.seconds:.2f} s | {touched.added} / {touched.updated} / "
        f"{touched.removed} / {touched.unchanged} | {touched_embedded} | {'yes' if touched.opened_store else 'no'} |",
        f"| `{page.name}` edited (a paragraph added) | {edited.seconds:.2f} s | {edited.added} / {edited.updated} / "
        f"{edited.removed} / {edited.unchanged} | {edited_embedded} of the page's {page_chunks_after} chunks "
        f"(was {page_chunks}) | {'yes' if edited.opened_store else 'no'} |",
        "",
        "A touched file is hashed and, its SHA-256 unchanged, only its manifest row is updated. An "
        "edited file's chunks are all replaced, but only chunk texts not already stored are embedded: "
        "the others take their vectors from Chroma (by chunk-text hash).",
        "",
        "## Code blocks in stored chunks",
        "",
        f"Multi-line `<pre>` blocks in the {n_docs} docs pages: {survival['blocks']}. A block counts as kept "
        "when all its non-empty lines appear consecutively (whitespace collapsed) in the stored chunks "
        "of its page (`bench/extraction.py`'s check).",
        "",
        "| where | kept | share |",
        "| --- | ---: | ---: |",
        f"| whole inside one chunk | {survival['within']} | {share['within']} |",
        f"| across chunk boundaries allowed (a block longer than a chunk is cut at line breaks and re-fenced) | "
        f"{survival['across']} | {share['across']} |",
        "",
        ("Pages losing blocks: " + ", ".join(f"`{p}` ({n})" for n, p in survival["worst"]) + ".")
        if survival["worst"] else "No page lost a block.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
