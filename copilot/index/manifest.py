"""The index's own bookkeeping, in one SQLite file beside Chroma (`<data>/index/manifest.sqlite`).

What it holds:

- `files`: every file the index has seen, with size, mtime, SHA-256 and chunk count. A file whose
  size and mtime match its row is not read again. Files that could not be indexed keep a row
  too (`skip_reason`, no chunks), so re-running over an unchanged folder reads none of them.
- `roots`: the folders given to `copilot index`.
- `chunks`: every stored chunk's id, text and fields, and `text_hash` (what was embedded). Vectors
  live only in Chroma; `text_hash` finds an existing chunk with the same text so its vector is
  fetched from Chroma instead of computed again.
- `chunks_fts`: an FTS5 index over `chunks` (external content: the text is stored once, in
  `chunks`, and the FTS index can be rebuilt from it with another tokenizer; see `rebuild_fts`).
- `pending`: files whose chunks are being written (an intent log). A path is put here, committed,
  before Chroma is touched for it and taken out in the same transaction that commits its rows.
  A run killed in between leaves the path here; the next writer deletes whatever of it reached
  Chroma or SQLite and indexes it again. So the manifest never names chunks that were lost and
  Chroma never keeps chunks the manifest does not know.
- `meta`: schema version, the embedder that built the index, the index id shared with the Chroma
  collection, and `generation`, bumped after each write so readers know to reopen Chroma.

The tokenizer is `unicode61` with its default separators: `lru_cache`, `asyncio.run` and
`__init__` are split into their parts (`lru` `cache`, `asyncio` `run`, `init`). A query for the
whole identifier still finds it exactly as an FTS5 phrase (`"lru_cache"` tokenizes to the phrase
`lru cache`, which must occur in that order, adjacent), while a query for a part (`cache`,
`asyncio`) also finds `lru_cache` and `asyncio.run()`. Keeping `_` and `.` inside tokens would
lose that second kind of match for good (no query can recover the parts of an unsplit token);
trigram indexes match any substring but triple the index and rank poorly with bm25. The raw text
stays in `chunks`, so the retrieval work can switch tokenizers with `rebuild_fts` without
re-embedding anything.

SQLite runs in WAL mode: readers (`copilot ask`) read while a writer writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from copilot.errors import IndexDamaged, IndexLocked, IndexUnavailable

SCHEMA = 2  # 2: chunks.vector (the exact vector; Chroma holds a projection of it)
FTS_TOKENIZER = "unicode61 remove_diacritics 2"
MANIFEST_NAME = "manifest.sqlite"
LOCK_NAME = "write.lock"
REBUILD_HINT = ("`copilot index --rebuild PATH...` sets it aside (renamed, not deleted) and builds the "
                "index again")

# Columns of `chunks` after rowid that readers get, in insert order; `insert_chunks` rows end with
# one more, `vector` (int8 bytes, `copilot.index.vectors.encode`; NULL when not known).
CHUNK_COLUMNS = ("id", "source_path", "text_hash", "text", "heading", "title", "url", "site", "kind",
                 "score", "accepted", "role", "position", "doc_key")
_STORED_COLUMNS = (*CHUNK_COLUMNS, "vector")

_TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots(path TEXT PRIMARY KEY, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at REAL NOT NULL,
    skip_reason TEXT
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS chunks(
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source_path TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    heading TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    score INTEGER,
    accepted INTEGER,
    role TEXT NOT NULL,
    position INTEGER NOT NULL,
    doc_key TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(source_path);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(text_hash);
CREATE TABLE IF NOT EXISTS pending(path TEXT PRIMARY KEY);
"""


