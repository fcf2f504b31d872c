"""Faults `copilot index` must survive (issue 6). Each ends with one clear line on stderr, the
right exit code and no traceback, and loses nothing: the next run converges to exactly the chunks
a clean run makes, and damaged files are left byte-identical until `--rebuild` sets them aside.

Real components: the CLI (in a subprocess where the process matters: signals, resource limits,
a server going away), real SQLite, real embedded Chroma and a real `chroma run` on 127.0.0.1.
Most runs use the counting embedder (chunk ids do not depend on vectors); runs that a test stops
from outside once it has seen them commit use the real all-MiniLM-L6-v2 files, which keep them
busy long enough.

Covered elsewhere, not repeated here: another writer holding the lock, and SIGTERM / SIGKILL
mid-run (tests/test_index_cli.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from copilot.config import Settings, load_settings
from copilot.index.indexer import run_index
from copilot.index.manifest import manifest_path
from copilot.index.store import chroma_dir
from tests.cli_run import run_cli
from tests.index_helpers import (
    CountingEmbedder,
    chroma_ids,
    chroma_paths,
    committed_files,
    manifest_state,
    wait_for_files,
    write_pages,
)

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]

REPO = Path(__file__).resolve().parent.parent
# Two chunks each. The first batch (64 chunks) commits 31 files; embedding the other 29 keeps the
# real model busy for ~2 s more, before the last batch touches Chroma: the window in which a test
# stops the server under a run it has seen commit.
PAGES = 60


# --- helpers -----------------------------------------------------------------------------------


def cli_env(tmp_path: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_CONFIG": str(config),
           "COPILOT_EMBED_MODEL_DIR": str(model_dir), "COPILOT_SEARCH_ENGINE": "none", **extra}
    return env


def copilot(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "copilot", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def start(*args: str, env: dict[str, str], prefix: tuple[str, ...] = ("-m", "copilot")) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *prefix, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO, stdin=subprocess.DEVNULL)


def one_line_error(stderr: str) -> str:
    """The single line the user gets; fails on a traceback or a second line."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("copilot: ")
    return lines[0]


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the writer lock (its pid is ours to rewrite)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "write.lock"}


def assert_converged(settings: Settings, clean: set[str]) -> None:
    """Exactly the chunks of a clean run, in Chroma and in the manifest; nothing pending."""
    state = manifest_state(settings)
    assert state["pending"] == []
    assert chroma_ids(settings) == state["ids"] == state["fts_ids"] == clean


def assert_nothing_lost(settings: Settings) -> None:
    """After a failed run: every committed file has all its chunks, in the manifest and in
    Chroma; any other chunk (a batch cut short) belongs to a file recorded as pending, which the
    next run deletes and indexes again. The keyword index is sound."""
    conn = sqlite3.connect(str(manifest_path(settings.data_path)))
    try:
        committed = dict(conn.execute("SELECT path, chunks FROM files WHERE skip_reason IS NULL"))
        pending = {r[0] for r in conn.execute("SELECT path FROM pending")}
        rows = conn.execute("SELECT id, source_path FROM chunks").fetchall()
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    finally:
        conn.close()
    in_chroma = chroma_paths(settings)
    assert committed
    for path, n in committed.items():
        ids = {cid for cid, src in rows if src == path}
        assert len(ids) == n and ids <= set(in_chroma), path
    stray = {src for _, src in rows if src not in committed} | {src for src in in_chroma.values() if src not in committed}
    assert stray <= pending, stray - pending


