"""Does the cited passage say what the sentence claims? A score in [0, 1] for each citation.

For each citation the claim is the clause it closes: the text from the previous citation in the
same sentence (or the sentence's start) up to the marker; when that clause is too short to judge,
the whole sentence. Sentences are split outside fenced code; a code block right before the
sentence, or right after a sentence that ends with ":", counts as part of the claim. A marker
that opens a sentence ("… loop. [1]") belongs to the sentence before it.

The score combines:

- lexical coverage: the weighted share of the claim's content tokens found in the passage, with
  identifiers (`lru_cache`, `asyncio.run`, `maxsize=None`, `True`) and numbers weighted high and
  common words low; a number or identifier the passage lacks caps the score (a swapped number or
  a neighbouring function's name is the usual way a citation goes wrong);
- the longest run of the claim's tokens found in the same order in the passage;
- with an embedder: the best cosine between the claim and the passage's sentences;
- and a comparison with the other sources: a claim that another source supports far better is
  probably cited to the wrong one.

`supported` is `support >= THRESHOLD` (tuned on the first half of bench/data/citation-support.jsonl,
see bench/results/citation_support.md).

An answer that cites nothing gets `match_sentences`: the same score, turned around, finds for each
of its sentences the source that supports it clearly best (`MATCH_MARGIN` over the next one). The
result is shown as copilot's match, never as the model's citation.

No model is loaded here: the caller passes an embedder or not; `embedder_available` says whether
one can be made without a download.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from copilot.events import Citation, Match, Source

if TYPE_CHECKING:
    from copilot.config import Settings

T = TypeVar("T")

THRESHOLD = 0.65  # lexical only: the lowest that met both goals on the tune split
THRESHOLD_EMBED = 0.7  # with an embedder: chosen the same way
MIN_CLAUSE_TOKENS = 3  # a clause with fewer content tokens is judged with its whole sentence
MATCH_MARGIN = 0.1  # a sentence is matched to a source only when no other comes this close

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]*_]*\s+(?=[\[(*_`\"']?[A-Z0-9`\[(*])"  # after . ! ? before a capital
                       r"|\n[ \t]*\n|\n(?=[ \t]*(?:[-*+•]|\d+[.)])\s)")  # a blank line, a list item
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.\-][A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?|\d+(?:\.\d+)*")
_WORDS = re.compile(r"[A-Za-z0-9_]+")
_STOP = frozenset(re.findall(r"\S+",
    "a an the and or but if of to in on at by for from with without into onto about as is are was were be "
    "been being do does did done doing i me my we our you your it its this that these those there here "
    "what which who whom whose when where why how can could should would will shall may might must not no "
    "yes so than then too very just also any some all each get gets got use uses using used way ways want "
    "need needs make makes like one they them their he she his her has have had having only such via "
    "instead rather more most less other another same while until both either neither per"))
# Words every Python answer uses: they say little about which passage supports a claim.
_COMMON = frozenset(re.findall(r"\S+",
    "function functions method methods call calls called return returns returned value values argument "
    "arguments parameter parameters object objects class classes python default defaults set sets new "
    "list type types string strings number numbers code example module modules run runs true false none "
    "first second time times error errors raise raises work works result results give gives given "
    "take takes name names keyword keywords option options data file files line lines"))
# Everyday English: it carries the sentence, not the fact (a paraphrase changes these first).
_GENERAL = frozenset(re.findall(r"\S+",
    "already inside outside start starts started stop stops new old able allow allows let lets keep keeps "
    "give find show tell try turn put see look come go know think say says mean means own still even again "
    "once twice always never often usually because since though although whether every many much few several "
    "directly simply instead refuse refuses cannot can't won't doesn't don't isn't thing things something "
    "anything nothing everything case cases part parts place point fact kind sure well good better best "
    "right wrong easy hard big small large long short high low next last whole rest"))
_CODE_WORDS = frozenset({"true", "false", "none"})


def _stem(word: str) -> str:
    if len(word) <= 4 or not word.isalpha():
        return word
    for suffix in ("ies", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _terms(text: str) -> set[str]:
    """Everything a passage offers to match: each token whole (lowercase, with and without a
    trailing "()"), its dotted segments, and its word parts, stemmed."""
    out: set[str] = set()
    for raw in _TOKEN.findall(text):
        low = raw.lower().removesuffix("()")
        out.add(low)
        if low[0].isdigit():
            continue  # a version 3.11 does not contain the number 11
        for seg in re.split(r"[.\-]", low):
            if seg:
                out.add(seg)
        for w in _WORDS.findall(low):
            out.add(_stem(w))
            out.add(w)
    return out


def _seq(text: str) -> list[str]:
    return [_stem(w) for w in _WORDS.findall(text.lower())]


@dataclass
class _ClaimToken:
    raw: str
    weight: float
    strict: bool  # a number or identifier: its absence from the passage is telling


def _claim_tokens(claim: str) -> list[_ClaimToken]:
    out: list[_ClaimToken] = []
    seen: set[str] = set()
    fenced = [m.group() for m in _FENCE.finditer(claim)]
    prose = _FENCE.sub(" ", claim)
    for block in fenced:  # code shown with the claim: evidence when found, no verdict when not
        for raw in _TOKEN.findall(block):
            low = raw.lower().removesuffix("()")
            if low not in seen and low not in _STOP and len(low) > 2 and low not in _COMMON:
                seen.add(low)
                out.append(_ClaimToken(low, 0.5, False))
    claim = prose
    code_spans = {m.group(1) for m in re.finditer(r"`([^`\n]+)`", claim)}
    code_words = {t for span in code_spans for t in _TOKEN.findall(span)}
    for raw in _TOKEN.findall(claim):
        low = raw.lower().removesuffix("()")
        if low in seen or low in _STOP:
            continue
        seen.add(low)
        is_num = low[0].isdigit()
        is_ident = (not is_num and (any(c in raw for c in "_.()") or raw in code_words
                                    or (raw[1:] != raw[1:].lower() and not raw.isupper())
                                    or low in _CODE_WORDS))
        if is_num:
            out.append(_ClaimToken(low, 2.5, True))
        elif is_ident:
            out.append(_ClaimToken(low, 3.0, True))
        elif low in _COMMON or low in _GENERAL or len(low) <= 2:
            out.append(_ClaimToken(low, 0.4, False))
        else:
            out.append(_ClaimToken(low, 1.0 if len(low) < 7 else 1.4, False))
    return out


def _found(tok: _ClaimToken, terms: set[str]) -> float:
    low = tok.raw
    if low in terms:
        return 1.0
    if not tok.strict:
        return 1.0 if _stem(low) in terms else 0.0
    if low[0].isdigit():
        return 0.0
    # an identifier: a dotted name whose last segment the passage names counts half
    # (`functools.lru_cache` vs `lru_cache`), a bare word-part match counts little.
    segs = [s for s in re.split(r"[.\-]", low) if s]
    if len(segs) > 1 and segs[-1] in terms:
        return 0.6
    parts = _WORDS.findall(low)
    if parts and all(_stem(p) in terms or p in terms for p in parts) and len(parts) > 1:
        return 0.5
    return 0.0


def _longest_run(claim: list[str], passage: list[str]) -> int:
    """Longest run of claim tokens that appears contiguously in the passage (stop words count)."""
    if not claim or not passage:
        return 0
    pos: dict[str, list[int]] = {}
    for i, w in enumerate(passage):
        pos.setdefault(w, []).append(i)
    best = 0
    prev: dict[int, int] = {}
    for w in claim:
        cur: dict[int, int] = {}
        for j in pos.get(w, ()):
            cur[j] = prev.get(j - 1, 0) + 1
        if cur:
            best = max(best, max(cur.values()))
        prev = cur
    return best


def lexical_support(claim: str, passage: str) -> float:
    """Lexical evidence that `passage` supports `claim`, in [0, 1]."""
    toks = _claim_tokens(claim)
    if not toks:
        return 0.0
    terms = _terms(passage)
    total = sum(t.weight for t in toks)
    found = [(_found(t, terms), t) for t in toks]
    coverage = sum(f * t.weight for f, t in found) / total
    run = _longest_run(_seq(claim), _seq(passage))
    run_norm = min(1.0, max(0, run - 1) / 5)
    score = max(coverage, 0.75 * coverage + 0.25 * run_norm)  # a shared phrase helps, a paraphrase costs nothing
    if _default_conflict(claim, passage) or _antonym_conflict(claim, passage):
        score = min(score, 0.3)
    missing_strict = [t for f, t in found if t.strict and f == 0.0]
    if any(t.raw[0].isdigit() for t in missing_strict):
        score = min(score, 0.35)
    elif missing_strict:
        strict_total = sum(t.weight for t in toks if t.strict)
        strict_miss = sum(t.weight for t in missing_strict)
        score *= 1.0 - 0.5 * strict_miss / strict_total
    return max(0.0, min(1.0, score))


_CLAIM_DEFAULT = re.compile(
    r"`?\*?(\w+)\*?`?(?:\s+parameter|\s+argument|\s+option)?\s+(?:defaults\s+to|is\s+`?\w+`?\s+by\s+default|"
    r"has\s+a\s+default\s+of|default\s+is)\s+`?([\w.'\"-]+)`?", re.I)
_CLAIM_DEFAULT2 = re.compile(r"defaults?\s+(?:to\s+)?`(\w+)=([\w.'\"-]+)`", re.I)
_SIG_DEFAULT = re.compile(r"\b(\w+)=([\w.'\"-]+?)(?=[,)\s`]|$)")
_PROSE_DEFAULT = re.compile(r"[Ii]f \*?(\w+)\*? is `?(\w+)`? \(the default\)")


def _defaults(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in _SIG_DEFAULT.finditer(text):
        out.setdefault(m.group(1).lower(), set()).add(m.group(2).lower().strip("'\""))
    for m in _PROSE_DEFAULT.finditer(text):
        out.setdefault(m.group(1).lower(), set()).add(m.group(2).lower())
    return out


def _default_conflict(claim: str, passage: str) -> bool:
    """The claim gives a parameter a default the passage contradicts (`exist_ok` defaults to True,
    where the signature reads `exist_ok=False`)."""
    said = [(m.group(1).lower(), m.group(2).lower().strip("'\".")) for m in _CLAIM_DEFAULT.finditer(claim)]
    said += [(m.group(1).lower(), m.group(2).lower().strip("'\".")) for m in _CLAIM_DEFAULT2.finditer(claim)]
    if not said:
        return False
    known = _defaults(passage)
    return any(name in known and value not in known[name] for name, value in said)


_ANTONYMS = [("always", "never"), ("includes", "excludes"), ("inclusive", "exclusive"),
             ("seconds", "milliseconds"), ("binary", "text"), ("enabled", "disabled"), ("ignored", "raised"),
             ("before", "after"), ("bytes", "str"), ("mutable", "immutable"), ("second", "millisecond"),
             ("synchronous", "asynchronous"), ("blocking", "non-blocking"), ("ascending", "descending"),
             ("sorted", "unsorted"), ("lower", "upper"), ("minimum", "maximum"), ("smallest", "largest")]


def _antonym_conflict(claim: str, passage: str) -> bool:
    """The claim uses a word whose opposite the passage uses, in the passage's sentence closest to
    the claim, and never the word itself there ("never searched" against "always prepended")."""
    cw = {_stem(w) for w in re.findall(r"[\w-]+", claim.lower())}
    table = [(_stem(a), _stem(b)) for a, b in _ANTONYMS]
    pairs = [(a, b) for a, b in table if a in cw and b not in cw] + \
            [(b, a) for a, b in table if b in cw and a not in cw]
    if not pairs:
        return False
    ctoks = {_stem(w) for w in _WORDS.findall(claim.lower()) if w not in _STOP}
    best, best_overlap = "", 0
    for sent in _passage_sentences(passage):
        overlap = len(ctoks & {_stem(w) for w in _WORDS.findall(sent.lower())})
        if overlap > best_overlap:
            best, best_overlap = sent, overlap
    words = {_stem(w) for w in re.findall(r"[\w-]+", best.lower())}
    return any(opp in words and word not in words for word, opp in pairs)


# --- claims ---------------------------------------------------------------------------------


def _code_blocks(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _FENCE.finditer(text)]


def _sentences(text: str, code: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentence spans of the prose outside code blocks."""
    out: list[tuple[int, int]] = []
    prose: list[tuple[int, int]] = []
    pos = 0
    for s, e in code:
        prose.append((pos, s))
        pos = e
    prose.append((pos, len(text)))
    for ps, pe in prose:
        start = ps
        for m in _SENT_END.finditer(text, ps, pe):
            if text[start:m.start()].strip():
                out.append((start, m.start()))
            start = m.end()
        if text[start:pe].strip():
            out.append((start, pe))
    return out


