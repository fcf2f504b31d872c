"""Build a synthetic local index of N chunks (default 100 000) without running the embedder.

Chunks, manifest rows, FTS rows and Chroma records are written through the index's own classes
(`Manifest`, `ChromaStore`, `chunk_metadata`, `chunk_id`, `text_hash`), the way
`copilot.index.indexer` writes them, so readers (`copilot ask`, the TUI, `hybrid_search`) open it
as a real index. Texts are sentences drawn from a vocabulary of English words and Python
identifiers; vectors are random unit vectors of dimension 384. The embedder id recorded is the
real MiniLM one (`onnx:all-MiniLM-L6-v2`), so queries run with the real model (the similarities
are meaningless, the cost is not).

Files: `--files` fake files (default 2 000) × chunks per file under a fake root
(`/synthetic/corpus`), written in batches (default 5 000 chunks) so memory stays flat.

    .venv/bin/python bench/synthetic_index.py [--data-dir /tmp/copilot-100k] [--chunks 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAKE_ROOT = "/synthetic/corpus"
DIM = 384

WORDS = """the a an of to in for on with by from when while if then else returns raises value values list
dict set tuple string bytes file path loop event task thread process call function method class object
instance module package import export error exception message type types argument arguments keyword
default option options config setting settings cache memory size length index key keys item items
iterator generator coroutine await async context manager decorator property attribute name names
test tests result results query database connection cursor row rows column table server client request
response header body json parse format encode decode unicode utf locale time date timezone timestamp
number integer float decimal round sort sorted order reverse filter map reduce sum count first last
empty none true false copy deep shallow mutable immutable hash equal compare lock queue worker pool
timeout retry signal subprocess shell command output input stream buffer read write close open flush
""".split()  # noqa: SIM905 - a word list reads best as text

IDENTIFIERS = """asyncio.run asyncio.gather asyncio.create_task asyncio.wait_for functools.lru_cache
functools.partial functools.wraps itertools.chain itertools.groupby collections.defaultdict
collections.Counter collections.OrderedDict os.path.join os.environ pathlib.Path subprocess.run
subprocess.Popen json.loads json.dumps re.compile re.sub datetime.datetime datetime.timedelta
typing.Optional dataclasses.dataclass contextlib.contextmanager threading.Lock logging.getLogger
sqlite3.connect __init__ __repr__ __eq__ __hash__ __enter__ __exit__ self.items dict.get list.append
str.join str.split str.format sys.argv sys.path KeyError ValueError TypeError RuntimeError
AttributeError IndexError StopIteration UnicodeDecodeError FileNotFoundError TimeoutError
numpy.array pandas.DataFrame requests.get open() print() len() range() enumerate() zip() sorted()
isinstance() getattr() super().__init__ yield await lambda nonlocal""".split()  # noqa: SIM905

SITES = ["stackoverflow.com", "docs.python.org", "realpython.com", ""]
KINDS = ["so", "docs", "article", "text"]


def sentence(rng: random.Random) -> str:
    n = rng.randint(8, 18)
    parts = []
    for _ in range(n):
        parts.append(rng.choice(IDENTIFIERS) if rng.random() < 0.15 else rng.choice(WORDS))
    s = " ".join(parts)
    return s[0].upper() + s[1:] + "."


def chunk_text(rng: random.Random) -> str:
    # ~600-900 characters, like a real chunk of the default size.
    out, size = [], 0
    target = rng.randint(600, 900)
    while size < target:
        s = sentence(rng)
        out.append(s)
        size += len(s) + 1
    return " ".join(out)


def build(data_dir: Path, chunks: int, files: int, batch: int, seed: int) -> None:
    import numpy as np

    from copilot.config import load_settings
    from copilot.index.chunking import CHUNKING_VERSION, chunk_id
    from copilot.index.embeddings import MINILM_ID
    from copilot.index.indexer import embed_text, source_key, text_hash
    from copilot.index.manifest import Manifest, manifest_path
    from copilot.index.store import HEADING_SEP, ChromaStore, chunk_metadata
    from copilot.index.vectors import encode

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    settings = load_settings({"data_dir": str(data_dir)}, env={"COPILOT_DATA_DIR": str(data_dir)})
    assert settings.data_path == data_dir, settings.data_path

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    per_file = -(-chunks // files)

    m = Manifest.open(manifest_path(settings.data_path))
    store, _ = ChromaStore.open_for_write(settings, embedder_id=MINILM_ID, index_id=m.index_id,
                                         allow_new_embedder=True)
    with m.transaction():
        m.set_meta("embedder", MINILM_ID)
        m.set_meta("chunking", f"{CHUNKING_VERSION}:{settings.chunk_chars}")
        m.add_root(FAKE_ROOT)

    t0 = time.monotonic()
    done = 0
    file_no = 0
    while done < chunks:
        n = min(batch, chunks - done)
        ids, metas, rows = [], [], []
        ended: list[tuple[str, int]] = []
        # whole files per batch when batch is a multiple of per_file; otherwise files may span
        # batches (the manifest row is written with the batch that ends the file).
        for i in range(n):
            g = done + i
            f = g // per_file
            pos = g % per_file
            path = f"{FAKE_ROOT}/pkg{f // 100:02d}/module_{f:05d}.md"
            title = f"module_{f:05d}: {rng.choice(IDENTIFIERS)}"
            heading = HEADING_SEP.join([title, f"section {pos // 5}", rng.choice(IDENTIFIERS)])
            text = chunk_text(rng)
            emb = embed_text(heading, text)
            cid = chunk_id(source_key(path), "", pos)
            site = SITES[f % len(SITES)]
            kind = KINDS[f % len(KINDS)]
            fields = {"url": f"https://{site}/{f}" if site else "", "site": site, "kind": kind,
                      "heading": heading, "title": title, "score": (f % 50) if kind == "so" else None,
                      "accepted": (pos == 1) if kind == "so" else None,
                      "role": ("question" if pos == 0 else "answer") if kind == "so" else "",
                      "position": pos, "doc_key": ""}
            ids.append(cid)
            metas.append(chunk_metadata(source_path=path, root=FAKE_ROOT, file_hash=f"{f:064x}", **fields))
            rows.append((cid, path, text_hash(emb), text, heading, title, fields["url"], site, kind,
                         fields["score"], None if fields["accepted"] is None else int(fields["accepted"]),
                         fields["role"], pos, ""))
            if pos == per_file - 1 or g == chunks - 1:
                ended.append((path, pos + 1))
                file_no = f + 1
        vecs = nrng.standard_normal((n, DIM), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.upsert(ids, vecs, metas)
        with m.transaction():
            m.insert_chunks((*row, encode(vec)) for row, vec in zip(rows, vecs, strict=True))
            for path, count in ended:
                m.put_file(path, FAKE_ROOT, 4096 * count, time.time_ns(), f"{hash(path) & (2**64 - 1):064x}", count)
        done += n
        el = time.monotonic() - t0
        print(f"{done:>7} chunks, {file_no} files, {el:6.1f} s ({done / el:.0f} chunks/s)", flush=True)
    m.bump_generation()
    store.close()
    m.close()
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    print(f"built {data_dir}: {done} chunks, {file_no} files, {size / 1e6:.0f} MB on disk, "
          f"{time.monotonic() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("COPILOT_100K_DIR", "/tmp/copilot-100k"))
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    build(Path(args.data_dir), args.chunks, args.files, args.batch, args.seed)


if __name__ == "__main__":
    main()
