"""The Chroma side of the local index: one collection of chunk vectors and their fields.

Embedded (`chromadb.PersistentClient` under `<data>/index/chroma`) by default; a Chroma server
(`chroma run`) when `settings.chroma_url` names one. Everything else is the same code.

- One collection, `copilot`, cosine space, no Chroma embedding function: the vectors come from
  `copilot.index.embeddings`. Its metadata records the embedder that built it, the projection
  its vectors went through, the schema version and the id of the manifest it belongs to (see
  `copilot.index.manifest`).
- Chroma holds short vectors (`copilot.index.vectors`: MiniLM's projected to 64 dimensions, so
  its in-memory HNSW index is a third of the size); the manifest keeps the exact ones. `upsert`
  and `query` take full vectors and project them here.
- Chunk text is not stored in Chroma: the manifest keeps it once (for the keyword index too) and
  readers join hits to it by chunk id. Chroma's embedded store would otherwise hold each text a
  second time plus its own trigram index of it.
- chromadb is imported only when a store is opened (it costs ~0.8 s); `copilot --help` and
  re-indexing an unchanged folder never open one. Its import is made without the OpenTelemetry
  gRPC exporter (`_import_chromadb`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from copilot.errors import EmbedderMismatch, IndexDamaged, IndexUnavailable, IndexWriteFailed
from copilot.index.manifest import REBUILD_HINT, index_dir

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings

COLLECTION = "copilot"
CHROMA_SCHEMA = 2  # 2: projected vectors
# hnswlib's M (Chroma's default is 16). With 64-dim vectors and the exact re-ranking of 400
# candidates, 8 found the same chunks (recall of the exact top 10 on the Python docs: 0.959 with 8,
# 0.962 with 16) and keeps ~7 MiB less in memory per 100k chunks.
HNSW_NEIGHBORS = 8
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


# chromadb imports its OpenTelemetry span exporter, and with it gRPC's C core and protobuf, when
# it is imported (12 MiB resident, ~0.1 s), but uses it only when a Chroma setting names an
# OpenTelemetry collector, which copilot never sets. A stand-in module takes its place until then.
_OTLP_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def _import_chromadb() -> Any:
    """`import chromadb`, with the exporter's module standing in until one of its names is called."""
    import sys

    if "chromadb" not in sys.modules and _OTLP_EXPORTER not in sys.modules:
        import types

        stand_in = types.ModuleType(_OTLP_EXPORTER)
        stand_in.__getattr__ = _deferred_exporter_name  # type: ignore[method-assign]
        sys.modules[_OTLP_EXPORTER] = stand_in
    import chromadb

    return chromadb


def _deferred_exporter_name(name: str) -> Any:
    """What `from <exporter> import NAME` gets from the stand-in: a callable that imports the real
    module (replacing the stand-in) and calls its NAME."""
    if name.startswith("__"):
        raise AttributeError(name)

    def call_real(*args: Any, **kwargs: Any) -> Any:
        import importlib
        import sys

        if getattr(sys.modules.get(_OTLP_EXPORTER), "__getattr__", None) is _deferred_exporter_name:
            del sys.modules[_OTLP_EXPORTER]
        return getattr(importlib.import_module(_OTLP_EXPORTER), name)(*args, **kwargs)

    return call_real


def _settings_obj() -> Any:
    chromadb = _import_chromadb()

    # The same values every time: chromadb refuses a second client on a path with other settings.
    return chromadb.Settings(anonymized_telemetry=False, allow_reset=False)


def _describe(settings: Settings) -> str:
    return f"the Chroma server at {settings.chroma_url}" if settings.chroma_url else \
        f"the index in {chroma_dir(settings.data_path)}"


def connect(settings: Settings) -> Any:
    """A chromadb client for the settings: HTTP when `chroma_url` is set, else embedded."""
    logging.getLogger("chromadb").setLevel(logging.ERROR)
    chromadb = _import_chromadb()

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
        _forget_failed_system(folder)
        raise IndexUnavailable(f"cannot open {_describe(settings)} ({_first_line(e)})",
                               "run `copilot index --rebuild PATH...` to build it again") from None


