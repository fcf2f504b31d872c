"""Reading the local index: what `copilot ask` and `copilot search` draw on.

`LocalIndex.open(settings)` is cheap: it opens only the manifest (SQLite). `is_empty()` and
`count()` never touch Chroma, so a question asked with an empty index never imports chromadb.
The first `nearest` (or `dense_search`) opens Chroma; each later one first compares the manifest's
`generation` with the one Chroma was opened at and reopens it when a writer finished since
(an embedded Chroma opened by one process does not see another process's writes otherwise).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from copilot.errors import EmbedderMismatch
from copilot.index.manifest import Manifest, manifest_path
from copilot.index.store import REINDEX_HINT, ChromaStore

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings
    from copilot.index.embeddings import Embedder


@dataclass
class LocalHit:
    id: str
    text: str
    heading: str  # "functools › @cache"
    title: str
    source_path: str
    url: str  # the page's original URL when it names one, else ""
    site: str
    kind: str  # "so" | "docs" | "article" | "text"
    score: int | None  # Stack Overflow answer score
    accepted: bool | None
    role: str  # "question" | "answer" for SO pages
    position: int
    distance: float  # cosine distance, 0 = same direction

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


class LocalIndex:
    """A reader of the local index. Not for writing: see `copilot.index.indexer`."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._manifest: Manifest | None = None
        self._store: ChromaStore | None = None
        self._store_generation = -1

    @classmethod
    def open(cls, settings: Settings, *, embedder: Embedder | None = None) -> LocalIndex:
        return cls(settings, embedder)

    def _m(self) -> Manifest | None:
        if self._manifest is None:
            path = manifest_path(self.settings.data_path)
            if not path.is_file():
                return None
            self._manifest = Manifest.open(path, create=False)
        return self._manifest

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from copilot.index.embeddings import make_embedder, shared_minilm

            # MiniLM files on disk: the process's one session (the support check uses it too)
            self._embedder = shared_minilm(self.settings) or make_embedder(self.settings)
        return self._embedder

    def count(self) -> int:
        m = self._m()
        if m is None:
            return 0
        try:
            return m.chunk_count()
        except sqlite3.OperationalError:  # busy or unreadable for now; damage is raised, not hidden as "empty"
            return 0

    def is_empty(self) -> bool:
        return self.count() == 0

    @property
    def generation(self) -> int:
        m = self._m()
        return m.generation if m is not None else 0

    def _chroma(self) -> ChromaStore | None:
        gen = self.generation
        if self._store is not None and gen != self._store_generation:
            self._store.close()
            self._store = None
        if self._store is None:
            self._store = ChromaStore.open_for_read(self.settings)
            self._store_generation = gen
        return self._store

    def check_embedder(self) -> None:
        m = self._m()
        stored = m.embedder if m is not None else None
        if stored and stored != self.embedder.embedder_id:
            raise EmbedderMismatch(f"the index was built with {stored} but the embedder is "
                                   f"{self.embedder.embedder_id}", REINDEX_HINT)

    def nearest(self, query: str, limit: int) -> tuple[list[tuple[str, float]], np.ndarray | None]:
        """The chunks nearest `query` by meaning: (id, cosine similarity), nearest first, at least
        `limit` of them when the index holds that many, and the query's vector (None when there is
        nothing to search).

        Chroma gives the nearest `vectors.POOL` (or `limit`) by its short vectors; all of them come
        back, ranked again by the exact vectors the manifest keeps (`copilot.index.vectors`), so a
        caller can look further down without asking again."""
        m = self._m()
        if m is None or limit <= 0 or self.is_empty():
            return [], None
        self.check_embedder()
        store = self._chroma()
        if store is None:
            return [], None
        if store.embedder_id and store.embedder_id != self.embedder.embedder_id:
            raise EmbedderMismatch(f"the index was built with {store.embedder_id} but the embedder is "
                                   f"{self.embedder.embedder_id}", REINDEX_HINT)
        from copilot.index.vectors import POOL

        vector = self.embedder.embed_query(query)
        found = store.query(vector, max(limit, POOL))
        exact = self.similarities([cid for cid, _ in found], vector)
        ranked = sorted(((cid, exact.get(cid, 1.0 - distance)) for cid, distance in found), key=lambda x: -x[1])
        return ranked, vector

    def similarities(self, ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Exact cosine of `vector` with each chunk in `ids` whose vector the manifest keeps."""
        m = self._m()
        if m is None or not ids:
            return {}
        from copilot.index.vectors import cosines

        blobs = m.vectors(ids)
        return dict(zip(blobs, cosines(vector, list(blobs.values())).tolist(), strict=True))

    def dense_search(self, query: str, k: int = 8) -> list[LocalHit]:
        """The k chunks nearest the query by meaning, nearest first."""
        # Identical text in two files is two chunks with one vector: ask for a few more and keep
        # the first of each text.
        want = k + min(k, 8)
        found = self.nearest(query, want)[0][:want]
        if not found:
            return []
        m = self._m()
        assert m is not None
        rows = m.chunks_by_id([cid for cid, _ in found])
        hits: list[LocalHit] = []
        seen: set[str] = set()
        for cid, similarity in found:
            row = rows.get(cid)
            if row is None or row["text_hash"] in seen:  # gone since (a write in progress), or a twin
                continue
            if len(hits) >= k:
                break
            seen.add(row["text_hash"])
            hits.append(LocalHit(
                id=cid, text=row["text"], heading=row["heading"], title=row["title"],
                source_path=row["source_path"], url=row["url"], site=row["site"], kind=row["kind"],
                score=row["score"], accepted=None if row["accepted"] is None else bool(row["accepted"]),
                role=row["role"], position=row["position"], distance=1.0 - similarity))
        return hits

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
