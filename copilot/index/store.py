"""The Chroma side of the local index: one collection of chunk vectors and their fields.

Embedded (`chromadb.PersistentClient` under `<data>/index/chroma`) by default; a Chroma server
(`chroma run`) when `settings.chroma_url` names one. Everything else is the same code.

- One collection, `copilot`, cosine space, no Chroma embedding function: the vectors come from
  `copilot.index.embeddings`. Its metadata records the embedder that built it, the schema
  version and the id of the manifest it belongs to (see `copilot.index.manifest`).
- Chunk text is not stored in Chroma: the manifest keeps it once (for the keyword index too) and
  readers join hits to it by chunk id. Chroma's embedded store would otherwise hold each text a
  second time plus its own trigram index of it.
- chromadb is imported only when a store is opened (it costs ~0.8 s); `copilot --help` and
  re-indexing an unchanged folder never open one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from copilot.errors import EmbedderMismatch, IndexUnavailable
from copilot.index.manifest import index_dir

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings

COLLECTION = "copilot"
CHROMA_SCHEMA = 1
HEADING_SEP = " › "
REINDEX_HINT = "re-index with `copilot index --rebuild PATH...` (or set embed_model back)"


def chroma_dir(data_path: Path) -> Path:
    return index_dir(data_path) / "chroma"


def chunk_metadata(*, source_path: str, root: str, url: str, site: str, kind: str, heading: str, title: str,
                   score: int | None, accepted: bool | None, role: str, position: int, doc_key: str,
                   file_hash: str) -> dict[str, str | int | float | bool]:
    """Chroma metadata of one chunk. Chroma takes only str/int/float/bool: unknown values are left out."""
    meta: dict[str, str | int | float | bool] = {
        "source_path": source_path, "root": root, "url": url, "site": site, "kind": kind,
        "heading": heading, "title": title, "role": role, "position": int(position), "doc_key": doc_key,
        "file_hash": file_hash,
    }
    if score is not None:
        meta["score"] = int(score)
    if accepted is not None:
        meta["accepted"] = bool(accepted)
    return meta


def _settings_obj() -> Any:
    import chromadb

    # The same values every time: chromadb refuses a second client on a path with other settings.
    return chromadb.Settings(anonymized_telemetry=False, allow_reset=False)


def _describe(settings: Settings) -> str:
    return f"the Chroma server at {settings.chroma_url}" if settings.chroma_url else \
        f"the index in {chroma_dir(settings.data_path)}"


def connect(settings: Settings) -> Any:
    """A chromadb client for the settings: HTTP when `chroma_url` is set, else embedded."""
    logging.getLogger("chromadb").setLevel(logging.ERROR)
    import chromadb

    if settings.chroma_url:
        parts = urlsplit(settings.chroma_url if "://" in settings.chroma_url else f"http://{settings.chroma_url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IndexUnavailable(f"COPILOT_CHROMA_URL {settings.chroma_url!r} is not an http(s) URL",
                                   "use e.g. http://127.0.0.1:8000")
        port = parts.port or (443 if parts.scheme == "https" else 8000)
        try:
            return chromadb.HttpClient(host=parts.hostname, port=port, ssl=parts.scheme == "https",
                                       settings=_settings_obj())
        except Exception as e:  # noqa: BLE001 - chromadb raises ValueError or its own classes
            raise IndexUnavailable(f"cannot reach the Chroma server at {settings.chroma_url} ({_first_line(e)})",
                                   "start it with `chroma run --path DIR --port N`, or unset COPILOT_CHROMA_URL "
                                   "to use the embedded index") from None
    folder = chroma_dir(settings.data_path)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(folder), settings=_settings_obj())
    except Exception as e:  # noqa: BLE001
        raise IndexUnavailable(f"cannot open {_describe(settings)} ({_first_line(e)})",
                               "run `copilot index --rebuild PATH...` to build it again") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


class ChromaStore:
    """The collection, opened for reading or writing."""

    def __init__(self, settings: Settings, client: Any, collection: Any) -> None:
        self.settings = settings
        self.client = client
        self.collection = collection

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open_for_write(cls, settings: Settings, *, embedder_id: str, index_id: str,
                       allow_new_embedder: bool) -> tuple[ChromaStore, bool]:
        """Open the collection, making it when missing. Returns (store, started_over).

        `started_over` is True when the collection had to be made anew (it was missing, or belongs to
        another manifest): the caller must then forget what its manifest says is stored. A
        collection built by another embedder is an error unless `allow_new_embedder` (an empty or
        rebuilt index), in which case it is emptied and takes the new embedder."""
        from chromadb.errors import NotFoundError

        client = connect(settings)
        try:
            try:
                col = client.get_collection(COLLECTION, embedding_function=None)
            except NotFoundError:
                col = None
            started_over = False
            if col is not None:
                meta = col.metadata or {}
                ours = meta.get("index_id") == index_id and meta.get("schema") == CHROMA_SCHEMA
                stored = meta.get("embedder")
                if ours and stored and stored != embedder_id and not allow_new_embedder:
                    raise EmbedderMismatch(f"the index was built with {stored} but the embedder is {embedder_id}",
                                           REINDEX_HINT)
                if not ours or stored != embedder_id:
                    client.delete_collection(COLLECTION)
                    col = None
            if col is None:
                started_over = True
                col = client.create_collection(
                    COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
                    metadata={"embedder": embedder_id, "schema": CHROMA_SCHEMA, "index_id": index_id})
        except (EmbedderMismatch, IndexUnavailable):
            raise
        except Exception as e:  # noqa: BLE001
            raise IndexUnavailable(f"cannot open {_describe(settings)} ({_first_line(e)})",
                                   "run `copilot index --rebuild PATH...` to build it again") from None
        return cls(settings, client, col), started_over

    @classmethod
    def open_for_read(cls, settings: Settings) -> ChromaStore | None:
        """The collection, or None when there is none yet."""
        from chromadb.errors import NotFoundError

        client = connect(settings)
        try:
            col = client.get_collection(COLLECTION, embedding_function=None)
        except NotFoundError:
            return None
        except Exception as e:  # noqa: BLE001
            raise IndexUnavailable(f"cannot open {_describe(settings)} ({_first_line(e)})",
                                   "run `copilot index --rebuild PATH...` to build it again") from None
        return cls(settings, client, col)

    @staticmethod
    def drop(settings: Settings) -> None:
        """Delete the collection (for --rebuild)."""
        from chromadb.errors import NotFoundError

        client = connect(settings)
        try:
            client.delete_collection(COLLECTION)
        except NotFoundError:
            pass
        finally:
            _close(client)

    def close(self) -> None:
        _close(self.client)
        self.client = self.collection = None

    # --- data ------------------------------------------------------------------------------------

    @property
    def embedder_id(self) -> str:
        return str((self.collection.metadata or {}).get("embedder") or "")

    @property
    def index_id(self) -> str:
        return str((self.collection.metadata or {}).get("index_id") or "")

    def count(self) -> int:
        return int(self.collection.count())

    def _batch(self) -> int:
        try:
            return max(1, min(int(self.client.get_max_batch_size()), 1000))
        except Exception:  # noqa: BLE001 - older servers
            return 500

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict]) -> None:
        step = self._batch()
        for start in range(0, len(ids), step):
            self.collection.upsert(ids=list(ids[start:start + step]), embeddings=vectors[start:start + step],
                                   metadatas=list(metadatas[start:start + step]))

    def delete_paths(self, paths: Sequence[str]) -> None:
        """Delete every chunk whose source_path is one of `paths` (whatever ids they have)."""
        for start in range(0, len(paths), 200):
            part = list(paths[start:start + 200])
            where = {"source_path": part[0]} if len(part) == 1 else {"source_path": {"$in": part}}
            self.collection.delete(where=where)

    def delete_ids(self, ids: Sequence[str]) -> None:
        step = self._batch()
        for start in range(0, len(ids), step):
            self.collection.delete(ids=list(ids[start:start + step]))

    def get_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id; ids Chroma does not hold are left out."""
        import numpy as np

        out: dict[str, np.ndarray] = {}
        step = self._batch()
        for start in range(0, len(ids), step):
            got = self.collection.get(ids=list(ids[start:start + step]), include=["embeddings"])
            embeddings = got.get("embeddings")
            if embeddings is None:
                continue
            for cid, vec in zip(got["ids"], embeddings, strict=True):
                out[cid] = np.asarray(vec, dtype=np.float32)
        return out

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        total = self.count()
        step = 5000
        for offset in range(0, total, step):
            ids.update(self.collection.get(include=[], limit=step, offset=offset)["ids"])
        return ids

    def query(self, vector: np.ndarray, k: int, where: dict | None = None) -> list[tuple[str, float, dict]]:
        """The k nearest chunks: (id, cosine distance, metadata), nearest first."""
        n = min(k, self.count())
        if n <= 0:
            return []
        res = self.collection.query(query_embeddings=[vector], n_results=n, where=where,
                                    include=["distances", "metadatas"])
        ids = res["ids"][0]
        distances = (res.get("distances") or [[0.0] * len(ids)])[0]
        metas = (res.get("metadatas") or [[{}] * len(ids)])[0]
        return [(cid, float(d), dict(m or {})) for cid, d, m in zip(ids, distances, metas, strict=True)]


def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is best effort
            logging.getLogger(__name__).debug("closing the Chroma client failed", exc_info=True)
