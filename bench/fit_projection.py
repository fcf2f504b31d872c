"""Fit the fixed basis Chroma's copy of MiniLM vectors is projected onto (copilot/index/vectors.py).

The basis is the top principal directions of all-MiniLM-L6-v2 vectors of developer prose that is
not the Python docs the question sets ask about: docstrings (over 200 characters) of the modules
installed in this venv, a seeded sample of 8 000. Their vectors are computed with the embedder
copilot ships, and the basis is written as float32 (dim × DIMS) to copilot/index/minilm_pca64.npy.

    COPILOT_EMBED_MODEL_DIR=... .venv/bin/python bench/fit_projection.py

~3 min on 2 cores. Prints the share of variance kept.
"""

from __future__ import annotations

import ast
import random
import sys
import sysconfig
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIMS = 64
SAMPLE = 8000
OUT = ROOT / "copilot" / "index" / "minilm_pca64.npy"


def docstrings(limit: int) -> list[str]:
    rng = random.Random(0)
    files = sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py"))
    rng.shuffle(files)
    texts: list[str] = []
    for f in files:
        if "tests" in f.parts or f.name.startswith("test_"):
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    texts.append(f"{getattr(node, 'name', f.stem)}\n{doc[:1200]}")
        if len(texts) > limit * 3 // 2:
            break
    rng.shuffle(texts)
    return texts[:limit]


def main() -> None:
    from copilot.config import load_settings
    from copilot.index.embeddings import MiniLMEmbedder

    texts = docstrings(SAMPLE)
    vectors = MiniLMEmbedder(load_settings()).embed(texts)
    centred = vectors - vectors.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred.T))
    order = np.argsort(eigenvalues)[::-1]
    basis = eigenvectors[:, order[:DIMS]].astype(np.float32)
    np.save(OUT, basis)
    kept = eigenvalues[order[:DIMS]].sum() / eigenvalues.sum()
    print(f"{len(texts)} docstrings, basis {basis.shape} -> {OUT.relative_to(ROOT)}; variance kept {kept:.3f}")


if __name__ == "__main__":
    main()
