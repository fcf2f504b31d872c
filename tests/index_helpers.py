"""Helpers for the local index tests: a counting fake embedder, folders of small pages, and ways
to read back what the index holds (fixtures are in tests/fixtures_index.py)."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np

from copilot.config import Settings

_WORD = re.compile(r"\w+")


class CountingEmbedder:
    """A deterministic stand-in for MiniLM (hashed bag of words) that counts what it embeds."""

    embedder_id = "test:hashed-words"
    dim = 48

    def __init__(self) -> None:
        self.calls = 0
        self.texts: list[str] = []

    def reset(self) -> None:
        self.calls = 0
        self.texts = []

    def embed(self, texts):
        texts = list(texts)
        self.calls += 1
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in _WORD.findall(t.lower()):
                out[i, int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") % self.dim] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1
        return out / norms

    def embed_query(self, text: str):
        return self.embed([text])[0]


def page(title: str, sections: dict[str, str]) -> str:
    """A small Markdown page: a title and one section per heading."""
    parts = [f"# {title}\n"]
    for head, body in sections.items():
        parts.append(f"## {head}\n\n{body}\n")
    return "\n".join(parts)


def write_pages(folder: Path, count: int, *, prefix: str = "page", sections: int = 2) -> list[Path]:
    """`count` Markdown pages of distinct text, `sections` headed sections each (one chunk each)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        body = {f"Part {j} of {prefix} {i}": f"Notes number {i}-{j} about {prefix} topic {i * 31 + j}: "
                f"the value is {hashlib.sha1(f'{prefix}{i}{j}'.encode()).hexdigest()[:12]}.\n\n"
                f"```python\nprint({i}, {j})\nresult_{i}_{j} = compute({i} + {j})\n```"
                for j in range(sections)}
        p = folder / f"{prefix}-{i:04d}.md"
        p.write_text(page(f"{prefix.title()} {i}", body), encoding="utf-8")
        out.append(p)
    return out


def chroma_ids(settings: Settings) -> set[str]:
    from copilot.index.store import ChromaStore

    store = ChromaStore.open_for_read(settings)
    if store is None:
        return set()
    try:
        return store.all_ids()
    finally:
        store.close()


def chroma_paths(settings: Settings) -> dict[str, str]:
    """chunk id -> source_path as Chroma holds them."""
    from copilot.index.store import ChromaStore

    store = ChromaStore.open_for_read(settings)
    if store is None:
        return {}
    try:
        got = store.collection.get(include=["metadatas"])
        return {cid: m["source_path"] for cid, m in zip(got["ids"], got["metadatas"], strict=True)}
    finally:
        store.close()


def manifest_state(settings: Settings) -> dict:
    """What the manifest holds: chunk ids, file rows, pending paths, FTS row count."""
    from copilot.index.manifest import manifest_path

    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    try:
        return {
            "ids": {r[0] for r in conn.execute("SELECT id FROM chunks")},
            "files": {r[0]: r[1] for r in conn.execute("SELECT path, chunks FROM files")},
            "pending": [r[0] for r in conn.execute("SELECT path FROM pending")],
            "fts": conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0],
            "fts_ids": {r[0] for r in conn.execute("SELECT id FROM chunks_fts")},
        }
    finally:
        conn.close()


def committed_files(data: Path) -> int:
    """Files the manifest under data dir `data` has committed (0 while there is none)."""
    from copilot.index.manifest import manifest_path

    path = manifest_path(data)
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def wait_for_files(proc: subprocess.Popen, data: Path, n: int, timeout: float = 60) -> None:
    """Wait until the running `copilot index` `proc` has committed `n` files (bounded)."""
    deadline = time.monotonic() + timeout
    while committed_files(data) < n:
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
        assert time.monotonic() < deadline, "no file was committed in time"
        time.sleep(0.02)


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