class ChromaServer:
    """A `chroma run` of our own on a fixed port and folder, to stop and start again."""

    def __init__(self, folder: Path) -> None:
        from tests.fixtures_index import free_port

        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ChromaServer:
        from tests.fixtures_index import CHROMA_BIN, _heartbeat

        if not CHROMA_BIN.exists():
            pytest.skip("the chroma CLI is not installed in this environment")
        self.log = (self.folder.parent / f"{self.folder.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(CHROMA_BIN), "run", "--host", "127.0.0.1", "--port", str(self.port), "--path", str(self.folder)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        deadline = time.monotonic() + 60
        while not _heartbeat(self.url):
            assert self.proc.poll() is None and time.monotonic() < deadline, "`chroma run` did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        self.proc = None


@pytest.fixture
def server(tmp_path: Path):
    srv = ChromaServer(tmp_path / "chroma-server")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "pages"
    write_pages(folder, PAGES, prefix="fault", sections=2)
    return folder


@pytest.fixture(scope="module")
def clean_ids(pages: Path, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The chunk ids a clean run stores for `pages` (ids depend on path and position only)."""
    clean = Settings(data_dir=str(tmp_path_factory.mktemp("clean") / "data"))
    run_index([pages], clean, embedder=CountingEmbedder())
    ids = chroma_ids(clean)
    assert len(ids) == 2 * PAGES
    return ids


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings({"data_dir": env["COPILOT_DATA_DIR"], "chroma_url": env.get("COPILOT_CHROMA_URL", "")})


# --- Chroma server down at start, stopped mid-run, restarted mid-run ------------------------------


def test_chroma_server_down_at_start(tmp_path, minilm_dir, pages):
    from tests.fixtures_index import free_port

    env = cli_env(tmp_path, minilm_dir, COPILOT_CHROMA_URL=f"http://127.0.0.1:{free_port()}")
    done = copilot("index", str(pages), env=env)
    assert done.returncode == 8
    line = one_line_error(done.stderr)
    assert "cannot reach the Chroma server at http://127.0.0.1:" in line and "chroma run" in line
    assert committed_files(tmp_path / "data") == 0  # nothing recorded as indexed


def test_chroma_server_stopped_mid_run_stops_with_one_line_then_next_run_converges(
        tmp_path, minilm_dir, pages, clean_ids, server):
    server.start()
    env = cli_env(tmp_path, minilm_dir, COPILOT_CHROMA_URL=server.url)
    data = tmp_path / "data"
    proc = start("index", str(pages), env=env)
    wait_for_files(proc, data, 1)
    server.stop()
    out, err = proc.communicate(timeout=120)  # it retries the server for a few seconds, then stops
    assert proc.returncode == 8, err
    line = one_line_error(err)
    assert f"lost the Chroma server at {server.url}" in line and "next run finishes" in line
    assert 0 < committed_files(data) < PAGES

    # A reader meanwhile: a warning, no local hits, no traceback.
    search = copilot("search", "--json", "--no-web", "fault topic", env=env)
    assert search.returncode == 0 and "Traceback" not in search.stderr
    warnings = json.loads(search.stdout)["warnings"]
    assert len(warnings) == 1 and "Chroma server" in warnings[0]

    server.start()  # same port, same folder
    again = copilot("index", str(pages), "--json", env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] + report["unchanged"] == PAGES and report["chunks"] == 2 * PAGES
    assert_converged(settings_of(env), clean_ids)


def test_chroma_server_restarted_mid_run_is_survived(tmp_path, minilm_dir, pages, clean_ids, server):
    server.start()
    env = cli_env(tmp_path, minilm_dir, COPILOT_CHROMA_URL=server.url)
    proc = start("index", str(pages), "--json", env=env)
    wait_for_files(proc, tmp_path / "data", 1)
    # Freeze the writer (between requests or in the middle of one) while the server restarts, so
    # the test does not depend on how fast `chroma run` comes back on a loaded machine.
    proc.send_signal(signal.SIGSTOP)
    try:
        server.stop()
        server.start()
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out)["chunks"] == 2 * PAGES
    assert_converged(settings_of(env), clean_ids)


def test_lost_chroma_data_is_rebuilt_once_then_runs_are_incremental_again(tmp_path):
    """Chroma's folder gone (deleted, restored from an old backup): the next run rebuilds it from
    the files, and the run after that redoes only what changed (it used to start over every time:
    the manifest took a new id the collection did not carry)."""
    import shutil

    src = tmp_path / "src"
    pages = write_pages(src, 4, prefix="lost", sections=2)
    settings = Settings(data_dir=str(tmp_path / "data"))
    run_index([src], settings, embedder=CountingEmbedder())
    shutil.rmtree(chroma_dir(settings.data_path))
    report = run_index([src], settings, embedder=CountingEmbedder())
    assert report.added == 4 and len(chroma_ids(settings)) == 8
    pages[2].write_text(pages[2].read_text(encoding="utf-8") + "\n## More\n\nOne more part.\n", encoding="utf-8")
    embedder = CountingEmbedder()
    report = run_index([src], settings, embedder=embedder)
    assert (report.added, report.updated, report.unchanged) == (0, 1, 3)
    assert len(embedder.texts) == 1  # only the new part
    state = manifest_state(settings)
    assert state["pending"] == [] and chroma_ids(settings) == state["ids"] and len(state["ids"]) == 9


def test_a_long_lived_reader_survives_a_chroma_server_restart(tmp_path, server, monkeypatch):
    """The engine keeps one index open per process (the TUI): while the server is down a question
    gets one line and goes on without local hits; once it is back, the next one has them again."""
    from copilot.engine import local_hits
    from copilot.errors import IndexUnavailable

    monkeypatch.setattr("copilot.index.embeddings.make_embedder", lambda settings: CountingEmbedder())
    server.start()
    settings = Settings(data_dir=str(tmp_path / "data"), chroma_url=server.url)
    write_pages(tmp_path / "src", 3, prefix="reader", sections=2)
    run_index([tmp_path / "src"], settings, embedder=CountingEmbedder())
    assert local_hits("notes about reader topic", settings, 3)

    server.stop()
    with pytest.raises(IndexUnavailable) as err:
        local_hits("notes about reader topic", settings, 3)
    assert f"the Chroma server at {server.url}" in err.value.one_line()
    server.start()
    hits = local_hits("notes about reader topic", settings, 3)
    assert hits and all(h.source_path.startswith(str(tmp_path / "src")) for h in hits)


# --- disk full ------------------------------------------------------------------------------------
#
# Simulated with RLIMIT_FSIZE in the child: the kernel then fails the real write() calls of SQLite
# and of Chroma's Rust store with EFBIG, so every layer's own error path runs, which an OSError
# injected at our boundary would skip. It needs no root and no tmpfs. Unlike a real full disk it
# is per file, so the data chooses which file fails first: wide vectors and short texts make it
# Chroma's, long texts and narrow vectors the manifest's. SQLite reports EFBIG as "disk I/O
# error" where a full disk says "database or disk is full"; the message fits both. The counting
# embedder stands in for the model (what is written is the same; only the numbers differ).

LIMITED = ("-c", "import resource, sys; n = int(sys.argv[1]); "
           "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
           "import copilot.index.embeddings as e; from tests.index_helpers import CountingEmbedder; "
           "CountingEmbedder.dim = int(sys.argv[2]); e.make_embedder = lambda settings: CountingEmbedder(); "
           "from copilot.cli import main; sys.exit(main(sys.argv[3:]))")


PAGES_FULL = 200


def index_with_file_limit(limit: int, dim: int, folder: Path, data: Path) -> subprocess.CompletedProcess:
    config = data.parent / "config.toml"
    config.write_text("")
    env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_CONFIG": str(config)}
    return subprocess.run([sys.executable, *LIMITED, str(limit), str(dim), "index", str(folder)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)


def long_pages(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        parts = [f"# Long page {i}\n"]
        for j in range(2):
            words = " ".join(hashlib.sha1(f"{i}-{j}-{k}".encode()).hexdigest()[:8] for k in range(120))
            parts.append(f"## Section {j} of page {i}\n\n{words}\n")
        (folder / f"long-{i:04d}.md").write_text("\n".join(parts), encoding="utf-8")


@pytest.mark.parametrize("which", ["chroma", "manifest"])
def test_disk_full_stops_with_one_line_loses_nothing_and_next_run_converges(tmp_path, which):
    src, data = tmp_path / "src", tmp_path / "data"
    # Sizes chosen so that the first batch of 64 chunks fits and the run fails in the third (with
    # wide margins: the same with paths 80 characters longer).
    if which == "chroma":  # wide vectors, short pages: Chroma's files grow ~7 KB a chunk, the manifest ~1
        write_pages(src, PAGES_FULL, prefix="full", sections=2)
        limit, dim, where = 1_500_000, 1536, f"could not write the index in {chroma_dir(data)}"
    else:  # long pages, tiny vectors: the manifest (text + keyword index) grows ~3 KB a chunk, Chroma <1
        long_pages(src, PAGES_FULL)
        limit, dim, where = 1_000_000, 8, f"could not write the index manifest {manifest_path(data)}"
    full = index_with_file_limit(limit, dim, src, data)
    assert full.returncode == 74, full.stderr
    line = one_line_error(full.stderr)
    # Chroma's own words vary with where its write failed (its log, or the compaction after it).
    assert where in line and (which == "chroma" or "disk I/O error" in line)
    assert "free disk space" in line and "what was finished is kept" in line
    assert 0 < committed_files(data) < PAGES_FULL  # the first batch made it, a later one did not
    settings = Settings(data_dir=str(data))
    assert_nothing_lost(settings)

    again = index_with_file_limit(1 << 40, dim, src, data)  # space again
    assert again.returncode == 0, again.stderr
    clean = Settings(data_dir=str(tmp_path / "clean"))
    run_index([src], clean, embedder=CountingEmbedder())
    assert_converged(settings, chroma_ids(clean))


# --- Ctrl-C (SIGINT) at any point -----------------------------------------------------------------


def test_sigint_mid_run_and_twice_then_rerun_equals_clean_run(tmp_path, minilm_dir, pages, clean_ids):
    """Ctrl-C from outside, to the real command with the real model."""
    # Once: the run stops at the next file or batch, says so, exits 130; the index is consistent.
    env = cli_env(tmp_path / "once", minilm_dir)
    settings = settings_of(env)
    proc = start("index", str(pages), env=env)
    wait_for_files(proc, settings.data_path, 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # (A signal during the last batch's embedding lets that batch finish: it may be all there is.)
    assert "Traceback" not in err and "Stopped by SIGINT" in out, (out, err)
    state = manifest_state(settings)
    assert state["pending"] == [] and chroma_ids(settings) == state["ids"]

    # Twice (an impatient user): the second one ends the run at once; the next run cleans up.
    # Signals sent back to back may arrive as one: either way, exit 130 and no traceback.
    env = cli_env(tmp_path / "twice", minilm_dir)
    proc = start("index", str(pages), env=env)
    wait_for_files(proc, settings_of(env).data_path, 1)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and ("cancelled" in err or "Stopped by SIGINT" in out)

    again = copilot("index", str(pages), env=env)
    assert again.returncode == 0, again.stderr
    assert_converged(settings_of(env), clean_ids)


def test_sigint_while_waiting_for_the_lock(tmp_path, minilm_dir, pages):
    from copilot.index.manifest import WriterLock, index_dir

    env = cli_env(tmp_path, minilm_dir)
    lock = WriterLock(index_dir(tmp_path / "data"))
    lock.acquire()
    try:
        proc = start("index", str(pages), "--wait", "120", env=env)
        # Waiting means it holds the lock file open: look for it among its open files.
        deadline = time.monotonic() + 60
        while not any(os.path.realpath(f"/proc/{proc.pid}/fd/{fd}") == str(lock.path)
                      for fd in _fds(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        lock.release()
    assert proc.returncode == 130
    assert one_line_error(err) == "copilot: cancelled; the next `copilot index` finishes the cleanup"
    assert committed_files(tmp_path / "data") == 0


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


# Named moments of a run: SIGINT arrives as the run enters the n-th call of a function. They
# cover the scan, the plan, opening Chroma, embedding, each step of a batch (pending recorded, old
# chunks deleted, upsert, inside the SQLite transaction), the removal of deleted files, the
# generation bump and the lock's release at the very end.
MOMENTS = [("walk", 1), ("_plan", 1), ("_open_store", 1), ("_vectors", 2), ("add_pending", 2),
           ("delete_paths", 2), ("upsert", 2), ("insert_chunks", 2), ("put_file", 40), ("clear_pending", 3),
           ("delete_files", 1), ("bump_generation", 1), ("release", 1)]
AFTER_LAST_SAFE_POINT = {"bump_generation", "release"}  # a single SIGINT there lets the run finish
# Each a process of its own (~1.5 s of CPU to start): the moments where a hard stop could hurt.
HARD_MOMENTS = [("delete_paths", 2), ("upsert", 2), ("insert_chunks", 2), ("release", 1)]


def sigint_at(point: str, nth: int, times: int):
    """A profile hook that sends this process SIGINT `times` times as it enters the `nth` call of
    the function `point` of copilot/index/."""
    seen = 0

    def hook(frame, event, arg):
        nonlocal seen
        code = frame.f_code
        if event == "call" and code.co_name == point and "/copilot/index/" in code.co_filename:
            seen += 1
            if seen == nth:
                sys.setprofile(None)
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)

    return hook


# The same in a child: `python -c KILLER POINT NTH TIMES index PATH`, with the counting embedder.
KILLER = """
import sys
from tests.test_index_faults import sigint_at
import copilot.index.embeddings as e
from tests.index_helpers import CountingEmbedder
e.make_embedder = lambda settings: CountingEmbedder()
from copilot.cli import main
sys.setprofile(sigint_at(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def moment_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    """(folder, data dir, clean ids): an index of the folder's first state, and the folder changed
    since so that the next run has work of every kind (files to add, change and remove; three
    batches), which reaches every moment above; the ids a clean run of the new state stores."""
    base = tmp_path_factory.mktemp("moments")
    src = base / "src"
    write_pages(src, 10, prefix="moment", sections=2)
    run_index([src], Settings(data_dir=str(base / "data0")), embedder=CountingEmbedder())
    for i in (1, 5):
        p = src / f"moment-{i:04d}.md"
        p.write_text(p.read_text(encoding="utf-8") + "\n## Added later\n\nA new paragraph.\n", encoding="utf-8")
    (src / "moment-0007.md").unlink()
    write_pages(src / "more", 70, prefix="later", sections=2)
    clean = Settings(data_dir=str(base / "clean"))
    run_index([src], clean, embedder=CountingEmbedder())
    return src, base / "data0", chroma_ids(clean)


def test_sigint_once_at_every_moment_stops_consistent(tmp_path, moment_base, capsys, monkeypatch):
    """The first SIGINT only asks the run to stop: at the next file or batch it drops the batch
    in hand, cleans what it half wrote, says so and exits 130 (or, past the last safe point, just
    finishes). The index is consistent at once, and the next run makes exactly a clean run's."""
    import shutil

    src, data0, clean = moment_base
    monkeypatch.setattr("copilot.index.embeddings.make_embedder", lambda settings: CountingEmbedder())
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("COPILOT_CONFIG", str(tmp_path / "config.toml"))
    for point, nth in MOMENTS:
        data = shutil.copytree(data0, tmp_path / f"{point}-{nth}")
        monkeypatch.setenv("COPILOT_DATA_DIR", str(data))
        sys.setprofile(sigint_at(point, nth, 1))
        try:
            run = run_cli(capsys, monkeypatch, "index", str(src))
        finally:
            sys.setprofile(None)
        settings = Settings(data_dir=str(data))
        if point in AFTER_LAST_SAFE_POINT:
            assert run.code == 0, (point, run)
        else:
            assert run.code == 130 and "Stopped by SIGINT" in run.out, (point, run)
        state = manifest_state(settings)
        assert state["pending"] == [] and chroma_ids(settings) == state["ids"], point
        assert not run_index([src], settings, embedder=CountingEmbedder()).interrupted
        assert_converged(settings, clean)


def test_sigint_twice_at_moments_ends_at_once_then_next_run_cleans_up(tmp_path, moment_base):
    """The second SIGINT raises KeyboardInterrupt right where the run is, even inside a SQLite
    transaction or the lock's release: one line, exit 130, and the next run cleans up. Each run
    is a real process (what a killed process leaves behind is what matters); all start at once."""
    import shutil

    src, data0, clean = moment_base
    (tmp_path / "config.toml").write_text("")
    runs = []
    for point, nth in HARD_MOMENTS:
        data = shutil.copytree(data0, tmp_path / f"{point}-{nth}")
        env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_CONFIG": str(tmp_path / "config.toml")}
        runs.append((point, data, start(point, str(nth), "2", "index", str(src), env=env, prefix=("-c", KILLER))))
    for point, data, proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, (point, out, err)
        assert one_line_error(err) == "copilot: cancelled; the next `copilot index` finishes the cleanup", point
        settings = Settings(data_dir=str(data))
        assert not run_index([src], settings, embedder=CountingEmbedder()).interrupted
        assert_converged(settings, clean)


# --- a database from an older version, or damaged -------------------------------------------------


def _noise(n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += hashlib.sha256(len(out).to_bytes(8, "little")).digest()
    return bytes(out[:n])


def _damage_pages(db: Path, tables: tuple[str, ...]) -> None:
    """Overwrite the root pages of `tables` with noise; the header and schema stay readable."""
    conn = sqlite3.connect(str(db))
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0]
                 for t in tables]
    finally:
        conn.close()
    with db.open("r+b") as f:
        for page in roots:
            f.seek((page - 1) * size)
            f.write(_noise(size))


def _old_schema(db: Path) -> None:
    conn = sqlite3.connect(str(db))
    try:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
        conn.commit()
        conn.execute("PRAGMA journal_mode = DELETE")  # as an older copilot may have left it
    finally:
        conn.close()


def _older_layout(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(str(db))
    try:
        conn.execute("CREATE TABLE files(path TEXT PRIMARY KEY, mtime REAL)")
        conn.execute("INSERT INTO files VALUES ('/home/u/saved/a.html', 1.0)")
        conn.commit()
    finally:
        conn.close()


DAMAGE = {
    # kind: (what it does to the data dir, which file, what the one line says)
    "manifest-garbage": (lambda d: manifest_path(d).write_bytes(_noise(manifest_path(d).stat().st_size)),
                         "manifest", "is damaged (file is not a database)"),
    "manifest-truncated": (lambda d: os.truncate(manifest_path(d), manifest_path(d).stat().st_size // 2),
                           "manifest", "is damaged (database disk image is malformed)"),
    "manifest-damaged-pages": (lambda d: _damage_pages(manifest_path(d), ("chunks", "chunks_fts_data")),
                               "manifest", "is damaged (SQLite's check of it failed)"),
    "manifest-old-schema": (lambda d: _old_schema(manifest_path(d)),
                            "manifest", "was made by another version of copilot (schema 0; this one reads schema 2)"),
    "manifest-older-layout": (lambda d: _older_layout(manifest_path(d)),
                              "manifest", "was made by another version of copilot (an unknown version"),
    "chroma-garbage": (lambda d: (chroma_dir(d) / "chroma.sqlite3").write_bytes(
        _noise((chroma_dir(d) / "chroma.sqlite3").stat().st_size)), "chroma", "file is not a database"),
    "chroma-truncated": (lambda d: os.truncate(chroma_dir(d) / "chroma.sqlite3", 50_000),
                         "chroma", "database disk image is malformed"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, data dir): a small index built by the counting embedder."""
    base = tmp_path_factory.mktemp("pristine")
    write_pages(base / "src", 3, prefix="kept", sections=2)
    run_index([base / "src"], Settings(data_dir=str(base / "data")), embedder=CountingEmbedder())
    return base / "src", base / "data"


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_or_old_index_one_line_web_only_answers_untouched_files_and_rebuild_sets_aside(
        kind, pristine, tmp_path, env, ollama, web, capsys, monkeypatch):
    import shutil

    damage, which, says = DAMAGE[kind]
    monkeypatch.setattr("copilot.index.embeddings.make_embedder", lambda settings: CountingEmbedder())
    src, more = pristine[0], tmp_path / "more"
    data = Path(env["COPILOT_DATA_DIR"])
    shutil.rmtree(data)
    shutil.copytree(pristine[1], data)
    damage(data)
    more.mkdir()
    (more / "new-page.md").write_text("# New\n\n## Fresh notes\n\nSomething to index.\n")  # work to do
    original = "manifest.sqlite" if which == "manifest" else "chroma"

    def damaged() -> dict[str, str]:  # the damaged file (and its -wal, -shm) or folder, byte by byte
        return {k: v for k, v in fingerprint(data / "index").items() if k.startswith(original)}

    before = damaged()
    assert before

    # The writer: one line naming the file and the way out, exit 8, nothing written.
    run = run_cli(capsys, monkeypatch, "index", str(src), str(more))
    assert run.code == 8, run
    line = one_line_error(run.err)
    assert says in line and "`copilot index --rebuild PATH...`" in line, line
    assert str(manifest_path(data) if which == "manifest" else chroma_dir(data)) in line or \
        (which == "manifest" and str(manifest_path(data).parent) in line), line

    # Listing the sources reads only the manifest.
    listed = run_cli(capsys, monkeypatch, "sources")
    if which == "manifest":
        assert listed.code == 8 and says in one_line_error(listed.err)
    else:
        assert listed.code == 0 and str(src) in listed.out

    # Readers go on with the web and say why the local index was left out.
    found = run_cli(capsys, monkeypatch, "search", "--json", "--no-web", "kept topic notes")
    assert found.code == 0, found
    assert [w.split(":")[0] for w in json.loads(found.out)["warnings"]] == ["the local index was not used"]
    page = web.add_page("/notes", "<h1>Notes</h1><p>Kept topic notes live on the web too.</p>")
    web.set_search([{"title": "Notes", "url": page, "content": "kept topic notes"}])
    ollama.reply_with("They are on the web [1].")
    asked = run_cli(capsys, monkeypatch, "ask", "--json", "where are the kept topic notes?")
    assert asked.code == 0, asked
    answer = json.loads(asked.out)
    assert answer["answer"] == "They are on the web [1]." and answer["sources"][0]["kind"] == "web"
    assert any(w.startswith("the local index was not used: ") for w in answer["warnings"])

    assert damaged() == before  # not a byte changed, nothing deleted

    # `--rebuild`, asked for: the damaged file or folder is set aside whole, a new index is built.
    rebuilt = run_cli(capsys, monkeypatch, "index", "--rebuild", str(src), str(more))
    assert rebuilt.code == 0, rebuilt
    note = one_line_error(rebuilt.err)
    aside = Path(note.split("moved it to " if which == "manifest" else "was moved to ")[1].split(" ")[0])
    assert aside.parent == data / "index" and aside.name.startswith(original + ".old-")
    kept = {k.replace(aside.name, original, 1): v for k, v in fingerprint(data / "index").items()
            if k.startswith(aside.name)}
    assert kept == before
    clean = Settings(data_dir=str(tmp_path / "clean"))
    run_index([src, more], clean, embedder=CountingEmbedder())
    assert_converged(settings_of(env), chroma_ids(clean))


def test_damaged_manifest_in_real_processes(tmp_path, minilm_dir, pristine, env, ollama, web):
    """The same, as a user runs it: `copilot index` and `copilot ask`, no traceback anywhere."""
    import shutil

    data = Path(env["COPILOT_DATA_DIR"])
    shutil.rmtree(data)
    shutil.copytree(pristine[1], data)
    manifest_path(data).write_bytes(b"\0" * 4096 + _noise(60_000))
    before = fingerprint(data / "index")
    proc_env = {**os.environ, "COPILOT_EMBED_MODEL_DIR": str(minilm_dir)}
    indexed = copilot("index", str(pristine[0]), env=proc_env)
    assert indexed.returncode == 8
    assert "is damaged" in one_line_error(indexed.stderr)
    page = web.add_page("/notes", "<h1>Notes</h1><p>Kept topic notes live on the web too.</p>")
    web.set_search([{"title": "Notes", "url": page, "content": "kept topic notes"}])
    ollama.reply_with("They are on the web [1].")
    asked = copilot("ask", "where are the kept topic notes?", env=proc_env)
    assert asked.returncode == 0 and "Traceback" not in asked.stderr
    assert "They are on the web [1]." in asked.stdout
    assert "the local index was not used" in asked.stderr and "is damaged" in asked.stderr
    assert fingerprint(data / "index") == before
