"""`copilot index` and `copilot sources` end to end: real all-MiniLM-L6-v2 model files, real
embedded Chroma, the command run as a subprocess. Includes killing a run mid-way (SIGKILL and
SIGTERM) and checking the next run ends with exactly the chunks a clean run makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from copilot.config import Settings
from copilot.index.indexer import run_index
from copilot.index.local import LocalIndex
from copilot.index.manifest import WriterLock, index_dir
from tests.index_helpers import (
    CountingEmbedder,
    chroma_ids,
    committed_files,
    manifest_state,
    wait_for_files,
    write_pages,
)

pytest_plugins = ["tests.fixtures_models"]

REPO = Path(__file__).resolve().parent.parent
PAGES = 100  # pages of two chunks in the folder the kill test interrupts
JSON_KEYS = {"added", "updated", "removed", "unchanged", "skipped", "chunks", "seconds"}


@pytest.fixture
def cli_env(tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    values = {"COPILOT_DATA_DIR": str(tmp_path / "data"), "COPILOT_CONFIG": str(config),
              "COPILOT_EMBED_MODEL_DIR": str(minilm_dir)}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("COPILOT_CHROMA_URL", raising=False)
    monkeypatch.delenv("COPILOT_EMBED_MODEL", raising=False)
    return {**os.environ, **values}


def copilot(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "copilot", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout, check=False)


def start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "copilot", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def settings_for(data: Path) -> Settings:
    """Settings of the test's environment (model folder) on another data dir."""
    from copilot.config import load_settings

    return load_settings({"data_dir": str(data)})


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough small pages that indexing takes a few seconds with the real model."""
    folder = tmp_path_factory.mktemp("big") / "pages"
    write_pages(folder, PAGES, prefix="kill", sections=2)
    return folder


@pytest.fixture(scope="module")
def clean_run(big_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The chunk ids a clean, uninterrupted run stores for `big_folder` in a fresh data dir.

    Chunk ids depend on path, document and position only, not on the vectors, so the clean run
    may use the fast counting embedder."""
    clean = Settings(data_dir=str(tmp_path_factory.mktemp("clean") / "data"))
    report = run_index([big_folder], clean, embedder=CountingEmbedder())
    ids = chroma_ids(clean)
    assert report.added == PAGES and len(ids) == 2 * PAGES and manifest_state(clean)["ids"] == ids
    return ids


