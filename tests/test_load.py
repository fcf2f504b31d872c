"""Load and scale (issue 6): many questions at once through the engine, several writers and a
reader on one Chroma server, a second writer on an embedded index, and memory over many files.
Real components throughout: the engine against the loopback Ollama and web, real MiniLM files,
real SQLite, embedded Chroma and a real `chroma run` on 127.0.0.1, `copilot index` processes."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from copilot.config import Settings, load_settings
from copilot.index.indexer import run_index
from copilot.index.local import LocalIndex
from copilot.index.store import chroma_dir
from tests.index_helpers import (
    CountingEmbedder,
    chroma_ids,
    chroma_paths,
    committed_files,
    manifest_state,
    wait_for_files,
    write_pages,
)
from tests.saved_pages import write_saved

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = 20


def open_fds(chroma_folder: Path) -> tuple[int, int]:
    """(open file descriptors, those of them on Chroma's files). Chroma's SQLite connection pool
    opens connections when it likes (a bounded pool): counted apart."""
    mine = chroma = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used
            continue
        if target.startswith(str(chroma_folder) + "/"):
            chroma += 1
        else:
            mine += 1
    return mine, chroma


def live_rss_kib() -> int:
    """Resident KiB after a garbage collection and glibc's `malloc_trim(0)`, which hands back the
    free pages the C heap keeps after a burst (hundreds of MB here after 20 answers in parallel;
    not a leak, but it would hide one)."""
    gc.collect()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    return rss_kib()


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# --- 20 questions at once --------------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head><title>Merging dictionaries</title></head><body><article>
<h1>Merging dictionaries</h1><p>Since Python 3.9 the union operator merges two dicts: <code>z = x | y</code>.
Keys of the right operand win when both have them.</p>
<pre><code>x = {"a": 1}
y = {"b": 2}
z = x | y
</code></pre></article></body></html>"""


def _reply(body: dict) -> str:
    """The answer names its own question's number, so crossed streams would show."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    number = user.split("question number ")[1].split(" ")[0] if "question number " in user else "?"
    return f"Question {number}. In Python 3.9 and later use the union operator: z = x | y [1]."


async def _ask_all(questions: list[str], settings) -> list:
    from copilot import events as ev
    from copilot.engine import AskOptions, ask

    async def one(q: str):
        done, warnings = None, []
        async for event in ask(q, settings, AskOptions()):
            if isinstance(event, ev.Warning):
                warnings.append(event.message)
            elif isinstance(event, ev.Done):
                done = event.answer
        return done, warnings

    return await asyncio.gather(*(one(q) for q in questions))


def test_twenty_questions_at_once_all_answered_and_fds_and_memory_return(env, ollama, web, minilm_dir, tmp_path,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_EMBED_MODEL_DIR", str(minilm_dir))
    settings = load_settings()
    run_index([write_saved(tmp_path / "saved")], settings)  # the local side too: hybrid search, real model
    urls = [web.add_page(f"/merge/{i}", PAGE) for i in range(3)]
    web.set_search([{"title": f"Merging dictionaries {i}", "url": u, "content": "the union operator"}
                    for i, u in enumerate(urls)])
    ollama.reply_with(_reply)
    questions = [f"how do I merge two dicts in python? (question number {i} )" for i in range(QUESTIONS)]

    def round_of_questions() -> None:
        for i, (answer, warnings) in enumerate(asyncio.run(_ask_all(questions, settings))):
            # No errors; the support check may find the canned reply weakly supported, nothing else.
            assert answer is not None, i
            assert all(w.startswith("weak citation support") for w in warnings), (i, warnings)
            assert answer.text == f"Question {i}. In Python 3.9 and later use the union operator: z = x | y [1]."
            assert [(c.n, c.valid) for c in answer.citations] == [(1, True)]
            assert {s.kind for s in answer.sources} >= {"web"} and any(s.path for s in answer.sources)

    threads = threading.active_count()

    def quiet() -> None:
        """Wait (bounded) until the loopback servers' connection threads are gone: the sockets
        they close are not the engine's."""
        deadline = time.monotonic() + 30
        while threading.active_count() > threads:
            assert time.monotonic() < deadline, threading.enumerate()
            time.sleep(0.01)

    round_of_questions()  # warm-up: imports, the model, Chroma, thread pools, caches
    quiet()
    folder = chroma_dir(settings.data_path)
    (fds, chroma_fds), rss = open_fds(folder), live_rss_kib()
    after = []
    for _ in range(2):
        round_of_questions()
        quiet()
        after.append((*open_fds(folder), live_rss_kib()))
    with capsys.disabled():
        print(f"\n{QUESTIONS} questions at once, two rounds after a warm-up: open fds {fds} -> "
              f"{', '.join(str(a[0]) for a in after)} (Chroma's own {chroma_fds} -> "
              f"{', '.join(str(a[1]) for a in after)}), RSS {rss / 1024:.1f} -> "
              f"{', '.join(f'{a[2] / 1024:.1f}' for a in after)} MiB")
    assert all(a[0] <= fds for a in after)  # none left open (one fewer: something earlier let go)
    assert all(a[1] <= chroma_fds + 2 for a in after)  # Chroma's pool, not one per question
    # Even after malloc_trim the C heap's layout after a burst of threads wanders: over 30 rounds
    # (600 questions) it went 404 -> 470 -> 422 MiB and back, up to ~15 MiB between two rounds; a
    # leak only grows. The smaller of two rounds: a leak of 1.6 MiB a question would show.
    assert min(a[2] for a in after) - rss < 32 * 1024
    assert len([r for r in ollama.requests if r.get("path") == "/api/chat"]) == 3 * QUESTIONS


# --- two writers and a reader on one `chroma run` ----------------------------------------------------

WRITER_PAGES = 30


def _env(data: Path, config: Path, model_dir: Path, chroma_url: str = "") -> dict[str, str]:
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_CONFIG": str(config),
           "COPILOT_EMBED_MODEL_DIR": str(model_dir)}
    if chroma_url:
        env["COPILOT_CHROMA_URL"] = chroma_url
    return env


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "copilot", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO, stdin=subprocess.DEVNULL)


