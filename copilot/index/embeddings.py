"""Embedders for the local index: texts in, unit-length float32 vectors out.

`MiniLMEmbedder` (the default) runs all-MiniLM-L6-v2 in this process with onnxruntime and our own
WordPiece tokenizer (`copilot.index.wordpiece`: the ids of the `tokenizers` library, for a
fraction of its memory). Chroma's own default embedding function runs the same model but pads every
input to 256 tokens; here each batch is padded only to its longest member and inputs are sorted
by token length first, so batches hold texts of similar length (results are returned in input
order). The vectors equal sentence-transformers' for the model: truncation at 256 tokens (its
`max_seq_length`), mean pooling over the attention mask, L2 normalisation.

Model files are looked for in: the folder named by `embed_model_dir`, Chroma's cache
(`~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx/`), `<data_dir>/models/all-MiniLM-L6-v2/`;
else they are fetched once into the last, from the archive Chroma itself downloads, with a
progress bar and a SHA-256 check.

The session runs an int8 copy of whichever `model.onnx` is found (`copilot.index.int8_model`:
int8 weights per output channel, int8 matrix products), made once beside it: ~42 MiB resident
instead of ~106, and faster on CPU.

One id, `onnx:all-MiniLM-L6-v2`, whichever file is used: Chroma's archive holds the fp32 export,
other sources an int8 one. The int8 copy's vectors agree with an fp32 reference at cosine 0.994
on average, 0.987 at worst, and an fp32 query finds its int8 twin first every time
(bench/embeddings.py --fp32-check), so the id names the model, not the file.

`OllamaEmbedder` (`embed_model = "ollama:<name>"`) asks an Ollama embedding model instead.

numpy, onnxruntime and the ollama client are imported only when a model is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urldefrag

from copilot.errors import ConfigError, EmbedderError, EmbedderMismatch, ModelMissing

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings
    from copilot.index.wordpiece import WordPiece

__all__ = [
    "CHROMA_ARCHIVE_SHA256",
    "MINILM_ID",
    "Embedder",
    "EmbedderError",
    "EmbedderMismatch",
    "MiniLMEmbedder",
    "OllamaEmbedder",
    "check_same",
    "chroma_cache_dir",
    "download_model",
    "find_model_dir",
    "is_minilm",
    "make_embedder",
    "shared_minilm",
]

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_ID = f"onnx:{MINILM_NAME}"
MINILM_DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model, [CLS] and [SEP] included
# SHA-256 of Chroma's onnx.tar.gz (chromadb/utils/embedding_functions/onnx_mini_lm_l6_v2.py).
CHROMA_ARCHIVE_SHA256 = "913d7300ceae3b2dbc2c50d1de4baacab4be7b9380491c27fab7418616a16ec3"
REQUIRED_FILES = ("model.onnx", "tokenizer.json")
# What Chroma's archive holds (and Chroma's cache must hold); we keep all of it.
ARCHIVE_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json",
                 "tokenizer.json", "vocab.txt")

# Texts are cut to this many characters before tokenizing: 256 tokens never need more in real
# text, and tokenizing a 1 MB file whole only to keep its first 256 tokens costs ~0.8 s.
_MAX_CHARS = 32_768
_WINDOW = 2048  # texts tokenized and length-sorted together
_FETCH_HINT = ("fetch it once with network access, or put all-MiniLM-L6-v2's model.onnx and tokenizer.json "
               "in a folder and set COPILOT_EMBED_MODEL_DIR to it")


class Embedder(Protocol):
    """What the index needs from an embedder."""

    embedder_id: str  # stored with the collection; a different one at query time is an error

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text, in order: shape (len(texts), dim)."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of a search query, shape (dim,)."""
        ...


