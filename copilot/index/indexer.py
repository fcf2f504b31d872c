"""`copilot index`: folders of saved pages into the local index, incrementally and safely.

A run, under the writer lock (`copilot.index.manifest.WriterLock`):

1. Finish what a killed run left: paths in the manifest's `pending` table lose whatever of them
   reached Chroma or SQLite, and are indexed again below.
2. Walk the roots. A file whose size and mtime match its manifest row is unchanged and not read.
   One whose stat changed is hashed: the same SHA-256 only updates the row.
3. If nothing else changed, stop here: Chroma is never opened (nor chromadb imported).
4. Otherwise stream the changed and new files through load → chunk → embed → store, in batches of
   about `batch_size` chunks across files. Each batch: record its new files as pending (commit);
   delete their old chunks from Chroma by `source_path`; upsert the new chunks under ids that
   depend only on path, document and position; then, in one SQLite transaction, replace their
   chunk rows (the FTS index follows by trigger), write the finished files' rows and clear them
   from `pending`. A kill anywhere leaves either the old state or a pending path that step 1
   cleans, and the next run converges to exactly the chunks a clean run makes.
5. Files under the given roots that are gone (or no longer indexable) leave Chroma, then the manifest.

Vectors are reused, not recomputed, for any chunk text already stored (an identical file, a
boilerplate section, the unchanged parts of an edited page): the manifest maps the hash of the
embedded text to a chunk id and the vector is fetched from Chroma by that id, so no vector is
stored twice. Within a run a small in-memory cache does the same.

A stop request (`stop.is_set()`, e.g. from `StopOnSignals` on Ctrl-C or SIGTERM) is honoured
between files and between batches: the batch in hand is dropped, files already half written are
cleaned as in step 1, and the report so far is returned with `interrupted` set.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from copilot.errors import EmbedderMismatch, IndexDamaged, IndexUnavailable, IndexWriteFailed, UsageError
from copilot.index.manifest import REBUILD_HINT, Manifest, WriterLock, index_dir, manifest_path, set_aside
from copilot.index.store import HEADING_SEP, REINDEX_HINT, ChromaStore, chroma_dir, chunk_metadata

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings
    from copilot.index.embeddings import Embedder

DEFAULT_BATCH = 64
_MAX_FILES_PER_BATCH = 256  # files that end in one batch (many tiny or empty files)
_VECTOR_CACHE = 4096  # text hash -> vector, most recent first out


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class IndexProgress:
    """What `on_progress` receives: after the walk, after each file and after each batch."""

    phase: str  # "scan" | "index" | "remove" | "done"
    files_done: int = 0
    files_total: int = 0
    chunks: int = 0  # chunks stored by this run so far
    path: str = ""


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0  # total chunks in the index after the run
    seconds: float = 0.0
    embedded: int = 0  # chunk texts embedded by this run
    reused: int = 0  # chunks whose vector was reused (identical text already stored or in this run)
    stored: int = 0  # chunks written by this run
    interrupted: bool = False
    opened_store: bool = False  # whether Chroma was opened at all
    notes: list[str] = field(default_factory=list)  # what the user must know, e.g. files set aside

    def to_json(self) -> dict[str, Any]:
        """The `copilot index --json` object."""
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "chunks": self.chunks, "seconds": round(self.seconds, 3)}


class StopOnSignals:
    """While active, the first SIGINT or SIGTERM asks the run to stop at the next safe point (see
    `signum`); a second one raises KeyboardInterrupt at once (the next run still cleans up).
    Outside the main thread it only offers `set()`."""

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        self.set(signum)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def normalize_roots(roots: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Absolute, symlink-free roots; a missing one is a usage error (exit 2)."""
    if not roots:
        raise UsageError("no folder to index", "name one or more, e.g. copilot index ~/saved")
    out: list[Path] = []
    for r in roots:
        p = Path(r).expanduser()
        if not p.exists():
            raise UsageError(f"no such file or folder: {r}", "check the path")
        p = p.resolve()
        if p not in out:
            out.append(p)
    return out


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def source_key(path: str) -> str:
    """The part of chunk ids that names the file (its path, not its content: two files with the
    same content are two sets of chunks)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embed_text(heading: str, text: str) -> str:
    """What is embedded for a chunk: its heading path gives the text its context."""
    return f"{heading}\n\n{text}" if heading and not text.startswith(heading) else text


@dataclass
class _File:
    path: str
    root: str
    size: int
    mtime_ns: int
    existed: bool
    sha256: str = ""
    started: bool = False  # pending recorded and old chunks deleted
    committed: bool = False  # its manifest row is written
    chunks: int = 0
    skip_reason: str | None = None


@dataclass
class _Row:
    """A chunk on its way to the store."""

    file: _File
    id: str
    text: str
    embed: str
    hash: str
    fields: dict[str, Any]


class Indexer:
    """One writer run; use `run_index`."""

    def __init__(self, settings: Settings, manifest: Manifest, embedder: Embedder, *,
                 batch_size: int = DEFAULT_BATCH, on_progress: Callable[[IndexProgress], None] | None = None,
                 stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.m = manifest
        self.embedder = embedder
        self.batch_size = max(1, batch_size)
        self.on_progress = on_progress
        self.stop = stop
        self.store: ChromaStore | None = None
        self.report = IndexReport()
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.changed = False
        self.files_done = 0
        self.files_total = 0

    # --- helpers ---------------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return bool(self.stop is not None and self.stop.is_set())

    def _progress(self, phase: str, path: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(IndexProgress(phase, self.files_done, self.files_total, self.report.stored, path))

    def _open_store(self) -> bool:
        """Open Chroma for writing. True when the collection started over while the manifest
        remembered files (then the manifest has just been emptied: plan again)."""
        if self.store is not None:
            return False
        allow_new = self.m.chunk_count() == 0
        self.store, started_over = ChromaStore.open_for_write(
            self.settings, embedder_id=self.embedder.embedder_id, index_id=self.m.index_id,
            allow_new_embedder=allow_new)
        self.report.opened_store = True
        with self.m.transaction():
            self.m.set_meta("embedder", self.embedder.embedder_id)
            forget = started_over and self.m.file_count() > 0
            if forget:
                self.m.clear_all()
        if forget:
            self.changed = True
        return forget

    def _check_chunking(self) -> None:
        """Chunks made by another chunker version or size limit are stale: every file is read
        again (vectors of unchanged chunk texts are still reused)."""
        from copilot.index.chunking import CHUNKING_VERSION

        want = f"{CHUNKING_VERSION}:{self.settings.chunk_chars}"
        have = self.m.get_meta("chunking")
        if have == want:
            return
        with self.m.transaction():
            if have is not None:
                self.m.conn.execute("UPDATE files SET mtime_ns = -1, sha256 = ''")
            self.m.set_meta("chunking", want)

    def _check_embedder(self) -> None:
        stored = self.m.embedder
        if stored and stored != self.embedder.embedder_id and self.m.chunk_count() > 0:
            raise EmbedderMismatch(f"the index was built with {stored} but the embedder is "
                                   f"{self.embedder.embedder_id}", REINDEX_HINT)

    # --- the run ---------------------------------------------------------------------------------

    def rebuild(self) -> None:
        with self.m.transaction():
            self.m.set_meta("rebuild_pending", "1")
        try:
            ChromaStore.drop(self.settings, self.m.index_id)
        except IndexUnavailable:
            folder = chroma_dir(self.settings.data_path)
            if self.settings.chroma_url or not folder.exists():
                raise
            # An embedded Chroma folder that cannot even be opened: the user asked to start over,
            # so it goes aside, whole, and a new one is made.
            try:
                aside = set_aside(folder)
            except OSError:
                raise IndexUnavailable(f"cannot open {folder}, nor set it aside",
                                       "check the permissions of the data dir") from None
            self.report.notes.append(f"the Chroma folder could not be opened and was moved to {aside} "
                                     "(delete it once the new index works)")
        with self.m.transaction():
            self.m.clear_all()
            self.m.del_meta("rebuild_pending")
        self.changed = True

    def recover(self) -> None:
        """Clean the files a killed or stopped run left half written."""
        pending = self.m.pending()
        if not pending:
            return
        self._open_store()
        self._drop_half_written(pending)

    def _drop_half_written(self, paths: list[str]) -> None:
        """Remove files a run started but did not commit: their vectors, then (one transaction)
        their manifest rows and pending marks, so a kill in between leaves them still pending."""
        assert self.store is not None
        self.store.delete_paths(paths)
        with self.m.transaction():
            self.m.delete_files(paths)
            self.m.clear_pending(paths)
        self.changed = True

    def run(self, roots: list[Path], *, follow_outside: bool) -> IndexReport:
        from copilot.index.loaders import Candidate, walk

        if self.m.get_meta("rebuild_pending"):
            self.rebuild()
        self._check_embedder()
        self.recover()
        self._check_chunking()
        with self.m.transaction():
            for r in roots:
                self.m.add_root(str(r))

        self._progress("scan")
        seen: set[str] = set()
        candidates: list[tuple[Any, str]] = []
        for item in walk(roots, follow_outside=follow_outside, max_bytes=self.settings.index_max_file_bytes):
            if self._stopping():  # nothing written yet: stop at once
                self.report.interrupted = True
                return self.report
            path = os.path.abspath(str(item.path))
            if isinstance(item, Candidate):
                if path not in seen:
                    seen.add(path)
                    candidates.append((item, self._root_of(path, roots)))
            else:
                self.report.skipped.append((path, str(item.reason)))
        candidates.sort(key=lambda c: os.path.abspath(str(c[0].path)))

        while True:
            known: dict[str, Any] = {}
            for r in roots:
                known.update(self.m.files_under(str(r)))
            todo, touched, same = self._plan(candidates, known)
            if self._stopping():
                self.report.interrupted = True
                return self.report
            removed = sorted(p for p in known if p not in seen)
            work = bool(todo or removed)
            if not work and not self.settings.chroma_url and known and \
                    not (chroma_dir(self.settings.data_path) / "chroma.sqlite3").exists():
                work = True  # the Chroma folder was deleted under the manifest
            if not work or not self._open_store():
                break
            # The collection started over: everything is new again.

        for row in same:
            if row.skip_reason:
                self.report.skipped.append((row.path, row.skip_reason))
            else:
                self.report.unchanged += 1
        if touched:
            with self.m.transaction():
                for f in touched:
                    self.m.touch_file(f.path, f.size, f.mtime_ns)
            self.changed = True

        self.files_total = len(todo)
        self._progress("index")
        if todo:
            self._index(todo)
        if removed and not self._stopping():
            self._progress("remove")
            assert self.store is not None
            self.store.delete_paths(removed)
            with self.m.transaction():
                self.m.delete_files(removed)
            self.report.removed = len(removed)
            self.changed = True
        self.report.interrupted = self._stopping()
        return self.report

    @staticmethod
    def _root_of(path: str, roots: list[Path]) -> str:
        best = ""
        for r in roots:
            rs = str(r)
            if (path == rs or path.startswith(rs.rstrip("/") + "/")) and len(rs) > len(best):
                best = rs
        return best or str(roots[0])

    def _plan(self, candidates: list[tuple[Any, str]],
              known: dict[str, Any]) -> tuple[list[_File], list[_File], list[Any]]:
        """Files to index, files whose stat changed but not their content, rows of unchanged files."""
        todo: list[_File] = []
        touched: list[_File] = []
        same: list[Any] = []
        for c, root in candidates:
            if self._stopping():  # hashing changed files can take long; the caller stops
                break
            path = os.path.abspath(str(c.path))
            row = known.get(path)
            if row is not None:
                root = row.root  # a file keeps the root it was first indexed under
            f = _File(path, root, int(c.size), int(c.mtime_ns), existed=row is not None)
            if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns:
                same.append(row)
                continue
            if row is not None:
                try:
                    f.sha256 = file_sha256(path)
                except OSError as e:
                    f.skip_reason = _os_reason(e)
                if f.sha256 and f.sha256 == row.sha256:
                    touched.append(f)
                    same.append(row)
                    continue
            todo.append(f)
        return todo, touched, same

    # --- indexing --------------------------------------------------------------------------------

    def _chunks_of(self, f: _File) -> Iterator[_Row]:
        """The file's chunks; on a bad file sets `f.skip_reason` and stops."""
        from copilot.index.chunking import chunk_document, chunk_id
        from copilot.index.loaders import SkipFile, load

        if f.skip_reason:
            return
        try:
            if not f.sha256:
                f.sha256 = file_sha256(f.path)
            key = source_key(f.path)
            for doc in load(Path(f.path), max_bytes=self.settings.index_max_file_bytes):
                ids: set[str] = set()  # per document: a Posts.xml may hold a million chunks
                for ch in chunk_document(doc, f.path, self.settings.chunk_chars):
                    heading = HEADING_SEP.join(ch.heading_path or [])
                    cid = chunk_id(key, ch.doc_key, ch.position)
                    if cid in ids:  # never two chunks under one id
                        continue
                    ids.add(cid)
                    fields = {"url": ch.url or "", "site": ch.site or "", "kind": ch.kind or "",
                              "heading": heading, "title": ch.title or "", "score": ch.score,
                              "accepted": ch.accepted, "role": ch.role or "", "position": int(ch.position),
                              "doc_key": str(ch.doc_key or "")}
                    emb = embed_text(heading, ch.text)
                    yield _Row(f, cid, ch.text, emb, text_hash(emb), fields)
        except SkipFile as e:
            reason = str(getattr(e, "reason", "") or e) or "skipped"
            if getattr(e, "partial", False) and f.chunks:
                # The documents read before the damage are good: keep them, and say what was lost.
                self.report.skipped.append((f.path, f"{reason} (the part before it is indexed)"))
            else:
                f.skip_reason = reason
        except OSError as e:
            f.skip_reason = _os_reason(e)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - one bad file must not end the run
            f.skip_reason = f"could not be read ({e.__class__.__name__}: {str(e)[:120]})"

    def _index(self, todo: list[_File]) -> None:
        rows: list[_Row] = []
        ended: list[_File] = []
        for f in todo:
            if self._stopping():
                break
            self._progress("index", f.path)
            for row in self._chunks_of(f):
                rows.append(row)
                f.chunks += 1
                if len(rows) >= self.batch_size:
                    if self._stopping():
                        break
                    self._flush(rows, ended)
                    rows, ended = [], []
            if self._stopping():
                break
            if not f.skip_reason and f.chunks == 0:
                f.skip_reason = "no text found"
            ended.append(f)
            self.files_done += 1
            if len(ended) >= _MAX_FILES_PER_BATCH:
                self._flush(rows, ended)
                rows, ended = [], []
        if self._stopping():
            # Drop the batch in hand; clean files already half written.
            half = [f.path for f in todo if f.started and not f.committed]
            if half:
                self._drop_half_written(half)
            return
        self._flush(rows, ended)
        self._progress("index")

    def _flush(self, rows: list[_Row], ended: list[_File]) -> None:
        if not rows and not ended:
            return
        assert self.store is not None
        files: dict[str, _File] = {}
        for r in rows:
            files.setdefault(r.file.path, r.file)
        for f in ended:
            files.setdefault(f.path, f)
        starting = [f for f in files.values() if not f.started]
        rows = [r for r in rows if r.file.skip_reason is None]
        vectors = self._vectors(rows)

        with self.m.transaction():
            self.m.add_pending(f.path for f in starting)
        # Old chunks go by source_path (whatever ids they had); files that turned out bad lose
        # what earlier batches of this run wrote for them.
        purge = [f.path for f in starting] + [f.path for f in ended if f.started and f.skip_reason]
        if purge:
            self.store.delete_paths(purge)
        if rows:
            metas = [chunk_metadata(source_path=r.file.path, root=r.file.root, file_hash=r.file.sha256, **r.fields)
                     for r in rows]
            self.store.upsert([r.id for r in rows], vectors, metas)
        from copilot.index.vectors import encode

        with self.m.transaction():
            self.m.delete_chunks_of(purge)
            self.m.insert_chunks(
                (r.id, r.file.path, r.hash, r.text, r.fields["heading"], r.fields["title"], r.fields["url"],
                 r.fields["site"], r.fields["kind"], r.fields["score"],
                 None if r.fields["accepted"] is None else int(bool(r.fields["accepted"])),
                 r.fields["role"], r.fields["position"], r.fields["doc_key"], encode(vec))
                for r, vec in zip(rows, vectors, strict=True))
            for f in ended:
                bad = f.skip_reason is not None
                self.m.put_file(f.path, f.root, f.size, f.mtime_ns, f.sha256 or "", 0 if bad else f.chunks,
                                f.skip_reason)
            self.m.clear_pending(f.path for f in ended)
        for f in starting:
            f.started = True
        for f in ended:
            f.committed = True
            if f.skip_reason:
                self.report.skipped.append((f.path, f.skip_reason))
            elif f.existed:
                self.report.updated += 1
            else:
                self.report.added += 1
        self.report.stored += len(rows)
        self.changed = True
        self._progress("index")

    def _vectors(self, rows: list[_Row]) -> np.ndarray:
        """One vector per row: from this run's cache, from the manifest for texts already stored, else
        embedded (each distinct text once)."""
        import numpy as np

        out = np.zeros((len(rows), self.embedder.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            vec = self.cache.get(r.hash)
            if vec is not None:
                self.cache.move_to_end(r.hash)
                out[i] = vec
            else:
                missing.setdefault(r.hash, []).append(i)
        if missing:
            from copilot.index.vectors import decode

            stored = self.m.ids_for_hashes(missing)
            if stored:
                got = self.m.vectors(sorted(set(stored.values())))
                for h, cid in stored.items():
                    vec = decode(got[cid]) if cid in got else None
                    if vec is not None and vec.shape[0] == out.shape[1]:
                        for i in missing.pop(h):
                            out[i] = vec
                        self._remember(h, vec)
        if missing:
            hashes = list(missing)
            vectors = self.embedder.embed([rows[missing[h][0]].embed for h in hashes])
            for h, vec in zip(hashes, vectors, strict=True):
                for i in missing[h]:
                    out[i] = vec
                self._remember(h, vec)
            self.report.embedded += len(hashes)
        self.report.reused += len(rows) - len(missing)
        return out

    def _remember(self, h: str, vec: np.ndarray) -> None:
        self.cache[h] = vec
        if len(self.cache) > _VECTOR_CACHE:
            self.cache.popitem(last=False)


def _os_reason(e: OSError) -> str:
    import errno

    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.ENOENT:
        return "vanished while indexing"
    return f"cannot read ({e.strerror or e.__class__.__name__})"


def run_index(roots: Sequence[str | os.PathLike[str]], settings: Settings, *, rebuild: bool = False,
              follow_outside: bool = False, on_progress: Callable[[IndexProgress], None] | None = None,
              embedder: Embedder | None = None, stop: StopFlag | None = None, wait: float = 0.0,
              batch_size: int = DEFAULT_BATCH) -> IndexReport:
    """Index `roots` (folders or files) into the local index under `settings.data_path`.

    Takes the writer lock (waiting up to `wait` seconds, else IndexLocked). `stop` is polled
    between files and batches (see StopOnSignals)."""
    t0 = time.perf_counter()
    paths = normalize_roots(roots)
    if embedder is None:
        from copilot.index.embeddings import make_embedder

        embedder = make_embedder(settings)
    folder = index_dir(settings.data_path)
    mpath = manifest_path(settings.data_path)
    with _manifest_errors(mpath), WriterLock(folder, wait=wait, stop=stop):
        notes: list[str] = []
        m = _open_manifest(mpath, rebuild, notes)
        indexer = Indexer(settings, m, embedder, batch_size=batch_size, on_progress=on_progress, stop=stop)
        indexer.report.notes.extend(notes)
        try:
            if rebuild:
                # Starting over covers every indexed folder, not only the ones named now.
                paths += [p for p in (Path(r.path) for r in m.roots()) if p not in paths and p.exists()]
                indexer.rebuild()
            report = indexer.run(paths, follow_outside=follow_outside)
            if indexer.changed:
                m.bump_generation()
            report.chunks = m.chunk_count()
        finally:
            if indexer.store is not None:
                indexer.store.close()
            m.close()
    report.seconds = time.perf_counter() - t0
    indexer._progress("done")
    return report


def _open_manifest(path: Path, rebuild: bool, notes: list[str]) -> Manifest:
    """The manifest for a writer. With `rebuild`, one that is damaged or of another version is
    set aside (renamed, never deleted) and a new one started; without, that is an IndexDamaged
    error and nothing is touched."""
    try:
        return Manifest.open(path)
    except IndexDamaged as e:
        if not rebuild:
            raise
        reason = e.message
    try:
        aside = set_aside(path)
    except OSError as err:
        raise IndexUnavailable(f"{reason}, and it cannot be set aside ({err.strerror or err})",
                               "check the permissions of the data dir") from None
    notes.append(f"{reason}: moved it to {aside} and started a new one; only the folders named "
                 "now are indexed (delete the old file once the new index works)")
    return Manifest.open(path)


@contextlib.contextmanager
def _manifest_errors(mpath: Path, *, writing: bool = True) -> Iterator[None]:
    """SQLite and OS failures, as one line the user can act on. A writer loses nothing: pending
    files are cleaned up by the next run (see the module docstring)."""
    import errno
    import sqlite3

    hint = ("check free disk space and that the data dir is writable; what was finished is kept and "
            "the next `copilot index` finishes the rest")
    try:
        yield
    except sqlite3.OperationalError as e:  # disk full, I/O error, read-only: the write failed
        if not writing:
            raise IndexUnavailable(f"cannot read the index manifest {mpath} ({e})",
                                   "check the data dir (COPILOT_DATA_DIR) and its permissions") from None
        raise IndexWriteFailed(f"could not write the index manifest {mpath} ({e})", hint) from None
    except sqlite3.DatabaseError as e:
        if type(e) is not sqlite3.DatabaseError:  # IntegrityError and the like: a bug, not damage
            raise
        raise IndexDamaged(f"the index manifest {mpath} is damaged ({e})", REBUILD_HINT) from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS):
            raise
        raise IndexWriteFailed(f"could not write the index in {mpath.parent} ({e.strerror or e})", hint) from None


@dataclass
class SourceInfo:
    root: str
    files: int
    chunks: int
    added_at: float


def list_sources(settings: Settings) -> list[SourceInfo]:
    """The indexed roots with their file and chunk counts (no lock, no Chroma)."""
    path = manifest_path(settings.data_path)
    if not path.is_file():
        return []
    m = Manifest.open(path, create=False)
    try:
        if not m.is_sound():  # cheap (~25 ms for 30 MB), and where a user looks first
            raise IndexDamaged(f"the index manifest {path} is damaged (SQLite's check of it failed)", REBUILD_HINT)
        with _manifest_errors(path, writing=False):
            return [SourceInfo(r.path, r.files, r.chunks, r.added_at) for r in m.roots()]
    finally:
        m.close()


def remove_source(root: str | os.PathLike[str], settings: Settings, *, wait: float = 0.0) -> tuple[int, int]:
    """Remove a root's files and chunks from the index: (files, chunks) removed."""
    path = manifest_path(settings.data_path)
    name = str(root)
    if not path.is_file():
        raise UsageError(f"not an indexed folder: {name}", "the index is empty")
    with _manifest_errors(path), WriterLock(index_dir(settings.data_path), wait=wait):
        m = Manifest.open(path)
        try:
            known = {r.path for r in m.roots()}
            candidates = [name, os.path.abspath(os.path.expanduser(name))]
            if Path(name).expanduser().exists():
                candidates.append(str(Path(name).expanduser().resolve()))
            target = next((c for c in candidates if c in known), None)
            if target is None:
                listed = ", ".join(sorted(known)) or "none"
                raise UsageError(f"not an indexed folder: {name}", f"indexed: {listed} (see `copilot sources`)")
            paths = m.paths_of_root(target)
            chunks = sum(m.file(p).chunks for p in paths if m.file(p) is not None)  # type: ignore[union-attr]
            if paths:
                store = ChromaStore.open_for_read(settings)
                if store is not None:
                    try:
                        store.delete_paths(paths)
                    finally:
                        store.close()
            with m.transaction():
                m.delete_files(paths)
                m.remove_root(target)
            m.bump_generation()
            return len(paths), chunks
        finally:
            m.close()