_MARKER_LEAD = re.compile(r"\s*(?:(?:\[[^\]\n]{1,30}\]|【[^】\n]{1,30}】|\([Ss]ources?[^)\n]{0,20}\))\s*)+[.,;]?\s*")


def claims_for(text: str, citations: Sequence[Citation]) -> list[str]:
    """The claim each citation stands for, in the order given."""
    code = _code_blocks(text)
    sents = _sentences(text, code)
    starts_by_sentence: dict[int, list[int]] = {}
    where: list[int] = []
    for c in citations:
        k = next((i for i, (s, e) in enumerate(sents) if s <= c.start < e), -1)
        if k > 0:
            s, _ = sents[k]
            lead = _MARKER_LEAD.match(text, s)
            if lead and lead.end() >= c.end and k - 1 >= 0:
                k -= 1  # "… loop. [1]": the marker closes the sentence before
        where.append(k)
        starts_by_sentence.setdefault(k, []).append(c.start)
    out: list[str] = []
    for c, k in zip(citations, where, strict=True):
        if k < 0:
            out.append("")
            continue
        s, e = sents[k]
        prev_ends = [x.end for x in citations if s <= x.end <= c.start and x.start < c.start]
        clause_start = max(prev_ends) if prev_ends else s
        clause = text[clause_start:c.start]
        sentence = text[s:e]
        claim = clause if len(_claim_tokens(_strip_markers(clause))) >= MIN_CLAUSE_TOKENS else sentence
        claim = _strip_markers(claim)
        claim += _adjacent_code(text, code, s, e)
        out.append(claim.strip())
    return out