def _strings(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of strings; use embed_query() for one")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"embed() takes strings, not {type(t).__name__}")
    return texts


def _normalize(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# --- model files ---------------------------------------------------------------------------------


def chroma_cache_dir() -> Path:
    """Where Chroma's default embedding function keeps the model (it never looks anywhere else)."""
    return Path.home() / ".cache" / "chroma" / "onnx_models" / MINILM_NAME / "onnx"


def data_model_dir(settings: Settings) -> Path:
    return settings.data_path / "models" / MINILM_NAME


def has_model(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def find_model_dir(settings: Settings) -> Path | None:
    """The first folder holding the model files, or None when they must be fetched.

    A configured folder that lacks them is an error, not a reason to download."""
    if settings.embed_model_dir:
        folder = Path(settings.embed_model_dir).expanduser()
        for candidate in (folder, folder / "onnx"):
            if has_model(candidate):
                return candidate
        raise EmbedderError(f"the embedding model folder {folder} has no model.onnx and tokenizer.json",
                            "put all-MiniLM-L6-v2's ONNX files there, or unset COPILOT_EMBED_MODEL_DIR "
                            "to fetch them")
    for candidate in (chroma_cache_dir(), data_model_dir(settings)):
        if has_model(candidate):
            return candidate
    return None


def ensure_model_dir(settings: Settings, *, progress: bool = True) -> Path:
    found = find_model_dir(settings)
    if found is not None:
        return found
    return download_model(settings.embed_model_url, data_model_dir(settings),
                          connect_timeout=settings.connect_timeout, progress=progress)


def split_checksum(url: str) -> tuple[str, str]:
    """(url, expected SHA-256). A `#sha256=<hex>` fragment names the checksum of a mirror's own
    archive; without one the archive must be Chroma's."""
    base, fragment = urldefrag(url)
    if fragment.lower().startswith("sha256="):
        return base, fragment[7:].strip().lower()
    return base, CHROMA_ARCHIVE_SHA256


def download_model(url: str, dest: Path, *, connect_timeout: float = 5.0, read_timeout: float = 60.0,
                   progress: bool = True) -> Path:
    """Fetch the model archive from `url` and unpack its files into `dest`.

    Everything happens in a temporary folder beside `dest`, renamed into place only once the
    checksum matched and the files are out: an interrupted or failed download leaves nothing."""
    url, expected = split_checksum(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_work(dest)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        archive = work / "archive"
        got = _fetch(url, archive, connect_timeout=connect_timeout, read_timeout=read_timeout,
                     progress=progress)
        if got != expected:
            raise EmbedderError(f"the embedding model archive from {url} has SHA-256 {got[:16]}…, expected "
                                f"{expected[:16]}…; nothing was kept",
                                "check embed_model_url (a mirror of another archive names its checksum "
                                "as #sha256=<hex>)")
        files = work / "files"
        _unpack(archive, files, url)
        archive.unlink()
        if dest.exists() and not has_model(dest):
            dest.rename(work / "old")  # an incomplete folder left by hand
        try:
            files.rename(dest)
        except OSError:
            if not has_model(dest):  # another process may have finished first: then use theirs
                raise
    except OSError as e:
        raise EmbedderError(f"cannot write the embedding model into {dest.parent}: {e.strerror or e}",
                            "check the data folder's permissions and free space") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _remove_stale_work(dest: Path, age: float = 3600.0) -> None:
    """Temporary folders left by a download that was killed outright."""
    now = time.time()
    for old in dest.parent.glob(f".{dest.name}.*"):
        try:
            if now - old.stat().st_mtime > age:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _fetch(url: str, path: Path, *, connect_timeout: float, read_timeout: float, progress: bool) -> str:
    import httpx

    from copilot.tls import ssl_context

    sha = hashlib.sha256()
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    try:
        with httpx.Client(timeout=timeout, verify=ssl_context(), follow_redirects=True) as client, \
                client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise EmbedderError(f"cannot fetch the embedding model from {url}: HTTP {resp.status_code}",
                                    _FETCH_HINT)
            total = int(resp.headers.get("content-length") or 0) or None
            with _progress(progress, total, url) as advance, path.open("wb") as out:
                for block in resp.iter_bytes(1 << 16):
                    out.write(block)
                    sha.update(block)
                    advance(len(block))
    except httpx.HTTPError as e:
        raise EmbedderError(f"cannot fetch the embedding model from {url} ({e.__class__.__name__})",
                            _FETCH_HINT) from None
    return sha.hexdigest()


@contextmanager
def _progress(show: bool, total: int | None, url: str) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    console.print(f"Fetching the embedding model {MINILM_NAME} once, from {url}")
    with Progress(TextColumn("[bold]model"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("model", total=total)
        yield lambda n: bar.advance(task, n)


def _unpack(archive: Path, out: Path, url: str) -> None:
    """Copy the model's files out of the tar archive (flat; nothing else, no paths from it)."""
    out.mkdir()
    found: set[str] = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or name not in ARCHIVE_FILES or name in found:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, (out / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                found.add(name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise EmbedderError(f"the embedding model archive from {url} cannot be unpacked: {e}") from None
    missing = [n for n in REQUIRED_FILES if n not in found]
    if missing:
        raise EmbedderError(f"the embedding model archive from {url} has no {' or '.join(missing)}")


# --- all-MiniLM-L6-v2 in process -----------------------------------------------------------------


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through onnxruntime: dynamic padding, length-bucketed batches.

    Nothing is loaded until the first `embed` (or `prepare`); the session is then reused and may
    be shared between threads."""

    embedder_id = MINILM_ID
    dim = MINILM_DIM
    max_tokens = MAX_TOKENS

    def __init__(self, settings: Settings | None = None, *, model_dir: str | Path | None = None,
                 threads: int | None = None, batch_tokens: int = 128, max_batch: int = 64,
                 progress: bool = True, int8: bool = True) -> None:
        """`model_dir` skips the search for files; `batch_tokens` caps rows × padded length of a
        batch (a text longer than that goes alone).

        Small batches are fastest on CPU: a batch's activations then stay in cache. On 2 cores
        (bench/embeddings.py --sweep) budgets of 128-1024 tokens ran ~28 passages/s and 190-215
        short sentences/s; 8192 (Chroma's 32 × 256) ran 19 and 100. 128 because a batch's
        activations are resident while it runs (~80 KiB a token): checking an answer's citations
        peaked 4 MiB lower than with 256, for ~13 % fewer sentences a second.

        `int8`: run the model's int8 copy (`copilot.index.int8_model`), made on first use; False
        runs `model.onnx` as it is (benchmarks compare the two)."""
        self._settings = settings
        self._model_dir = Path(model_dir).expanduser() if model_dir else None
        self.threads = threads or usable_cpus()
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.sort_by_length = True  # False only to measure what length buckets are worth
        self.progress = progress
        self.int8 = int8
        self.model_file: Path | None = None  # the ONNX file the session runs, once loaded
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._session: Any = None
        self._feeds: tuple[str, ...] = ()
        self._output = ""

    @property
    def model_dir(self) -> Path:
        """The folder the files come from (found or fetched on first use)."""
        if self._model_dir is None:
            if self._settings is None:
                from copilot.config import load_settings

                self._settings = load_settings()
            self._model_dir = ensure_model_dir(self._settings, progress=self.progress)
        return self._model_dir

    def prepare(self) -> None:
        """Find (or fetch) the model files and load them; `embed` does this by itself."""
        self._load()

    def _load(self) -> tuple[Any, Any]:
        if self._session is not None:
            return self._tokenizer, self._session
        with self._lock:
            if self._session is None:
                folder = self.model_dir
                self._tokenizer = self._load_tokenizer(folder / "tokenizer.json")
                model = folder / "model.onnx"
                if self.int8:
                    from copilot.index.int8_model import int8_copy

                    elsewhere = data_model_dir(self._settings).parent if self._settings is not None else None
                    model = int8_copy(model, elsewhere) or model
                self._session = self._load_session(model)
                self.model_file = model
        return self._tokenizer, self._session

    @staticmethod
    def _load_tokenizer(path: Path) -> WordPiece:
        from copilot.index.wordpiece import WordPiece

        # tokenizer.json files often carry padding/truncation for 128 tokens: WordPiece ignores
        # them; `embed` pads by itself and cuts at MAX_TOKENS.
        try:
            return WordPiece.from_file(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # JSON errors are ValueErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise EmbedderError(f"cannot read the tokenizer {path}: {first}",
                                "delete the folder to fetch it again, or point COPILOT_EMBED_MODEL_DIR "
                                "at good files") from None

    def _load_session(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1  # one graph, run sequentially: all cores go to each op
        # Idle worker threads sleep instead of spinning: the cores are shared with Ollama and the
        # rest of the machine, and on a busy 2-core box spinning cost 20-30 % of throughput.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No CPU memory arena: it keeps the largest activations ever seen (a batch of long passages)
        # for the life of the session, ~30 MB more resident in an app that embeds one query at a
        # time; freed buffers go back to malloc instead. Throughput is the same on 2 cores
        # (bench/results/scale_100k.md, "Where the memory goes").
        options.enable_cpu_mem_arena = False
        # TensorRT builds an engine per input shape and CoreML is slower than the CPU here:
        # with dynamic shapes both lose. CUDA, when installed, is fine.
        providers = [p for p in ort.get_available_providers()
                     if p not in ("TensorrtExecutionProvider", "CoreMLExecutionProvider")]
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated classes
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise EmbedderError(f"cannot load the embedding model {path}: {first}",
                                "delete the folder to fetch it again, or point COPILOT_EMBED_MODEL_DIR "
                                "at good files") from None
        names = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise EmbedderError(f"{path} is not a BERT-style model (inputs: {', '.join(sorted(names))})")
        self._feeds = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names)
        self._output = session.get_outputs()[0].name
        return session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        texts = _strings(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tokenizer, _ = self._load()
        for start in range(0, len(texts), _WINDOW):
            window = [t[:_MAX_CHARS] for t in texts[start:start + _WINDOW]]
            encodings = tokenizer.encode_batch(window, MAX_TOKENS)
            lengths = [len(ids) for ids in encodings]
            order = list(range(len(encodings)))
            if self.sort_by_length:
                order.sort(key=lengths.__getitem__, reverse=True)
            for batch in self._batches(order, lengths):
                vectors = self._run([encodings[i] for i in batch])
                out[[start + i for i in batch]] = vectors
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _batches(self, order: list[int], lengths: list[int]) -> Iterator[list[int]]:
        """Consecutive runs of `order` whose rows × padded (longest) length stay in budget."""
        batch: list[int] = []
        width = 0
        for i in order:
            grown = max(width, lengths[i])
            if batch and (len(batch) >= self.max_batch or (len(batch) + 1) * grown > self.batch_tokens):
                yield batch
                batch, grown = [], lengths[i]
            batch.append(i)
            width = grown
        if batch:
            yield batch

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        import numpy as np

        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        try:
            hidden = self._session.run([self._output], {k: feeds[k] for k in self._feeds})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated classes
            raise EmbedderError(f"the embedding model failed: {str(e).strip().splitlines()[0]}") from None
        if hidden.ndim == 2:  # an export that pools by itself
            return _normalize(hidden)
        weights = mask.astype(np.float32)
        summed = np.einsum("bld,bl->bd", hidden, weights)
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        return _normalize(summed / counts)


# --- Ollama --------------------------------------------------------------------------------------

# Models trained with task prefixes embed well only with them (their model cards say so).
_PREFIXES: dict[str, tuple[str, str]] = {  # name start -> (document prefix, query prefix)
    "nomic-embed-text": ("search_document: ", "search_query: "),
    "mxbai-embed-large": ("", "Represent this sentence for searching relevant passages: "),
}


class OllamaEmbedder:
    """An Ollama embedding model, asked in batches; timeouts from the settings."""

    def __init__(self, settings: Settings, model: str, *, batch_size: int = 32) -> None:
        self.settings = settings
        self.model = model
        # Ollama reads `name` as `name:latest`: one id for both, so neither looks like a change.
        self.embedder_id = f"ollama:{model.removesuffix(':latest')}"
        self.batch_size = batch_size
        base = model.rsplit("/", 1)[-1]
        self.doc_prefix, self.query_prefix = next(
            (p for start, p in _PREFIXES.items() if base.startswith(start)), ("", ""))
        self._dim: int | None = None
        self._client: Any = None

    @property
    def dim(self) -> int:
        """The model's vector size (asked of the model once when not yet known)."""
        if self._dim is None:
            self._embed(["dimension"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.doc_prefix + t for t in _strings(texts)])

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([self.query_prefix + text])[0]

    def _embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.empty((0, self._dim or 0), dtype=np.float32)
        from copilot import llm

        if self._client is None:
            self._client = llm.sync_client(self.settings)
        rows: list[Sequence[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            try:
                resp = self._client.embed(model=self.model, input=batch, truncate=True)
            except Exception as e:  # noqa: BLE001 - translated below
                raise self._translate(e, llm) from None
            if len(resp.embeddings) != len(batch):
                raise EmbedderError(f"Ollama returned {len(resp.embeddings)} vectors for {len(batch)} texts "
                                    f"from {self.model}")
            rows.extend(resp.embeddings)
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.ndim != 2 or (self._dim is not None and vectors.shape[1] != self._dim):
            raise EmbedderError(f"Ollama returned vectors of an unexpected size from {self.model}")
        self._dim = int(vectors.shape[1])
        return _normalize(vectors)

    def _translate(self, err: BaseException, llm: Any) -> BaseException:
        translated = llm._translate(err, self.settings, self.model)
        if isinstance(translated, ModelMissing):
            translated.hint = (f"run `ollama pull {self.model}`, or set COPILOT_EMBED_MODEL to another "
                               "embedding model (empty: the built-in all-MiniLM-L6-v2)")
        elif "support embeddings" in str(translated):
            translated.hint = "set COPILOT_EMBED_MODEL to an embedding model, e.g. ollama:nomic-embed-text"
        return translated


# --- choosing and checking -----------------------------------------------------------------------


def is_minilm(settings: Settings) -> bool:
    """Whether `settings.embed_model` names the built-in MiniLM (empty, or one of its names)."""
    return (settings.embed_model or "").strip().lower() in ("", "minilm", MINILM_NAME.lower(), MINILM_ID.lower())


def make_embedder(settings: Settings, *, progress: bool = True) -> Embedder:
    """The embedder `settings.embed_model` names: empty for MiniLM, or `ollama:<name>`.

    Cheap: no model is loaded and nothing is fetched until the first embed."""
    spec = (settings.embed_model or "").strip()
    if is_minilm(settings):
        return MiniLMEmbedder(settings, progress=progress)
    if spec.startswith("ollama:") and spec[len("ollama:"):].strip():
        return OllamaEmbedder(settings, spec[len("ollama:"):].strip())
    raise ConfigError(f"unknown embed_model {spec!r}",
                      f"leave it empty for the built-in {MINILM_NAME}, or use ollama:<model name>")


# Model folder -> the MiniLM in use there. Readers in one process (the open local index, the
# citation-support check, answers scored at once) share one ONNX session, ~100 MB resident each:
# two side by side took a TUI with a 100k index from ~550 to ~750 MB at its peak. Weak: the
# session goes when the last holder lets go. Sessions and tokenizers are thread-safe.
_SHARED: weakref.WeakValueDictionary[str, MiniLMEmbedder] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def shared_minilm(settings: Settings) -> MiniLMEmbedder | None:
    """The process's MiniLM for the model files already on disk; None when they would need a
    download (the caller decides whether one is wanted) or `embed_model` names another model."""
    if not is_minilm(settings):
        return None
    folder = find_model_dir(settings)
    if folder is None:
        return None
    with _SHARED_LOCK:
        embedder = _SHARED.get(str(folder))
        if embedder is None:
            embedder = MiniLMEmbedder(settings, model_dir=folder, progress=False)
            _SHARED[str(folder)] = embedder
    return embedder


def check_same(stored_id: str | None, embedder: Embedder) -> None:
    """Raise EmbedderMismatch when an index built by one embedder is used with another."""
    if stored_id and stored_id != embedder.embedder_id:
        raise EmbedderMismatch(
            f"the index was built with {stored_id} but the embedder is {embedder.embedder_id}",
            "re-index with `copilot index --rebuild PATH...` (or set embed_model back)")