def _clean_ids(folders: list[Path], where: Path) -> set[str]:
    """What a clean run stores for `folders` (chunk ids depend on path and position only)."""
    clean = Settings(data_dir=str(where))
    run_index(folders, clean, embedder=CountingEmbedder())
    return chroma_ids(clean)


def _chroma_count(settings) -> int:
    from copilot.index.store import ChromaStore

    store = ChromaStore.open_for_read(settings)
    assert store is not None
    try:
        return store.count()
    finally:
        store.close()


def test_two_writers_and_a_reader_on_one_chroma_server(tmp_path, minilm_dir, chroma_server, monkeypatch):
    """Two users (two data dirs) index the same folder into one server at once while the first
    one's reader keeps searching. Each index is its own collection: no errors, no chunk stored
    twice or lost, the first user's earlier chunks survive the second user's run, and the reader
    sees the new chunks when the writer is done. (Two writers on one data dir are one at a time:
    the lock, see test_second_writer_on_an_embedded_index_stops_or_waits.)"""
    monkeypatch.setenv("COPILOT_EMBED_MODEL_DIR", str(minilm_dir))
    shared, first = tmp_path / "shared", tmp_path / "first"
    write_pages(shared, WRITER_PAGES, prefix="shared", sections=2)
    write_pages(first, 2, prefix="first", sections=2)
    a = load_settings({"data_dir": str(tmp_path / "a"), "chroma_url": chroma_server})
    b = load_settings({"data_dir": str(tmp_path / "b"), "chroma_url": chroma_server})
    run_index([first], a)  # user A's index before: the reader has something to read from the start
    reader = LocalIndex.open(a)
    assert reader.count() == 4

    errors: list[BaseException] = []
    searches = 0
    stop = threading.Event()

    def read() -> None:
        from copilot.retrieval import hybrid_search

        nonlocal searches
        while not stop.is_set():
            try:
                hits = hybrid_search("notes about shared topic", a, 5, index=reader)
                assert hits and all(h.text for h in hits)
                searches += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                return

    procs = [_start("index", str(shared), "--json", env=_env(tmp_path / d, tmp_path / f"{d}.toml", minilm_dir,
                                                              chroma_server)) for d in ("a", "b")]
    thread = threading.Thread(target=read)
    thread.start()
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == [] and searches > 0
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
        assert json.loads(out)["added"] == WRITER_PAGES

    expected_a = _clean_ids([first, shared], tmp_path / "clean-a")
    expected_b = _clean_ids([shared], tmp_path / "clean-b")
    for settings, expected in ((a, expected_a), (b, expected_b)):
        state = manifest_state(settings)
        assert state["pending"] == []
        assert chroma_ids(settings) == state["ids"] == expected  # nothing lost, nothing foreign
        assert _chroma_count(settings) == len(expected)  # nothing stored twice
        assert sorted(chroma_paths(settings).values()).count(str(shared / "shared-0000.md")) == 2

    # The reader, open all along, sees what the writer added.
    assert reader.count() == len(expected_a)
    dense = reader.dense_search("notes about shared topic", 5)  # Chroma, reopened after the write
    assert any(h.source_path.startswith(str(shared)) and h.text for h in dense)
    reader.close()