def _strip_markers(text: str) -> str:
    return re.sub(r"\[[^\]\n]{1,30}\]|【[^】\n]{1,30}】|\([Ss]ources?\s[^)\n]{0,20}\)", " ", text)


def _adjacent_code(text: str, code: list[tuple[int, int]], s: int, e: int) -> str:
    extra = ""
    for cs, ce in code:
        if ce <= s and not text[ce:s].strip():
            extra += "\n" + text[cs:ce]
        if cs >= e and not text[e:cs].strip() and text[s:e].rstrip().endswith(":"):
            extra += "\n" + text[cs:ce]
    return extra


# --- scoring --------------------------------------------------------------------------------


def _passage_sentences(text: str, limit: int = 40) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n(?=[-*] )", text) if p.strip()]
    parts = [p for p in parts if len(p) >= 12][:limit]
    return parts or [text[:1000]]


def score_support(answer_text: str, citations: Sequence[Citation], sources: Sequence[Source], *,
                  embedder: Any = None) -> list[Citation]:
    """Copies of `citations` with `support` and `supported` filled in."""
    by_n = {s.n: s for s in sources}
    claims = claims_for(answer_text, citations)
    lex_cache: dict[tuple[str, int], float] = {}

    def lex(claim: str, n: int) -> float:
        key = (claim, n)
        if key not in lex_cache:
            lex_cache[key] = lexical_support(claim, _source_text(by_n[n]))
        return lex_cache[key]

    cos: dict[tuple[str, int], float] = {}
    if embedder is not None and citations:
        cited = {c.n: by_n[c.n] for c in citations if c.valid and c.n in by_n}
        cos = _cosines(embedder, claims, cited)
    out: list[Citation] = []
    for c, claim in zip(citations, claims, strict=True):
        if not c.valid or c.n not in by_n or not claim:
            out.append(replace(c, support=0.0 if not c.valid or c.n not in by_n else None,
                               supported=False if not c.valid or c.n not in by_n else None))
            continue
        own_lex = lex(claim, c.n)
        own = _combine(own_lex, cos.get((claim, c.n)))
        others = [lex(claim, n) for n in by_n if n != c.n]
        own_cmp = own_lex
        best_other = max(others, default=0.0)
        # another source says it far better: this one is probably the wrong source
        if best_other >= 0.7 and best_other - own_cmp > 0.3:
            own *= 0.75
        threshold = THRESHOLD_EMBED if cos else THRESHOLD
        out.append(replace(c, support=round(own, 3), supported=own >= threshold))
    return out