def _forget_failed_system(folder: Path) -> None:
    """chromadb caches one System per path, even one whose start failed (a damaged folder): later
    opens of that path in this process would get the broken one. Drop it, so that the next open
    (after `--rebuild` set the folder aside, or in a long-running TUI) really tries again."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(str(folder), None)
    except (ImportError, AttributeError):  # another chromadb layout: nothing cached to drop
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else e.__class__.__name__


def collection_name(settings: Settings, index_id: str) -> str:
    """The collection of the index whose manifest has `index_id`. Embedded, a data dir has its own
    Chroma folder and the name is fixed. A Chroma server may serve several data dirs (two users,
    two machines): each index gets its own collection, so that no run can touch another's chunks
    (one shared collection meant the second data dir deleted the first one's vectors, and two
    users indexing the same path wrote the same chunk ids)."""
    return f"{COLLECTION}-{index_id}" if settings.chroma_url and index_id else COLLECTION


def _find_collection(client: Any, settings: Settings, index_id: str) -> Any:
    """The index's collection, or None. On a server, an older copilot's single `copilot`
    collection is still used when it was made for this very manifest."""
    from chromadb.errors import NotFoundError

    if settings.chroma_url and not index_id:
        return None  # no manifest: nothing on the server is ours
    name = collection_name(settings, index_id)
    for candidate in dict.fromkeys((name, COLLECTION)):
        try:
            col = client.get_collection(candidate, embedding_function=None)
        except NotFoundError:
            continue
        if candidate == name or (col.metadata or {}).get("index_id") == index_id:
            return col
    return None


def _current_layout(meta: dict, embedder_id: str) -> bool:
    """Whether a collection's metadata says it holds this version's vectors for `embedder_id`
    (the schema, and the projection `copilot.index.vectors` uses for that embedder)."""
    from copilot.index.vectors import projection_name

    return meta.get("schema") == CHROMA_SCHEMA and meta.get("projection", "") == projection_name(embedder_id)


def _manifest_index_id(settings: Settings) -> str:
    from copilot.index.manifest import Manifest, manifest_path

    path = manifest_path(settings.data_path)
    if not settings.chroma_url or not path.is_file():
        return ""
    m = Manifest.open(path, create=False)
    try:
        return m.index_id
    finally:
        m.close()


# --- failures --------------------------------------------------------------------------------------

RECONNECT_SECONDS = 5.0  # how long a writer keeps retrying a Chroma server that went away
_WRITES = frozenset({"add", "upsert", "update", "delete", "modify"})


def _connection_lost(e: BaseException) -> bool:
    import httpx

    return isinstance(e, httpx.TransportError | ConnectionError)


def _open_failed(settings: Settings, e: BaseException) -> IndexUnavailable:
    if settings.chroma_url and _connection_lost(e):
        return IndexUnavailable(f"cannot reach the Chroma server at {settings.chroma_url} ({_first_line(e)})",
                                "start it with `chroma run --path DIR --port N`, or unset COPILOT_CHROMA_URL "
                                "to use the embedded index")
    return IndexUnavailable(f"cannot open {_describe(settings)} ({_first_line(e)})",
                            "run `copilot index --rebuild PATH...` to build it again")


class _Guarded:
    """A chromadb collection whose calls fail as copilot errors, with one line a user can act on.

    A server that went away (stopped, restarted) is retried for `reconnect_s` seconds: every call
    the index makes is idempotent (upserts and deletes by id or by source path, reads), so a
    restart costs nothing. After that, or at once for other failures (a full disk, a damaged
    folder), writes raise IndexWriteFailed and reads IndexUnavailable. Other attributes pass through."""

    def __init__(self, collection: Any, settings: Settings, *, reconnect_s: float) -> None:
        self._col = collection
        self._settings = settings
        self._reconnect_s = reconnect_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._col, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, attr, args, kwargs)

        return call

    def _call(self, name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
        from chromadb.errors import ChromaError

        deadline: float | None = None
        while True:
            try:
                return fn(*args, **kwargs)
            except (ChromaError, OSError) as e:
                if self._settings.chroma_url and _connection_lost(e):
                    failure: BaseException = e
                else:
                    raise self._failed(name, e) from None
            except Exception as e:  # noqa: BLE001 - httpx errors of a server that went away
                if not (self._settings.chroma_url and _connection_lost(e)):
                    raise
                failure = e
            now = time.monotonic()
            if deadline is None:  # the first failure: always one more try (a pooled connection went stale)
                deadline = now + self._reconnect_s
            elif now >= deadline:
                raise IndexUnavailable(
                    f"lost the Chroma server at {self._settings.chroma_url} ({_first_line(failure)})",
                    "check that `chroma run` is up; what was finished is kept and the next run "
                    "finishes the rest") from None
            time.sleep(min(0.2, max(0.0, deadline - now)))

    def _failed(self, name: str, e: BaseException) -> Exception:
        what = _describe(self._settings)
        if name in _WRITES:
            return IndexWriteFailed(f"could not write {what} ({_first_line(e)})",
                                    "check free disk space and that the folder is writable; what was "
                                    "finished is kept and the next `copilot index` finishes the rest")
        return IndexUnavailable(f"could not read {what} ({_first_line(e)})",
                                "run `copilot index --rebuild PATH...` if it stays broken")


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
        from copilot.index.vectors import projection_name

        client = connect(settings)
        try:
            col = _find_collection(client, settings, index_id)
            started_over = False
            if col is not None:
                meta = col.metadata or {}
                ours = meta.get("index_id") == index_id and _current_layout(meta, embedder_id)
                stored = meta.get("embedder")
                if ours and stored and stored != embedder_id and not allow_new_embedder:
                    raise EmbedderMismatch(f"the index was built with {stored} but the embedder is {embedder_id}",
                                           REINDEX_HINT)
                if not ours or stored != embedder_id:
                    client.delete_collection(col.name)
                    col = None
            if col is None:
                started_over = True
                col = client.create_collection(
                    collection_name(settings, index_id), embedding_function=None,
                    configuration={"hnsw": {"space": "cosine", "max_neighbors": HNSW_NEIGHBORS}},
                    metadata={"embedder": embedder_id, "schema": CHROMA_SCHEMA, "index_id": index_id,
                              "projection": projection_name(embedder_id)})
        except (EmbedderMismatch, IndexUnavailable):
            _close(client)
            raise
        except Exception as e:  # noqa: BLE001
            _close(client)
            raise _open_failed(settings, e) from None
        return cls(settings, client, _Guarded(col, settings, reconnect_s=RECONNECT_SECONDS)), started_over

    @classmethod
    def open_for_read(cls, settings: Settings, index_id: str | None = None) -> ChromaStore | None:
        """The collection, or None when there is none yet. `index_id`: the manifest's (read from
        it when not given; a Chroma server holds one collection per index)."""
        if index_id is None:
            index_id = _manifest_index_id(settings)
        client = connect(settings)
        try:
            col = _find_collection(client, settings, index_id)
        except Exception as e:  # noqa: BLE001
            _close(client)
            raise _open_failed(settings, e) from None
        if col is None:
            _close(client)
            return None
        meta = col.metadata or {}
        if not _current_layout(meta, str(meta.get("embedder") or "")):
            _close(client)
            raise IndexDamaged(f"the index's Chroma collection was made by another version of copilot "
                               f"(schema {meta.get('schema')}; this one reads schema {CHROMA_SCHEMA})", REBUILD_HINT)
        return cls(settings, client, _Guarded(col, settings, reconnect_s=0.0))

    @staticmethod
    def drop(settings: Settings, index_id: str | None = None) -> None:
        """Delete the collection (for --rebuild)."""
        if index_id is None:
            index_id = _manifest_index_id(settings)
        client = connect(settings)
        try:
            col = _find_collection(client, settings, index_id)
            if col is not None:
                client.delete_collection(col.name)
        except Exception as e:  # noqa: BLE001
            raise _open_failed(settings, e) from None
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
        """Store full vectors (projected here, see the module's docstring)."""
        from copilot.index.vectors import short

        vectors = short(vectors, self.embedder_id)
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

    def all_ids(self) -> set[str]:
        ids: set[str] = set()
        total = self.count()
        step = 5000
        for offset in range(0, total, step):
            ids.update(self.collection.get(include=[], limit=step, offset=offset)["ids"])
        return ids

    def query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k nearest chunks by the short vectors: (id, cosine distance), nearest first. Fewer when the collection
        holds fewer. No metadata and no count first: at 100k chunks each cost ~5 ms, and the
        chunk rows come from the manifest anyway."""
        from copilot.index.vectors import short

        if k <= 0:
            return []
        res = self.collection.query(query_embeddings=[short(vector, self.embedder_id)], n_results=k,
                                    include=["distances"])
        ids = res["ids"][0]
        distances = (res.get("distances") or [[0.0] * len(ids)])[0]
        return [(cid, float(d)) for cid, d in zip(ids, distances, strict=True)]


def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is best effort
            logging.getLogger(__name__).debug("closing the Chroma client failed", exc_info=True)
