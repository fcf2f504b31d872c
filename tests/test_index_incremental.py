"""The indexer against real Chroma, embedded and as a `chroma run` server: incremental runs,
duplicates, deletions, crash recovery, sources. A counting fake embedder keeps these fast and
shows exactly what was embedded; tests/test_index_cli.py runs the real model end to end."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from copilot.errors import EmbedderMismatch, IndexLocked, UsageError
from copilot.index.indexer import list_sources, remove_source, run_index
from copilot.index.local import LocalIndex
from copilot.index.manifest import WriterLock, index_dir, manifest_path
from copilot.index.store import ChromaStore
from tests.index_helpers import CountingEmbedder, chroma_ids, chroma_paths, manifest_state, write_pages

pytest_plugins = ["tests.fixtures_index"]


def assert_consistent(settings) -> dict:
    """Chroma and the manifest hold the same chunks, nothing is pending, the FTS index is sound."""
    state = manifest_state(settings)
    assert state["pending"] == []
    assert chroma_ids(settings) == state["ids"]
    assert sum(state["files"].values()) == len(state["ids"])
    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    try:
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    finally:
        conn.close()
    return state


def fts(settings, query: str) -> list[str]:
    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    try:
        return [r[0] for r in conn.execute(
            "SELECT source_path FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts)", (query,))]
    finally:
        conn.close()


def test_first_run_then_unchanged_run_does_no_work(tmp_path, settings, embedder):
    pages = write_pages(tmp_path / "src", 5)
    report = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert (report.added, report.updated, report.removed, report.unchanged) == (5, 0, 0, 0)
    assert report.chunks == 10 and report.embedded == 10 and report.skipped == []
    state = assert_consistent(settings)
    assert set(state["files"]) == {str(p) for p in pages}

    embedder.reset()
    again = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 5)
    assert embedder.calls == 0 and not again.opened_store  # Chroma not even opened
    assert again.chunks == 10


def test_touch_only_updates_the_row(tmp_path, settings, embedder):
    pages = write_pages(tmp_path / "src", 3)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    embedder.reset()
    st = pages[1].stat()
    os.utime(pages[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert report.unchanged == 3 and report.updated == 0 and embedder.calls == 0
    assert not report.opened_store
    # The row took the new mtime: the next run does not even hash the file.
    from copilot.index.manifest import Manifest

    m = Manifest.open(manifest_path(settings.data_path), create=False)
    assert m.file(str(pages[1])).mtime_ns == st.st_mtime_ns + 5_000_000_000
    m.close()


def test_changed_file_replaces_its_chunks_and_reembeds_only_new_text(tmp_path, settings, embedder):
    pages = write_pages(tmp_path / "src", 4)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    before = manifest_state(settings)
    embedder.reset()

    text = pages[2].read_text()
    pages[2].write_text(text.replace("Notes number 2-1", "Completely rewritten zebra notes 2-1"))
    report = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert (report.updated, report.unchanged, report.added) == (1, 3, 0)
    # One section changed: one text embedded, the other section's vector reused from Chroma.
    assert len(embedder.texts) == 1 and "zebra" in embedder.texts[0]
    after = assert_consistent(settings)
    assert after["ids"] == before["ids"]  # ids depend on path, document and position
    assert fts(settings, "zebra") == [str(pages[2])]

    # A section removed: its chunk leaves Chroma (deleted by source_path, not only by known id).
    pages[2].write_text("# Page 2\n\n## Only part\n\nShort and new.\n")
    embedder.reset()
    run_index([tmp_path / "src"], settings, embedder=embedder)
    state = assert_consistent(settings)
    assert state["files"][str(pages[2])] == 1
    assert len(state["ids"]) == 7


def test_stray_chunks_of_a_file_are_deleted_by_source_path(tmp_path, settings, embedder):
    pages = write_pages(tmp_path / "src", 2)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    # A chunk under an id the manifest never knew (an older chunker, a crash): same source_path.
    store = ChromaStore.open_for_read(settings)
    store.upsert(["stray-id"], embedder.embed(["old text"]), [{"source_path": str(pages[0])}])
    store.close()
    pages[0].write_text(pages[0].read_text() + "\nOne more paragraph.\n")
    run_index([tmp_path / "src"], settings, embedder=embedder)
    assert "stray-id" not in chroma_ids(settings)
    assert_consistent(settings)


def test_deleted_files_leave_the_index(tmp_path, settings, embedder):
    pages = write_pages(tmp_path / "src", 4)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    gone = {cid for cid, path in chroma_paths(settings).items() if path == str(pages[0])}
    assert len(gone) == 2
    pages[0].unlink()
    report = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert report.removed == 1 and report.unchanged == 3
    state = assert_consistent(settings)
    assert not gone & state["ids"] and str(pages[0]) not in state["files"]
    assert report.chunks == 6


def test_identical_content_is_embedded_once(tmp_path, settings, embedder):
    src = tmp_path / "src"
    pages = write_pages(src, 3)
    shutil.copy(pages[0], src / "copy-of-page-0.md")  # same run
    report = run_index([src], settings, embedder=embedder)
    assert report.added == 4 and report.chunks == 8
    assert report.embedded == 6 and report.reused == 2
    assert len(embedder.texts) == len(set(embedder.texts)) == 6

    embedder.reset()
    shutil.copy(pages[1], src / "later-copy.md")  # a later run: vectors come from Chroma
    (src / "moved.md").write_bytes(pages[2].read_bytes())
    pages[2].unlink()  # a rename: its vectors are reused before the old path is removed
    report = run_index([src], settings, embedder=embedder)
    assert (report.added, report.removed) == (2, 1)
    assert embedder.calls == 0 and report.reused == 4
    state = assert_consistent(settings)
    assert len(state["ids"]) == 10
    # Search shows one of two identical chunks.
    hits = LocalIndex.open(settings, embedder=embedder).dense_search("Notes number 1-0 about page topic", 4)
    assert len({h.text for h in hits}) == len(hits)


def test_crash_between_chroma_and_manifest_converges(tmp_path, settings, embedder, monkeypatch):
    src = tmp_path / "src"
    write_pages(src, 40)
    clean = settings.__class__(data_dir=str(tmp_path / "clean"), chroma_url="")
    run_index([src], clean, embedder=CountingEmbedder())
    clean_ids = manifest_state(clean)["ids"]

    calls = {"n": 0}
    original = ChromaStore.upsert

    def upsert_then_die(self, ids, vectors, metas):
        original(self, ids, vectors, metas)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if killed after Chroma, before the manifest commit

    monkeypatch.setattr(ChromaStore, "upsert", upsert_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_index([src], settings, embedder=embedder, batch_size=16)
    monkeypatch.setattr(ChromaStore, "upsert", original)
    state = manifest_state(settings)
    assert state["pending"] and len(chroma_ids(settings)) > len(state["ids"])  # Chroma ahead of the manifest

    report = run_index([src], settings, embedder=embedder, batch_size=16)
    assert report.added + report.unchanged == 40
    final = assert_consistent(settings)
    assert final["ids"] == clean_ids


def test_stop_request_ends_cleanly_and_next_run_resumes(tmp_path, settings, embedder):
    src = tmp_path / "src"
    write_pages(src, 30)
    stop = threading.Event()

    def on_progress(p):
        if p.chunks >= 10:
            stop.set()

    report = run_index([src], settings, embedder=embedder, batch_size=8, on_progress=on_progress, stop=stop)
    assert report.interrupted and 0 < report.added < 30
    assert_consistent(settings)
    done = report.added
    report = run_index([src], settings, embedder=embedder, batch_size=8)
    assert report.unchanged == done and report.added == 30 - done
    assert len(assert_consistent(settings)["ids"]) == 60


def test_bad_files_are_skipped_with_reasons_and_not_read_again(tmp_path, settings, embedder):
    src = tmp_path / "src"
    write_pages(src, 2)
    (src / "blob.txt").write_bytes(b"\x00\x01\x02\x03" * 64)
    (src / "empty.md").write_text("")
    (src / "image.png").write_bytes(b"\x89PNG")
    report = run_index([src], settings, embedder=embedder)
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert set(reasons) == {"blob.txt", "empty.md", "image.png"}
    assert reasons["blob.txt"] == "binary file" and reasons["empty.md"] == "empty file"
    assert report.added == 2
    again = run_index([src], settings, embedder=embedder)
    assert {Path(p).name for p, _ in again.skipped} == set(reasons) and not again.opened_store
    # A file that was indexed and turns bad loses its chunks.
    (src / "page-0000.md").write_bytes(b"\x00" * 300)
    third = run_index([src], settings, embedder=embedder)
    assert ("binary file" in dict(third.skipped).values()) and third.chunks == 2
    assert_consistent(settings)


def test_rebuild_and_embedder_mismatch(tmp_path, settings, embedder):
    write_pages(tmp_path / "src", 3)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    other = CountingEmbedder()
    other.embedder_id = "test:another-model"
    with pytest.raises(EmbedderMismatch) as err:
        run_index([tmp_path / "src"], settings, embedder=other)
    assert "test:hashed-words" in err.value.one_line() and "copilot index --rebuild" in err.value.one_line()
    with pytest.raises(EmbedderMismatch, match="built with test:hashed-words"):
        LocalIndex.open(settings, embedder=other).dense_search("notes", 3)
    report = run_index([tmp_path / "src"], settings, embedder=other, rebuild=True)
    assert report.added == 3 and len(other.texts) == 6
    assert_consistent(settings)
    hits = LocalIndex.open(settings, embedder=other).dense_search("notes about page topic", 3)
    assert len(hits) == 3


def test_sources_list_and_remove(tmp_path, settings, embedder):
    a, b = tmp_path / "a", tmp_path / "b"
    write_pages(a, 2, prefix="alpha")
    write_pages(b, 3, prefix="beta", sections=1)
    run_index([a, b], settings, embedder=embedder)
    listed = {s.root: (s.files, s.chunks) for s in list_sources(settings)}
    assert listed == {str(a): (2, 4), str(b): (3, 3)}
    files, chunks = remove_source(str(a), settings)
    assert (files, chunks) == (2, 4)
    assert {s.root for s in list_sources(settings)} == {str(b)}
    state = assert_consistent(settings)
    assert len(state["ids"]) == 3
    with pytest.raises(UsageError, match="not an indexed folder"):
        remove_source(str(tmp_path / "nowhere"), settings)


def test_second_writer_is_refused_while_one_writes(tmp_path, settings, embedder):
    write_pages(tmp_path / "src", 1)
    with WriterLock(index_dir(settings.data_path)), pytest.raises(IndexLocked, match=f"pid {os.getpid()}"):
        run_index([tmp_path / "src"], settings, embedder=embedder)


@pytest.mark.parametrize("store_kind", ["embedded"])
def test_deleted_chroma_folder_is_rebuilt_from_scratch(tmp_path, settings, embedder):
    write_pages(tmp_path / "src", 3)
    run_index([tmp_path / "src"], settings, embedder=embedder)
    shutil.rmtree(settings.data_path / "index" / "chroma")
    report = run_index([tmp_path / "src"], settings, embedder=embedder)
    assert report.added == 3
    assert len(assert_consistent(settings)["ids"]) == 6


def test_reader_follows_writes(tmp_path, settings, embedder):
    src = tmp_path / "src"
    write_pages(src, 2, prefix="first")
    reader = LocalIndex.open(settings, embedder=embedder)
    assert reader.is_empty() and reader.dense_search("anything", 3) == []
    run_index([src], settings, embedder=embedder)
    assert reader.count() == 4
    write_pages(src, 1, prefix="zulu")
    run_index([src], settings, embedder=embedder)
    hits = reader.dense_search("zulu topic notes", 2)
    assert hits[0].source_path.endswith("zulu-0000.md")
    assert hits[0].heading.startswith("Zulu 0 › Part") and "```python" in hits[0].text
    reader.close()


def test_unreachable_chroma_server_is_a_clear_error(tmp_path, embedder):
    from copilot.config import Settings
    from copilot.errors import IndexUnavailable
    from tests.fixtures_index import free_port

    write_pages(tmp_path / "src", 1)
    dead = Settings(data_dir=str(tmp_path / "data"), chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IndexUnavailable) as err:
        run_index([tmp_path / "src"], dead, embedder=embedder)
    assert "cannot reach the Chroma server" in err.value.one_line() and "chroma run" in err.value.one_line()
    assert manifest_state(dead)["files"] == {}  # nothing recorded as indexed