def _source_text(src: Source) -> str:
    return f"{src.title}\n{src.heading}\n{src.text}"


def _combine(lexical: float, cosine: float | None) -> float:
    if cosine is None:
        return lexical
    sem = max(0.0, min(1.0, (cosine - 0.25) / 0.5))
    return 0.6 * lexical + 0.4 * sem


def _cosines(embedder: Any, claims: list[str], by_n: dict[int, Source]) -> dict[tuple[str, int], float]:
    """Best cosine between each claim (prose only, no code) and each cited source's sentences."""
    uniq_claims = sorted({c for c in claims if c})
    if not uniq_claims:
        return {}
    sent_lists = {n: [t[:300] for t in _passage_sentences(s.text, limit=24)] for n, s in by_n.items()}
    texts = [_FENCE.sub(" ", c)[:300] for c in uniq_claims] + [t for n in sorted(sent_lists) for t in sent_lists[n]]
    vecs = embedder.embed(texts)
    cv = vecs[: len(uniq_claims)]
    out: dict[tuple[str, int], float] = {}
    pos = len(uniq_claims)
    for n in sorted(sent_lists):
        k = len(sent_lists[n])
        sims = cv @ vecs[pos:pos + k].T
        pos += k
        for i, claim in enumerate(uniq_claims):
            out[(claim, n)] = float(sims[i].max())
    return out


