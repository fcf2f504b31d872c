"""A BERT WordPiece tokenizer in plain Python: the ids HF `tokenizers` gives, without `tokenizers`.

all-MiniLM-L6-v2's tokenizer.json (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP])
is all `MiniLMEmbedder` needs, and the `tokenizers` library is heavy for it: resident memory in a
fresh process, after gc and malloc_trim, +5.4 MiB to import it, +9.3 for `Tokenizer.from_file`,
+9.8 more once it has encoded 2 000 chunks (24.5 in all). This module: +1.1 to import (json, re,
unicodedata, pathlib), +3.8 for the vocab dict (30 522 entries), +1.5 for its caches (6.4 in all;
the caches are bounded, ~3 MiB more at worst). It is also ~3x faster on Python docs text (0.23 s
for 2 000 chunks of 1 200 characters, `tokenizers` 0.70 s), and it stops at the token limit
instead of tokenizing a long text to the end.

tests/test_wordpiece.py checks that the ids are exactly those of `tokenizers` on the same
tokenizer.json: chosen cases, every code point alone and inside a word, random Unicode strings,
real documentation text, and the vectors that come out of the model.

What `tokenizers` does, step by step, and so what this does:
1. Added special tokens ([CLS], [MASK], ...; `normalized: false`) are split out of the raw text
   first, leftmost-longest: a literal "[MASK]" in a text becomes that token's id.
2. BertNormalizer, on the rest: drop NUL, U+FFFD and control characters (categories Cc Cf Co,
   not tab/CR/LF); map whitespace (Rust's `char::is_whitespace`, plus tab/CR/LF) to a space; put
   spaces around CJK ideographs; strip accents (NFD, then drop category Mn); lowercase each
   character on its own (Rust's `char::to_lowercase`: no final-sigma rule).
3. BertPreTokenizer: split at whitespace, and make each punctuation character (ASCII
   punctuation, or Unicode category P*) a word of its own.
4. WordPiece: per word, the whole word if the vocab has it, else greedy longest-match-first
   pieces, "##" before all but the first; a word over `max_input_chars_per_word` characters, or
   with a part no piece matches, is one [UNK].
5. [CLS] ids [SEP], cut to `max_tokens` ids in all (the last ones go).

The character categories `tokenizers` uses (crate `unicode_categories`) predate Unicode 9.0, its
NFD tables are a little newer and its lowercasing is Rust's (newest), while Python's
`unicodedata` has one version for all (Unicode 14.0 in Python 3.11). The `_RUST_*` tables below
list the code points where the two disagree, so that the ids match; a newer Python's new
characters may need entries (the every-code-point test says which). Left as they are:
characters unassigned in Python's Unicode that Rust lowercases (U+1C89, U+A7CB, U+10D50-U+10D65,
U+16EA0-U+16EB8, ...): `tokenizers` lowercases them, this does not, and as neither form is in the
vocab the ids agree. Lone surrogates, which `tokenizers` refuses (TypeError), are dropped here.

Refuses (ValueError) a tokenizer.json whose model, normalizer, pre-tokenizer, post-processor or
added tokens are anything else, so another model never gets quietly wrong ids.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["WordPiece"]

# Rust's char::is_whitespace (the White_Space property); tab, LF and CR count as whitespace, not
# control characters. (Python's str.isspace also takes U+001C-U+001F, which Rust does not.)
_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# The ranges `tokenizers` (like Google's BERT) treats as CJK ideographs.
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _ranges(*pairs: tuple[int, int]) -> frozenset[str]:
    return frozenset(chr(c) for a, b in pairs for c in range(a, b + 1))


# Where Unicode 14.0 (Python 3.11's unicodedata) and the tables `tokenizers` uses disagree,
# found by running every code point through both (tests/test_wordpiece.py does it again):
# category Cf in Python, not a control character in `tokenizers` (kept, not dropped);
_RUST_NOT_CONTROL = _ranges((0x890, 0x891), (0x8E2, 0x8E2), (0x110CD, 0x110CD), (0x13430, 0x13438))
# category Mn in Python, not a nonspacing mark in `tokenizers` (kept when stripping accents);
_RUST_NOT_MN = _ranges(
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8E1), (0x9FE, 0x9FE), (0xAFA, 0xAFF), (0xB55, 0xB55),
    (0xC04, 0xC04), (0xC3C, 0xC3C), (0xD00, 0xD00), (0xD3B, 0xD3C), (0xD81, 0xD81), (0xEBA, 0xEBA),
    (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFB), (0xA82C, 0xA82C),
    (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27), (0x10EAB, 0x10EAC),
    (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070), (0x11073, 0x11074), (0x110C2, 0x110C2),
    (0x111C9, 0x111C9), (0x111CF, 0x111CF), (0x1123E, 0x1123E), (0x1133B, 0x1133B), (0x11438, 0x1143F),
    (0x11442, 0x11444), (0x11446, 0x11446), (0x1145E, 0x1145E), (0x1182F, 0x11837), (0x11839, 0x1183A),
    (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11943), (0x119D4, 0x119D7), (0x119DA, 0x119DB),
    (0x119E0, 0x119E0), (0x11A01, 0x11A0A), (0x11A33, 0x11A38), (0x11A3B, 0x11A3E), (0x11A47, 0x11A47),
    (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96), (0x11A98, 0x11A99), (0x11C30, 0x11C36),
    (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F), (0x11C92, 0x11CA7), (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3),
    (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45),
    (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95), (0x11D97, 0x11D97), (0x11EF3, 0x11EF4),
    (0x16F4F, 0x16F4F), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1E000, 0x1E006),
    (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E130, 0x1E136),
    (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A))
# category Mc in Python, a nonspacing mark in `tokenizers` (dropped when stripping accents);
_RUST_MN = _ranges((0x1734, 0x1734))
# category P* in Python, not punctuation in `tokenizers` (stays inside its word);
_RUST_NOT_PUNCT = _ranges(
    (0x61D, 0x61D), (0x9FD, 0x9FD), (0xA76, 0xA76), (0xC77, 0xC77), (0xC84, 0xC84), (0x1B7D, 0x1B7E),
    (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59), (0x10F86, 0x10F89),
    (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D), (0x11660, 0x1166C), (0x116B9, 0x116B9),
    (0x1183B, 0x1183B), (0x11944, 0x11946), (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C),
    (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF),
    (0x12FF1, 0x12FF2), (0x16E97, 0x16E9A), (0x16FE2, 0x16FE2), (0x1E95E, 0x1E95F))
# not P* in Python (So, Mn), punctuation in `tokenizers`;
_RUST_PUNCT = _ranges((0x166D, 0x166D), (0x111C9, 0x111C9))
# decomposed by Python's NFD, not by the tables `tokenizers` uses (no id of this vocab depends on it).
_RUST_NO_NFD = "\U00011938"

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_CACHE_WORDS = 4096  # WordPiece results kept, for words of at most max_word_chars (~3 MiB at worst)
_CACHE_CHARS = 4096  # normalized forms of non-ASCII characters kept, per pass (~0.5 MiB at most)


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    cat = unicodedata.category(ch)
    # Cs: a lone surrogate, which `tokenizers` cannot even be given (it raises); dropped here.
    return (cat in ("Cc", "Cf", "Co", "Cs")) and ch not in _RUST_NOT_CONTROL


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return any(a <= o <= b for a, b in _CJK)


def _is_mn(ch: str) -> bool:
    return (unicodedata.category(ch) == "Mn" and ch not in _RUST_NOT_MN) or ch in _RUST_MN


def _is_punct(ch: str) -> bool:
    if ch in _ASCII_PUNCT or ch in _RUST_PUNCT:
        return True
    return unicodedata.category(ch)[0] == "P" and ch not in _RUST_NOT_PUNCT


class _CharMap(dict[int, str]):
    """A `str.translate` table filled on demand by `fn(char)`, keeping at most `cap` entries."""

    def __init__(self, fn: Any, cap: int) -> None:
        super().__init__()
        self.fn = fn
        self.cap = cap

    def __missing__(self, code: int) -> str:
        out: str = self.fn(chr(code))
        if len(self) < self.cap:
            self[code] = out
        return out


class WordPiece:
    """all-MiniLM-L6-v2's tokenizer (any BERT WordPiece tokenizer.json of the same shape)."""

    def __init__(self, vocab: dict[str, int], *, unk_token: str = "[UNK]", prefix: str = "##",
                 max_word_chars: int = 100, cls_token: str = "[CLS]", sep_token: str = "[SEP]",
                 special_tokens: Iterable[str] = (), clean_text: bool = True,
                 chinese_chars: bool = True, strip_accents: bool = True, lowercase: bool = True) -> None:
        self.vocab = vocab
        for token in (unk_token, cls_token, sep_token, *special_tokens):
            if token not in vocab:
                raise ValueError(f"the vocab has no {token!r}")
        self.unk_id = vocab[unk_token]
        self.cls_id = vocab[cls_token]
        self.sep_id = vocab[sep_token]
        self.prefix = prefix
        self.max_word_chars = max_word_chars
        self.clean_text = clean_text
        self.chinese_chars = chinese_chars
        self.strip_accents = strip_accents
        self.lowercase = lowercase
        specials = sorted(set(special_tokens), key=len, reverse=True)  # longest first: leftmost-longest
        self._specials = {t: vocab[t] for t in specials}
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._bracketed = all(t.startswith("[") for t in specials)  # then no "[": no special token
        # Text -> words in two per-character passes around NFD: before it, cleaning and CJK;
        # after it, accents, case and spaces around punctuation (so that splitting at spaces
        # is the whole pre-tokenizer).
        self._before = _CharMap(self._char_before, _CACHE_CHARS)
        self._after = _CharMap(self._char_after, _CACHE_CHARS)
        self._ascii = {c: "".join(map(self._char_after, self._char_before(chr(c)))) for c in range(128)}
        longest = max((len(t) for t in vocab), default=1)
        self._word_ids = lru_cache(maxsize=_CACHE_WORDS)(self._make_word_fn(longest))

    # --- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> WordPiece:
        """Read a tokenizer.json; OSError or ValueError (JSON errors included) when it cannot be used."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> WordPiece:
        if not isinstance(data, dict):
            raise ValueError("not a tokenizer.json (no object at the top)")
        model = data.get("model") or {}
        if model.get("type") != "WordPiece":
            raise ValueError(f"the model is {model.get('type')!r}, only WordPiece is implemented")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError("the WordPiece model has no vocab")
        norm = data.get("normalizer") or {}
        if norm.get("type") != "BertNormalizer":
            raise ValueError(f"the normalizer is {norm.get('type')!r}, only BertNormalizer is implemented")
        pre = data.get("pre_tokenizer") or {}
        if pre.get("type") != "BertPreTokenizer":
            raise ValueError(f"the pre-tokenizer is {pre.get('type')!r}, only BertPreTokenizer is implemented")
        cls_token, sep_token = _cls_sep(data.get("post_processor"))
        specials = []
        for added in data.get("added_tokens") or []:
            if not added.get("special") or added.get("normalized") or added.get("lstrip") \
                    or added.get("rstrip") or added.get("single_word"):
                raise ValueError(f"the added token {added.get('content')!r} is not a plain special token")
            if vocab.get(added["content"]) != added.get("id"):
                raise ValueError(f"the added token {added['content']!r} has an id the vocab does not give it")
            specials.append(added["content"])
        lowercase = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        return cls({str(k): int(v) for k, v in vocab.items()},
                   unk_token=model.get("unk_token", "[UNK]"),
                   prefix=model.get("continuing_subword_prefix", "##"),
                   max_word_chars=int(model.get("max_input_chars_per_word", 100)),
                   cls_token=cls_token, sep_token=sep_token, special_tokens=specials,
                   clean_text=bool(norm.get("clean_text", True)),
                   chinese_chars=bool(norm.get("handle_chinese_chars", True)),
                   strip_accents=lowercase if strip is None else bool(strip), lowercase=lowercase)

    # --- encoding ---------------------------------------------------------------------------------

    def encode(self, text: str, max_tokens: int | None = None) -> list[int]:
        """[CLS] ids [SEP], at most `max_tokens` ids in all (the end of a longer text is cut)."""
        if max_tokens is not None and max_tokens < 2:
            raise ValueError("max_tokens must leave room for [CLS] and [SEP]")
        limit = 1 + (max_tokens - 2 if max_tokens is not None else sys.maxsize)
        ids = [self.cls_id]
        word_ids, max_chars, unk = self._word_ids, self.max_word_chars, self.unk_id
        for part, special in self._parts(text):
            if special is not None:
                ids.append(special)
            else:
                for word in self._words(part):
                    if len(word) > max_chars:  # [UNK], and never a long key in the cache
                        ids.append(unk)
                    else:
                        ids.extend(word_ids(word))
                    if len(ids) >= limit:
                        break
            if len(ids) >= limit:
                del ids[limit:]
                break
        ids.append(self.sep_id)
        return ids

    def encode_batch(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
        return [self.encode(t, max_tokens) for t in texts]

    def tokens(self, text: str, max_tokens: int | None = None) -> list[str]:
        """The tokens as strings (for reading; `encode` is what the model gets)."""
        names = {i: t for t, i in self.vocab.items()}
        return [names[i] for i in self.encode(text, max_tokens)]

    def _parts(self, text: str) -> Iterator[tuple[str, int | None]]:
        """The text between special tokens, and the special tokens' ids, in order."""
        if self._special_re is None or (self._bracketed and "[" not in text):
            yield text, None
            return
        pos = 0
        for m in self._special_re.finditer(text):
            if m.start() > pos:
                yield text[pos:m.start()], None
            yield "", self._specials[m.group()]
            pos = m.end()
        if pos < len(text):
            yield text[pos:], None

    def _words(self, text: str) -> list[str]:
        """Normalized and pre-tokenized."""
        if text.isascii():
            text = text.translate(self._ascii)
        else:
            text = text.translate(self._before)
            if self.strip_accents:
                if _RUST_NO_NFD in text:
                    text = _RUST_NO_NFD.join(unicodedata.normalize("NFD", p) for p in text.split(_RUST_NO_NFD))
                else:
                    text = unicodedata.normalize("NFD", text)
            text = text.translate(self._after)
        if self.clean_text:
            # Every whitespace character is a space now (or was a control character, and went),
            # so str.split's wider idea of whitespace makes no difference.
            return text.split()
        return [w for w in text.split(" ") if w]

    def _char_before(self, ch: str) -> str:
        if self.clean_text:
            if ch == "\0" or ch == "\ufffd" or _is_control(ch):
                return ""
            if ch in _WHITESPACE:
                return " "
        if self.chinese_chars and _is_cjk(ch):
            return f" {ch} "
        return ch

    def _char_after(self, ch: str) -> str:
        if ch in _WHITESPACE:  # the pre-tokenizer splits there (only " " is left after cleaning)
            return " "
        if self.strip_accents and _is_mn(ch):
            return ""
        out = ch.lower() if self.lowercase else ch  # one character at a time, as Rust does
        return "".join(f" {c} " if _is_punct(c) else c for c in out)

    def _make_word_fn(self, longest: int) -> Any:
        vocab, prefix, unk, max_chars = self.vocab, self.prefix, self.unk_id, self.max_word_chars
        plen = len(prefix)

        def word_ids(word: str) -> tuple[int, ...]:
            n = len(word)
            if n > max_chars:
                return (unk,)
            whole = vocab.get(word)
            if whole is not None:
                return (whole,)
            ids = []
            start = 0
            while start < n:
                end = min(n, start + longest - (plen if start else 0))
                while end > start:
                    piece = vocab.get(prefix + word[start:end] if start else word[start:end])
                    if piece is not None:
                        ids.append(piece)
                        break
                    end -= 1
                else:
                    return (unk,)
                start = end
            return tuple(ids)

        return word_ids


def _cls_sep(post: Any) -> tuple[str, str]:
    """The tokens around a single sequence: TemplateProcessing "[CLS] $A [SEP]" or BertProcessing."""
    post = post or {}
    kind = post.get("type")
    if kind == "BertProcessing":
        return post["cls"][0], post["sep"][0]
    if kind == "TemplateProcessing":
        single = post.get("single") or []
        if len(single) == 3 and "SpecialToken" in single[0] and single[1].get("Sequence", {}).get("id") == "A" \
                and "SpecialToken" in single[2]:
            first, last = single[0]["SpecialToken"]["id"], single[2]["SpecialToken"]["id"]
            specials = post.get("special_tokens") or {}
            if all(specials.get(t, {}).get("tokens") == [t] for t in (first, last)):
                return first, last
    raise ValueError(f"the post-processor ({kind!r}) is not [CLS] $A [SEP]")
