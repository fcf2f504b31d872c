"""`copilot ask` and `copilot search` draw on the local index when it is not empty: a real index
(real MiniLM files, embedded Chroma) built by `copilot index`, then questions through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.saved_pages import run_copilot as run

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]  # minilm_dir; indexed



def test_ask_uses_the_index_beside_the_web(env, ollama, web, indexed) -> None:
    web.set_search([])  # the web has nothing: the answer comes from the index, with a warning
    ollama.reply_with("Use the union operator z = x | y [1].")
    proc = run("ask", "--json", "how do I merge two dicts in python?")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    first = out["sources"][0]
    assert first["kind"] == "local-so"
    assert first["path"].endswith("merge-dicts.html")
    assert first["url"] == "https://stackoverflow.com/questions/38987/how-do-i-merge-two-dictionaries"
    assert [(c["n"], c["valid"], c["raw"]) for c in out["citations"]] == [(1, True, "[1]")]
    assert any("local index only" in w for w in out["warnings"])
    user = next(m["content"] for m in ollama.requests[-1]["messages"] if m["role"] == "user")
    assert "z = x | y" in user and "Accepted answer (score 8000)" in user


def test_no_local_skips_the_index(env, ollama, web, indexed) -> None:
    web.set_search([])
    proc = run("ask", "--json", "--no-local", "how do I merge two dicts in python?")
    assert proc.returncode == 7  # nothing left to answer from
    assert "no search results" in proc.stderr


def test_search_lists_local_hits_with_path_and_snippet(env, web, indexed) -> None:
    web.set_search([])
    proc = run("search", "--json", "undo the last git commit")
    assert proc.returncode == 0, proc.stderr
    local = json.loads(proc.stdout)["local"]
    assert local[0]["path"].endswith("git-notes.md")
    assert "Undo the last commit" in local[0]["heading"]
    assert "git reset --soft" in local[0]["snippet"]
    assert set(local[0]) >= {"rank", "title", "path", "url", "snippet", "score"}


def test_empty_index_never_loads_chromadb(env, ollama, web) -> None:
    ollama.reply_with("ok [1].")
    web.set_search([{"title": "t", "url": web.add_page("/a", "<h1>A</h1><p>merge dicts with x | y</p>"),
                     "content": "c"}])
    code = ("import sys, io, contextlib\nimport copilot.cli as c\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = c.main(['ask', '--json', 'merge dicts'])\n"
            "assert rc == 0, rc\nassert 'chromadb' not in sys.modules, 'chromadb loaded'\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ})
    assert proc.returncode == 0, proc.stderr


def test_prepare_local_loads_the_index_the_first_question_will_use(env, indexed) -> None:
    """The TUI's warm-up opens the shared index and loads its search structures (Chroma's HNSW,
    the embedder's session), so the first question pays nothing more than later ones; the first
    search then reuses exactly that index and session."""
    from copilot import engine
    from copilot.config import load_settings

    settings = load_settings()
    engine._forget_index(settings)
    engine.prepare_local(settings)
    index = engine._OPEN_INDEXES[engine._index_key(settings)]
    assert index._store is not None and index.embedder._session is not None
    session = index.embedder._session
    hits = engine.local_hits("how do I undo the last git commit", settings, 3)
    assert hits and engine._OPEN_INDEXES[engine._index_key(settings)] is index
    assert index.embedder._session is session
    engine._forget_index(settings)


def test_prepare_local_with_a_damaged_index_leaves_the_error_to_the_question(env, indexed, tmp_path) -> None:
    from copilot import engine
    from copilot.config import load_settings
    from copilot.index.manifest import manifest_path

    settings = load_settings()
    engine._forget_index(settings)
    manifest_path(settings.data_path).write_bytes(b"not a database at all" * 100)
    engine.prepare_local(settings)  # no exception: the warm-up thread must not die
    assert engine._index_key(settings) not in engine._OPEN_INDEXES