# --- a second writer on an embedded index ----------------------------------------------------------


def test_second_writer_on_an_embedded_index_stops_or_waits(tmp_path, minilm_dir):
    """Two `copilot index` processes on one embedded index: the second says who holds the lock
    and exits 75 (nothing written), or with --wait queues and then finds the work done."""
    src = tmp_path / "src"
    write_pages(src, 40, prefix="queue", sections=2)
    data = tmp_path / "data"
    env = _env(data, tmp_path / "config.toml", minilm_dir)
    first = _start("index", str(src), env=env)
    waiting = None
    try:
        wait_for_files(first, data, 1)  # it holds the lock and is writing
        # Paused mid-run, it keeps holding the lock for as long as the second one needs to start
        # (on a fast machine the first run could otherwise finish before the second even looks).
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first writer finished before it could be paused"
        refused = subprocess.run([sys.executable, "-m", "copilot", "index", str(src)], capture_output=True,
                                 text=True, env=env, cwd=REPO, timeout=120, check=False)
        assert refused.returncode == 75
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"being written by pid {first.pid}" in lines[0] and "--wait" in lines[0]
        waiting = _start("index", str(src), "--json", "--wait", "300", env=env)
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        out, err = waiting.communicate(timeout=300)
    finally:
        for p in (first, waiting):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.communicate()
    assert waiting.returncode == 0, err
    report = json.loads(out)
    assert (report["added"], report["unchanged"], report["chunks"]) == (0, 40, 80)
    settings = Settings(data_dir=str(data))
    state = manifest_state(settings)
    assert state["pending"] == [] and chroma_ids(settings) == state["ids"] == _clean_ids([src], tmp_path / "clean")
    assert committed_files(data) == 40


# --- memory over many files --------------------------------------------------------------------------

MANY = """
import json, sys
import chromadb  # loaded first: its import is not growth
from copilot.config import Settings
from copilot.index.indexer import run_index
from tests.index_helpers import CountingEmbedder

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}

marks = {}
def progress(p):
    if p.files_done and p.files_done % 250 == 0 and p.files_done not in marks:
        marks[p.files_done] = rss()["VmRSS"]

report = run_index([sys.argv[1]], Settings(data_dir=sys.argv[2]), embedder=CountingEmbedder(), on_progress=progress)
print(json.dumps({"added": report.added, "marks": marks, "end": rss()}))
"""


def test_indexing_2000_small_files_keeps_memory_bounded(tmp_path):
    """A stand-in embedder, so what could grow is the indexer and Chroma, not the model (the
    20 000-file measurement is bench/index_corpus.py --many, recorded in bench/results/index.md)."""
    n = 2000
    src = tmp_path / "notes"
    for i in range(n):
        folder = src / f"d{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"n{i:05d}.md").write_text(f"# Note {i}\n\nSmall note number {i} about topic {i % 97}.\n")
    done = subprocess.run([sys.executable, "-c", MANY, str(src), str(tmp_path / "data")], capture_output=True,
                          text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    marks = {int(k): v for k, v in result["marks"].items()}
    assert result["added"] == n and max(marks) == n
    growth = marks[n] - marks[n // 2]  # KiB over the second half (the first loads the extractors, fills caches)
    print(f"\n{n} files: RSS at {n // 2} files {marks[n // 2] / 1024:.0f} MiB, at {n} {marks[n] / 1024:.0f} MiB, "
          f"peak {result['end']['VmHWM'] / 1024:.0f} MiB")
    # Measured: 4-6 MiB (Chroma's HNSW index and SQLite's cache grow; at 20 000 files ~1.6 KiB a
    # file). Anything kept per file of, say, 12 KiB would add 12 MiB here.
    assert growth < 12 * 1024, marks