def _fts_ddl(tokenizer: str) -> str:
    quoted = tokenizer.replace("'", "''")
    return f"""
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    id UNINDEXED, text, heading, title, source_path UNINDEXED,
    content='chunks', content_rowid='rowid', tokenize='{quoted}'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, id, text, heading, title, source_path)
    VALUES (new.rowid, new.id, new.text, new.heading, new.title, new.source_path);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, id, text, heading, title, source_path)
    VALUES ('delete', old.rowid, old.id, old.text, old.heading, old.title, old.source_path);
END;
"""


def index_dir(data_path: Path) -> Path:
    return data_path / "index"


def set_aside(path: Path) -> Path:
    """Rename a damaged or foreign index file or folder to `<name>.old-<time>` beside it (with a
    SQLite file's -wal and -shm companions) and return the new path. Never deletes anything."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.old-{stamp}-{n}")
        n += 1
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    return target


def manifest_path(data_path: Path) -> Path:
    return index_dir(data_path) / MANIFEST_NAME


@dataclass(frozen=True)
class FileRow:
    path: str
    root: str
    size: int
    mtime_ns: int
    sha256: str
    chunks: int
    indexed_at: float
    skip_reason: str | None


@dataclass(frozen=True)
class RootInfo:
    path: str
    added_at: float
    files: int
    chunks: int


def _under(path_column: str) -> str:
    """SQL matching rows whose path is `?` or lies under it (two parameters: the root twice)."""
    # '0' follows '/' in byte order, so [root/, root0) is exactly the paths under root/.
    return f"({path_column} = ? OR ({path_column} >= ? || '/' AND {path_column} < ? || '0'))"


def _in_groups(values: Iterable[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """`values` in groups small enough for one SQL `IN (...)`: each group and its `?,?,…` marks."""
    values = list(values)
    for start in range(0, len(values), size):
        part = values[start:start + size]
        yield part, ",".join("?" * len(part))


class Manifest:
    """One connection to the manifest database. Writers go through `transaction()`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Manifest:
        """Open (and with `create`, make) the manifest. A manifest of another schema version is an
        error that says to rebuild; `reset()` starts it over."""
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise FileNotFoundError(path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            # INSERT OR REPLACE must fire the delete trigger that keeps the FTS index in step.
            conn.execute("PRAGMA recursive_triggers = ON")
            m = cls(conn, path)
            # Before anything writes: a manifest of another version, or a damaged one, is refused
            # unchanged (even the switch to WAL below rewrites the file's header). A writer checks
            # every page (~25 ms for 30 MB); a reader finds damage when it reads it.
            m._check_schema()
            if create and not m.is_sound():
                raise IndexDamaged(f"the index manifest {path} is damaged (SQLite's check of it failed)",
                                   REBUILD_HINT)
            if create:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if create:
                m._create()
        except IndexUnavailable:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.OperationalError as e:  # cannot open, I/O error, locked: not damage
            if conn is not None:
                conn.close()
            raise IndexUnavailable(f"the index manifest {path} cannot be opened: {e}",
                                   "check the data dir (COPILOT_DATA_DIR), its permissions and free space") from None
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one
            if conn is not None:
                conn.close()
            raise IndexDamaged(f"the index manifest {path} is damaged ({e})", REBUILD_HINT) from None
        return m

    def _create(self) -> None:
        self._script(_TABLES + _fts_ddl(FTS_TOKENIZER))
        with self.transaction():
            if self.get_meta("schema") is None:
                self.set_meta("schema", str(SCHEMA))
                self.set_meta("fts_tokenizer", FTS_TOKENIZER)
                self.set_meta("generation", "0")
                self.set_meta("index_id", uuid.uuid4().hex)

    def _script(self, sql: str) -> None:
        """Run several statements as one transaction."""
        try:
            self.conn.executescript("BEGIN IMMEDIATE;\n" + sql + "\nCOMMIT;")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _schema_of_file(self) -> int | None:
        """The schema version the file records; None for a new, empty database. A database with
        tables but no version (an older layout, or not ours) is -1."""
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError:  # no meta table
            tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            return -1 if tables else None
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            return -1

    def _check_schema(self) -> None:
        schema = self._schema_of_file()
        if schema is not None and schema != SCHEMA:
            made = "an unknown version" if schema < 0 else f"schema {schema}"
            raise IndexDamaged(f"the index in {self.path.parent} was made by another version of copilot "
                               f"({made}; this one reads schema {SCHEMA})", REBUILD_HINT)

    def is_sound(self) -> bool:
        """SQLite's quick check of every page (~25 ms for 30 MB): writers and `copilot sources` run
        it before anything else; readers find damage when they read it."""
        try:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError:
            return False
        return rows == [("ok",)]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            # SQLite may have rolled back already (a full disk, an I/O error): then ROLLBACK itself
            # fails, and that error must not hide the one that matters.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- meta ------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def del_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bump_generation(self) -> int:
        with self.transaction():
            gen = self.generation + 1
            self.set_meta("generation", str(gen))
        return gen

    @property
    def embedder(self) -> str | None:
        return self.get_meta("embedder")

    @property
    def index_id(self) -> str:
        return self.get_meta("index_id") or ""

    # --- counts and reads ------------------------------------------------------------------------

    def chunk_count(self) -> int:
        try:
            return int(self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    def file_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM files").fetchone()[0])

    def files_under(self, root: str) -> dict[str, FileRow]:
        rows = self.conn.execute(f"SELECT * FROM files WHERE {_under('path')}", (root, root, root))
        return {r[0]: FileRow(*r) for r in rows}

    def file(self, path: str) -> FileRow | None:
        r = self.conn.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow(*r) if r else None

    def roots(self) -> list[RootInfo]:
        out = []
        for path, added in self.conn.execute("SELECT path, added_at FROM roots ORDER BY path").fetchall():
            files, chunks = self.conn.execute(
                f"SELECT count(*), coalesce(sum(chunks), 0) FROM files WHERE skip_reason IS NULL AND {_under('path')}",
                (path, path, path)).fetchone()
            out.append(RootInfo(path, added, int(files), int(chunks)))
        return out

    def paths_of_root(self, root: str) -> list[str]:
        """Files that belong to `root`: recorded under it, or lying inside it (a root nested in
        another counts the files inside it, whichever run added them)."""
        rows = self.conn.execute(f"SELECT path FROM files WHERE root = ? OR {_under('path')}",
                                 (root, root, root, root))
        return [r[0] for r in rows]

    def ids_for_hashes(self, hashes: Iterable[str]) -> dict[str, str]:
        """One stored chunk id per text hash that has any."""
        out: dict[str, str] = {}
        for part, marks in _in_groups(hashes):
            for h, cid in self.conn.execute(
                    f"SELECT text_hash, min(id) FROM chunks WHERE text_hash IN ({marks}) GROUP BY text_hash", part):
                out[h] = cid
        return out

    def chunk_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM chunks")}

    def chunks_by_id(self, ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        cols = ", ".join(CHUNK_COLUMNS)
        for part, marks in _in_groups(ids):
            for row in self.conn.execute(f"SELECT {cols} FROM chunks WHERE id IN ({marks})", part):
                out[row[0]] = dict(zip(CHUNK_COLUMNS, row, strict=True))
        return out

    def vectors(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The stored exact vectors by chunk id (ids without one are left out)."""
        out: dict[str, bytes] = {}
        for part, marks in _in_groups(ids):
            out.update(self.conn.execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({marks}) AND vector IS NOT NULL", part))
        return out

    def pending(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM pending ORDER BY path")]

    # --- writes (callers wrap these in `transaction()`) ------------------------------------------

    def add_root(self, root: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO roots(path, added_at) VALUES (?, ?)", (root, time.time()))

    def remove_root(self, root: str) -> None:
        self.conn.execute(f"DELETE FROM roots WHERE {_under('path')}", (root, root, root))

    def put_file(self, path: str, root: str, size: int, mtime_ns: int, sha256: str, chunks: int,
                 skip_reason: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO files(path, root, size, mtime_ns, sha256, chunks, indexed_at, skip_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET root = excluded.root, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
            "chunks = excluded.chunks, indexed_at = excluded.indexed_at, skip_reason = excluded.skip_reason",
            (path, root, size, mtime_ns, sha256, chunks, time.time(), skip_reason))

    def touch_file(self, path: str, size: int, mtime_ns: int) -> None:
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def delete_files(self, paths: Sequence[str]) -> None:
        """Forget files and their chunks (their FTS rows go with them)."""
        self.delete_chunks_of(paths)
        for part, marks in _in_groups(paths):
            self.conn.execute(f"DELETE FROM files WHERE path IN ({marks})", part)

    def delete_chunks_of(self, paths: Sequence[str]) -> None:
        for part, marks in _in_groups(paths):
            self.conn.execute(f"DELETE FROM chunks WHERE source_path IN ({marks})", part)

    def insert_chunks(self, rows: Iterable[Sequence]) -> None:
        cols = ", ".join(_STORED_COLUMNS)
        marks = ",".join("?" * len(_STORED_COLUMNS))
        self.conn.executemany(f"INSERT OR REPLACE INTO chunks({cols}) VALUES ({marks})", rows)

    def add_pending(self, paths: Iterable[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO pending(path) VALUES (?)", ((p,) for p in paths))

    def clear_pending(self, paths: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM pending WHERE path = ?", ((p,) for p in paths))

    def clear_all(self) -> None:
        """Forget every file and chunk (the roots and the index id stay: the id names the Chroma
        collection this manifest goes with, which the caller has just made or dropped)."""
        self.conn.execute("DELETE FROM chunks")
        self.conn.execute("DELETE FROM files")
        self.conn.execute("DELETE FROM pending")
        self.conn.execute("DELETE FROM meta WHERE key = 'embedder'")

    def rebuild_fts(self, tokenizer: str = FTS_TOKENIZER) -> None:
        """Re-make the keyword index from the stored text, optionally with another tokenizer."""
        quoted = tokenizer.replace("'", "''")
        self._script("DROP TRIGGER IF EXISTS chunks_fts_insert; DROP TRIGGER IF EXISTS chunks_fts_delete;\n"
                     "DROP TABLE IF EXISTS chunks_fts;\n" + _fts_ddl(tokenizer)
                     + "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');\n"
                     + f"INSERT OR REPLACE INTO meta(key, value) VALUES ('fts_tokenizer', '{quoted}');")


class WriterLock:
    """One writer at a time: an exclusive `flock` on `<index dir>/write.lock`.

    The holder writes its pid into the file, so a second writer can say who holds it. The lock
    dies with its process (SIGKILL included): no stale lock files to clean up."""

    def __init__(self, folder: Path, *, wait: float = 0.0, poll: float = 0.1, stop: object = None) -> None:
        """`stop`: an object with `is_set()`; waiting ends with KeyboardInterrupt when it is set."""
        self.path = folder / LOCK_NAME
        self.wait = max(0.0, wait)
        self.poll = poll
        self.stop = stop
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return ""

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise IndexUnavailable(f"cannot write the index folder {self.path.parent}: {e.strerror or e}",
                                   "check COPILOT_DATA_DIR and its permissions") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.stop is not None and self.stop.is_set():  # type: ignore[attr-defined]
                    os.close(fd)
                    raise KeyboardInterrupt from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    pid = self.holder()
                    who = f"pid {pid}" if pid.isdigit() else "another process"
                    waited = f" (waited {self.wait:g} s)" if self.wait else ""
                    raise IndexLocked(f"the index in {self.path.parent} is being written by {who}{waited}",
                                      "wait for that `copilot index` to finish, or pass --wait SECONDS") from None
                time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())) or self.poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
