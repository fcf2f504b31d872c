"""Chunk vectors as the index keeps them: exact ones in the manifest, short ones in Chroma.

Chroma's HNSW index (hnswlib) holds every vector it serves as float32 in memory: 100k chunks of
384 dimensions were ~200 MiB resident in any process that queried them. So each vector is kept
twice, in two forms:

- **exact**, in the manifest's `chunks.vector`: int8, 384 bytes (unit vector × 127, rounded),
  read only for the candidates of a query; its cosines are within ~0.01 of float32's;
- **short**, in Chroma: the vector projected onto a fixed basis of 64 directions, the top
  principal directions of MiniLM vectors of 8 000 library docstrings (developer prose that is not
  the Python docs the question sets ask about; `bench/fit_projection.py` made
  `minilm_pca64.npy`). Loading the HNSW index of 100k chunks then takes ~74 MiB instead of ~202.

A dense query asks Chroma for the nearest `POOL` chunks by the short vectors, then ranks them by
exact cosine (`LocalIndex.nearest`). On the three Python-docs question sets (22k chunks) dense
hit@1/5/10 and MRR equal those of an exact search over all the full vectors; with 200 candidates
two sets lost one question each (bench/results/scale_100k.md). ~9 ms at 100k chunks. Embedders with
no basis here (Ollama models) keep full vectors in Chroma; the exact ranking is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

POOL = 400  # candidates asked of Chroma before the exact ranking
_SCALE = 127.0

# embedder id -> (name recorded with the Chroma collection, basis file beside this module)
_BASES = {"onnx:all-MiniLM-L6-v2": ("minilm-pca64", "minilm_pca64.npy")}


def projection_name(embedder_id: str) -> str:
    """What the collection records about its vectors: a basis name, or "" for full vectors."""
    return _BASES[embedder_id][0] if embedder_id in _BASES else ""


@lru_cache(maxsize=4)
def basis(embedder_id: str) -> np.ndarray | None:
    """(dim, k) float32, or None when this embedder's vectors go to Chroma whole."""
    if embedder_id not in _BASES:
        return None
    return np.load(Path(__file__).with_name(_BASES[embedder_id][1]))


def short(vectors: np.ndarray, embedder_id: str) -> np.ndarray:
    """What Chroma stores and is queried with (it normalizes them in cosine space)."""
    b = basis(embedder_id)
    return vectors if b is None else np.asarray(vectors, dtype=np.float32) @ b


def encode(vector: np.ndarray) -> bytes:
    """A unit vector as int8 bytes for the manifest."""
    return np.clip(np.rint(np.asarray(vector, dtype=np.float32) * _SCALE), -127, 127).astype(np.int8).tobytes()


def decode(blob: bytes) -> np.ndarray:
    """The unit float32 vector `encode` kept."""
    v = np.frombuffer(blob, dtype=np.int8).astype(np.float32)
    return v / (np.linalg.norm(v) or 1.0)


def cosines(query: np.ndarray, blobs: Sequence[bytes]) -> np.ndarray:
    """Cosine of the (unit) query with each stored vector, in order."""
    if not blobs:
        return np.zeros(0, dtype=np.float32)
    m = np.frombuffer(b"".join(blobs), dtype=np.int8).reshape(len(blobs), -1).astype(np.float32)
    norms = np.maximum(np.linalg.norm(m, axis=1), 1e-12)
    q = np.asarray(query, dtype=np.float32)
    return (m @ (q / (np.linalg.norm(q) or 1.0))) / norms
