"""Exact vectors in the manifest, short (projected) ones in Chroma, and the int8 model copy.

Real MiniLM, real Chroma (embedded and `chroma run`), real SQLite."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from copilot.config import Settings
from copilot.errors import IndexDamaged
from copilot.index.embeddings import MINILM_ID, MiniLMEmbedder
from copilot.index.indexer import run_index
from copilot.index.local import LocalIndex
from copilot.index.manifest import Manifest, manifest_path
from copilot.index.store import CHROMA_SCHEMA, ChromaStore
from copilot.index.vectors import basis, cosines, decode, encode, projection_name, short

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]

TOPICS = ["lists", "dictionaries", "files", "threads", "sockets", "regular expressions", "dates", "json",
          "logging", "subprocesses", "decorators", "generators", "context managers", "unit tests",
          "virtual environments", "packaging", "type hints", "dataclasses", "asyncio", "sqlite"]
ASPECTS = ["how to create", "common errors with", "performance of", "copying", "sorting", "iterating over",
           "reading", "writing", "closing", "testing", "debugging", "timeouts in", "encoding of",
           "comparing", "printing", "converting", "validating", "caching", "cancelling", "locking"]


def test_int8_vectors_keep_cosines_close_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((200, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    blobs = [encode(x) for x in v]
    assert all(len(b) == 384 for b in blobs)
    back = np.array([decode(b) for b in blobs])
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    q = v[0]
    exact = v @ q
    got = cosines(q, blobs)
    assert np.abs(got - exact).max() < 0.01 and int(np.argmax(got)) == 0
    assert cosines(q, []).shape == (0,)


def test_minilm_vectors_are_projected_to_the_shipped_basis_and_others_are_not() -> None:
    b = basis(MINILM_ID)
    assert b is not None and b.shape == (384, 64) and b.dtype == np.float32
    np.testing.assert_allclose(b.T @ b, np.eye(64), atol=1e-4)  # orthonormal directions
    assert projection_name(MINILM_ID) == "minilm-pca64"
    v = np.ones((3, 384), dtype=np.float32)
    assert short(v, MINILM_ID).shape == (3, 64)
    assert basis("ollama:nomic-embed-text") is None and projection_name("ollama:nomic-embed-text") == ""
    assert short(v, "ollama:nomic-embed-text") is v


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """400 short sections in 20 Markdown files: more chunks than the candidate pool."""
    src = tmp_path / "notes"
    src.mkdir()
    for t, topic in enumerate(TOPICS):
        parts = [f"# Notes on {topic}\n"]
        for a, aspect in enumerate(ASPECTS):
            parts.append(f"\n## {aspect.capitalize()} {topic}\n\nNote {t}-{a}: {aspect} {topic} in Python "
                         f"takes some care; this section explains {aspect} {topic} with an example.\n")
        (src / f"{t:02d}-{topic.replace(' ', '-')}.md").write_text("".join(parts), encoding="utf-8")
    return src


def test_dense_search_ranks_by_exact_vectors_and_finds_what_brute_force_finds(
        corpus: Path, settings: Settings, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import copilot.index.vectors

    monkeypatch.setattr(copilot.index.vectors, "POOL", 100)  # fewer candidates than chunks, so Chroma's pick matters
    embedder = MiniLMEmbedder(model_dir=minilm_dir)
    report = run_index([corpus], settings, embedder=embedder)
    m = Manifest.open(manifest_path(settings.data_path), create=False)
    ids = [r[0] for r in m.conn.execute("SELECT id FROM chunks")]
    assert len(ids) > 2 * copilot.index.vectors.POOL, report
    stored = m.vectors(ids)
    assert set(stored) == set(ids)  # every chunk keeps its exact vector

    store = ChromaStore.open_for_read(settings)
    assert store is not None
    got = store.collection.get(ids=ids[:3], include=["embeddings"])
    assert len(got["embeddings"][0]) == 64  # Chroma holds the short vectors
    assert (store.collection.metadata or {})["projection"] == "minilm-pca64"
    store.close()

    index = LocalIndex.open(settings, embedder=embedder)
    blobs = [stored[i] for i in ids]
    overlaps = []
    for query in ("how do I cancel an asyncio task", "sorting a list of dicts", "json encoding errors",
                  "timeouts when reading from a socket", "locking with threads"):
        found, vector = index.nearest(query, 10)
        sims = [s for _, s in found]
        assert sims == sorted(sims, reverse=True)
        exact = cosines(vector, blobs)
        best = [ids[i] for i in np.argsort(-exact)[:10]]
        assert found[0][0] == best[0]
        assert abs(found[0][1] - float(exact.max())) < 1e-5  # the score is the exact cosine
        overlaps.append(len({cid for cid, _ in found} & set(best)) / 10)
    assert sum(overlaps) / len(overlaps) >= 0.95, overlaps
    index.close()
    m.close()


def test_a_chroma_collection_of_the_old_layout_asks_for_a_rebuild(tmp_path: Path, minilm_dir: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.md").write_text("# A\n\nSome notes about lists.\n", encoding="utf-8")
    run_index([src], settings, embedder=MiniLMEmbedder(model_dir=minilm_dir))
    store = ChromaStore.open_for_read(settings)
    assert store is not None
    meta = dict(store.collection.metadata or {})
    store.collection.modify(metadata={**meta, "schema": CHROMA_SCHEMA - 1, "projection": ""})
    store.close()
    with pytest.raises(IndexDamaged) as err:
        ChromaStore.open_for_read(settings)
    assert "another version of copilot" in str(err.value) and "--rebuild" in err.value.hint


def _copy_model(minilm_dir: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(minilm_dir / name, dest / name)
    return dest


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_int8_copy_goes_to_the_data_dir_when_the_model_folder_is_read_only(
        tmp_path: Path, minilm_dir: Path) -> None:
    import subprocess

    folder = _copy_model(minilm_dir, tmp_path / "ro")
    folder.chmod(0o555)
    immutable = False
    if _writable(folder):  # root ignores modes; the immutable flag stops root too
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode == 0
    try:
        assert not _writable(folder), "could not make a read-only folder here"
        e = MiniLMEmbedder(Settings(data_dir=str(tmp_path / "data"), embed_model_dir=str(folder)))
        e.prepare()
        assert e.model_file == tmp_path / "data" / "models" / "model_int8.onnx"
        assert e.embed_query("hello").shape == (384,)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_stale_int8_copy_is_made_again_and_a_broken_model_falls_back(
        tmp_path: Path, minilm_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from copilot.index.int8_model import NAME, int8_copy

    folder = _copy_model(minilm_dir, tmp_path / "m")
    first = int8_copy(folder / "model.onnx")
    assert first == folder / NAME
    made = first.stat().st_mtime_ns
    os.utime(folder / "model.onnx", ns=(made + 10**9, made + 10**9))  # the source replaced
    assert int8_copy(folder / "model.onnx") == folder / NAME
    assert (folder / NAME).stat().st_mtime_ns != made
    assert not [p for p in folder.iterdir() if p.name.startswith(".int8-")]  # no work folder left

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING, logger="copilot.index.int8_model"):
        assert int8_copy(broken / "model.onnx") is None
    assert "could not make an int8 copy" in caplog.text
    assert not (broken / NAME).exists() and not [p for p in broken.iterdir() if p.name.startswith(".int8-")]


_EXPORTER_PROBE = """
import sys
from copilot.config import Settings
from copilot.index import store
client = store.connect(Settings(data_dir=sys.argv[1]))
client.heartbeat()
print("grpc" in sys.modules)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9", insecure=True)
print(type(exporter).__module__, "grpc" in sys.modules)
"""


def test_chromadb_opens_without_grpc_and_its_exporter_still_loads_when_called(tmp_path: Path) -> None:
    """An embedded store opens without gRPC's C core (chromadb imports its OpenTelemetry exporter
    eagerly; copilot never configures one); calling the exporter still gets the real one."""
    out = subprocess.run([sys.executable, "-c", _EXPORTER_PROBE, str(tmp_path / "data")],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split("\n")[:2] == [
        "False", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter True"]