def test_json_shape_then_unchanged_rerun_skips_chroma(tmp_path, cli_env):
    src = tmp_path / "src"
    write_pages(src, 3)
    (src / "junk.bin.txt").write_bytes(b"\x00\xff" * 50)
    done = copilot("index", str(src), "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert set(obj) == JSON_KEYS
    assert (obj["added"], obj["updated"], obj["removed"], obj["unchanged"], obj["chunks"]) == (3, 0, 0, 0, 6)
    assert obj["skipped"] == [{"path": str(src / "junk.bin.txt"), "reason": "binary file"}]
    assert isinstance(obj["seconds"], float)

    # Unchanged: neither chromadb nor the model is loaded.
    probe = ("import sys; from copilot.cli import main; rc = main(['index', sys.argv[1], '--json']); "
             "print('LOADED' if {'chromadb', 'onnxruntime'} & set(sys.modules) else 'LIGHT', file=sys.stderr); "
             "sys.exit(rc)")
    again = subprocess.run([sys.executable, "-c", probe, str(src)], capture_output=True, text=True,
                           env=cli_env, cwd=REPO, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == 3 and "LIGHT" in again.stderr


def test_human_summary_and_missing_path(tmp_path, cli_env):
    src = tmp_path / "src"
    write_pages(src, 2)
    (src / "empty.md").write_text("")
    done = copilot("index", str(src), env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "2 added, 0 updated, 0 removed, 0 unchanged, 1 skipped. 4 chunks in the index." in done.stdout
    assert f"{src / 'empty.md'}: empty file" in done.stdout

    missing = copilot("index", str(tmp_path / "nope"), env=cli_env)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no such file or folder" in missing.stderr


def test_second_writer_exits_naming_the_holder_and_wait_gets_the_lock(tmp_path, cli_env):
    src = tmp_path / "src"
    write_pages(src, 1)
    lock = WriterLock(index_dir(tmp_path / "data"))
    lock.acquire()
    try:
        refused = copilot("index", str(src), env=cli_env)
        assert refused.returncode == 75
        line = refused.stderr.strip()
        assert "\n" not in line and f"pid {os.getpid()}" in line and "--wait" in line

        waiting = start("index", str(src), "--json", "--wait", "30", env=cli_env)
        time.sleep(1.5)
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        lock.release()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert json.loads(out)["added"] == 1


def test_sigterm_then_sigkill_mid_run_then_rerun_equals_clean_run(tmp_path, cli_env, big_folder, clean_run):
    data = tmp_path / "data"
    settings = settings_for(data)

    # SIGTERM: the run stops between batches, prints the summary so far, exits 143, index consistent.
    proc = start("index", str(big_folder), env=cli_env)
    wait_for_files(proc, data, 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Stopped by SIGTERM" in out and " added, " in out
    state = manifest_state(settings)
    assert state["pending"] == [] and 0 < len(state["files"]) < PAGES
    assert chroma_ids(settings) == state["ids"]
    after_term = len(state["files"])

    # SIGKILL: no chance to clean up; the next run finds the half-written batch and redoes it.
    proc = start("index", str(big_folder), "--json", env=cli_env)
    try:
        wait_for_files(proc, data, after_term + 1)
    finally:
        proc.kill()
        proc.communicate()
    assert after_term < committed_files(data) < PAGES

    again = copilot("index", str(big_folder), "--json", env=cli_env, timeout=300)
    assert again.returncode == 0, again.stderr
    obj = json.loads(again.stdout)
    assert obj["added"] + obj["unchanged"] == PAGES and obj["chunks"] == 2 * PAGES
    state = manifest_state(settings)
    assert state["pending"] == []
    assert chroma_ids(settings) == state["ids"] == clean_run


def test_reader_sees_chunks_a_writer_process_added(tmp_path, cli_env):
    src = tmp_path / "src"
    (src).mkdir()
    (src / "asyncio.md").write_text("# asyncio\n\n## Running coroutines\n\nUse `asyncio.run(main())` to run "
                                    "the top-level coroutine of a program.\n\n```python\nimport asyncio\n\n"
                                    "async def main():\n    await asyncio.sleep(1)\n\nasyncio.run(main())\n```\n")
    assert copilot("index", str(src), env=cli_env).returncode == 0
    reader = LocalIndex.open(settings_for(tmp_path / "data"))
    first = reader.dense_search("how do I run a coroutine", 3)
    assert [h.source_path for h in first] == [str(src / "asyncio.md")]
    assert "asyncio.run(main())\n```" in first[0].text  # code kept with its line breaks

    (src / "pathlib.md").write_text("# pathlib\n\n## Reading files\n\n`Path.read_text()` returns the "
                                    "decoded contents of the file as a string.\n")
    assert copilot("index", str(src), env=cli_env).returncode == 0
    hits = reader.dense_search("read a whole file into a string with pathlib", 2)
    assert hits[0].source_path == str(src / "pathlib.md")
    assert hits[0].heading == "pathlib › Reading files" and hits[0].distance < first[0].distance + 1
    reader.close()


def test_real_pages_keep_urls_scores_and_answers(tmp_path, cli_env):
    data_html = REPO / "tests" / "data" / "html"
    src = tmp_path / "saved"
    src.mkdir()
    for name in ("so_question.html", "sphinx_api.html"):
        (src / name).write_bytes((data_html / name).read_bytes())
    assert copilot("index", str(src), env=cli_env).returncode == 0
    reader = LocalIndex.open(settings_for(tmp_path / "data"))
    hits = reader.dense_search("accepted answer", 50)
    so = [h for h in hits if h.kind == "so"]
    assert so and all(h.url.startswith("http") and h.site for h in so)
    assert any(h.role == "answer" and h.score is not None for h in so)
    assert {h.kind for h in hits} >= {"so", "docs"}
    reader.close()


def test_sources_list_and_remove(tmp_path, cli_env):
    a, b = tmp_path / "a", tmp_path / "b"
    write_pages(a, 2, prefix="alpha")
    write_pages(b, 1, prefix="beta")
    assert copilot("index", str(a), str(b), env=cli_env).returncode == 0
    listed = copilot("sources", "--json", env=cli_env)
    assert json.loads(listed.stdout) == {"sources": [{"root": str(a), "files": 2, "chunks": 4},
                                                     {"root": str(b), "files": 1, "chunks": 2}]}
    text = copilot("sources", env=cli_env).stdout
    assert str(a) in text and "2 files" in text
    removed = copilot("sources", "remove", str(a), env=cli_env)
    assert removed.returncode == 0 and "2 files, 4 chunks" in removed.stdout
    assert [s["root"] for s in json.loads(copilot("sources", "--json", env=cli_env).stdout)["sources"]] == [str(b)]
    assert len(chroma_ids(settings_for(tmp_path / "data"))) == 2
    unknown = copilot("sources", "remove", str(tmp_path / "zzz"), env=cli_env)
    assert unknown.returncode == 2 and "not an indexed folder" in unknown.stderr


def test_help_and_readers_do_not_import_chromadb(tmp_path, cli_env):
    probe = ("import sys, contextlib, io\n"
             "from copilot.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
             "    main(['sources'])\n"
             "from copilot.config import load_settings\n"
             "from copilot.index.local import LocalIndex\n"
             "ix = LocalIndex.open(load_settings())\n"
             "assert ix.is_empty() and ix.dense_search('q', 3) == []\n"
             "print(sorted(m for m in ('chromadb', 'onnxruntime', 'numpy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env, cwd=REPO,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