def match_sentences(answer_text: str, sources: Sequence[Source], *, embedder: Any = None) -> list[Match]:
    """For an answer that cites nothing: each prose sentence whose best source supports it (the
    same score as a citation's) and beats every other source by `MATCH_MARGIN`. Sentences too
    short to judge, and sentences two sources support about equally, are left unmatched."""
    if not sources or not answer_text.strip():
        return []
    by_n = {s.n: s for s in sources}
    code = _code_blocks(answer_text)
    picked = [(s, e, " ".join(answer_text[s:e].split())) for s, e in _sentences(answer_text, code)]
    picked = [(s, e, t) for s, e, t in picked if len(_claim_tokens(t)) >= MIN_CLAUSE_TOKENS]
    if not picked:
        return []
    cos = _cosines(embedder, [t for _, _, t in picked], by_n) if embedder is not None else {}
    threshold = THRESHOLD_EMBED if cos else THRESHOLD
    out: list[Match] = []
    for s, e, sentence in picked:
        scores = sorted(((_combine(lexical_support(sentence, _source_text(src)), cos.get((sentence, n))), n)
                         for n, src in by_n.items()), reverse=True)
        best, n = scores[0]
        runner_up = scores[1][0] if len(scores) > 1 else 0.0
        if best >= threshold and best - runner_up >= MATCH_MARGIN:
            out.append(Match(n=n, start=s, end=e, sentence=sentence, support=round(best, 3)))
    return out


def match_uncited(answer_text: str, sources: Sequence[Source], settings: Settings | None = None) -> list[Match]:
    """`match_sentences` with the in-process embedder when its files are on disk, else lexical."""
    return _with_embedder(settings, lambda embedder: match_sentences(answer_text, sources, embedder=embedder))


def weak(citations: Sequence[Citation]) -> list[Citation]:
    """Valid citations scored as not supported."""
    return [c for c in citations if c.valid and c.supported is False]


# --- is a model at hand? --------------------------------------------------------------------


def make_support_embedder(settings: Settings) -> Any:
    """An embedder for support scoring, or None when it would need a download (or the model
    folder setting is bad): the process's shared MiniLM (`embeddings.shared_minilm`), the same
    session the open local index uses, so scoring loads no second model (20 answers at once with
    a session each peaked near 900 MB)."""
    from copilot.index.embeddings import shared_minilm

    try:
        return shared_minilm(settings)
    except Exception:  # noqa: BLE001 - a bad folder setting means "not available" here
        return None


def embedder_available(settings: Settings) -> bool:
    """True when the in-process MiniLM can be used without a download (files already on disk)."""
    return make_support_embedder(settings) is not None


def weak_warning(answer_text: str, scored: Sequence[Citation], words: int = 8) -> str | None:
    """One warning naming each weakly supported citation and the start of its claim."""
    weak_ones = weak(scored)
    if not weak_ones:
        return None
    claims = claims_for(answer_text, weak_ones)
    parts: list[str] = []
    seen: set[tuple[int, str]] = set()
    for c, claim in zip(weak_ones, claims, strict=True):
        prose = " ".join(_FENCE.sub(" ", claim).split())
        cut = prose.split(" ")
        head = " ".join(cut[:words]) + ("…" if len(cut) > words else "")
        if (c.n, head) in seen:
            continue
        seen.add((c.n, head))
        parts.append(f'[{c.n}] may not support: "{head}"')
    return "weak citation support: " + "; ".join(parts)


def check_support(answer_text: str, citations: Sequence[Citation], sources: Sequence[Source],
                  settings: Settings | None = None) -> list[Citation]:
    """`score_support` with the in-process embedder when its files are on disk, else lexical only.
    Never downloads; an embedder that fails falls back to lexical scoring."""
    if not citations:
        return []
    return _with_embedder(settings, lambda embedder: score_support(answer_text, citations, sources,
                                                                   embedder=embedder))


def _with_embedder(settings: Settings | None, score: Callable[[Any], T]) -> T:
    """`score(embedder)` with the in-process embedder when its files are on disk; `score(None)`
    (lexical only) when there is none, or when the embedder fails."""
    embedder = make_support_embedder(settings) if settings is not None else None
    if embedder is not None:
        try:
            return score(embedder)
        except Exception:  # noqa: BLE001 - a broken model file must not cost the answer
            pass
    return score(None)
