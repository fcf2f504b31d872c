"""Pick the passages of fetched pages that answer the question.

Whole pages do not fit a small model's context, and every prompt token costs prefill time. So each
page is split into passages (paragraph boundaries, code blocks whole, heading path kept), the
passages are ranked with BM25 plus a few boosts, and `select_sources` packs the best ones of
several pages into a token budget, one page at a time so that each good page gets a say.

Pure Python and fast: five pages of ~20 KB each take a few milliseconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from copilot.document import Document
from copilot.prompting import estimate_tokens

# --- passages -------------------------------------------------------------------------------


_HEADING_CHARS = 60


@dataclass
class Passage:
    """A piece of one page: whole paragraphs and whole code blocks under one heading path."""

    text: str  # Markdown; code blocks fenced
    heading_path: list[str] = field(default_factory=list)
    url: str = ""
    doc: int = 0  # index of the page in the list it came from
    section: int = 0  # index of the section in the page
    position: int = 0  # order of the passage in the page, from 0
    score: int | None = None  # Stack Overflow vote score
    accepted: bool | None = None  # Stack Overflow accepted answer
    role: str = ""  # "question" | "answer" on Stack Overflow pages
    rank: float = 0.0  # relevance given by rank_passages / select_sources

    @property
    def heading(self) -> str:
        return " › ".join(self.heading_path)

    @property
    def has_code(self) -> bool:
        return "```" in self.text or "~~~" in self.text

    def for_prompt(self, doc_title: str = "") -> str:
        """The passage as the model should see it: a short line saying where in the page it is
        (the heading path without a first heading that repeats the page title, each heading cut
        to 60 characters: Sphinx headings are whole signatures; or which Stack Overflow post it
        is), then the text."""
        lead = post_lead(self.role, self.accepted, self.score)
        if not lead:
            path = list(self.heading_path)
            if path and doc_title and path[0].strip().casefold() in doc_title.casefold():
                path = path[1:]
            path = [short_heading(h) for h in path]
            lead = f"Section: {' › '.join(path)}" if path else ""
        return f"{lead}\n{self.text}" if lead else self.text


def short_heading(heading: str, limit: int = _HEADING_CHARS) -> str:
    """Sphinx headings are whole signatures; a label needs only their start."""
    return heading if len(heading) <= limit else heading[: limit - 1].rstrip() + "…"


def post_lead(role: str, accepted: bool | None, score: int | None) -> str:
    """Which Stack Overflow post a passage is ("Accepted answer (score 12):"); "" for other pages."""
    if role == "question":
        return "Question:"
    if role == "answer":
        lead = "Accepted answer" if accepted else "Answer"
        return lead + (f" (score {score}):" if score is not None else ":")
    return ""


@dataclass
class _Block:
    text: str
    code: bool = False
    fence_open: str = ""
    fence_close: str = ""


_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and fenced code blocks, in order. An unterminated fence gets a closing one."""
    out: list[_Block] = []
    para: list[str] = []
    lines = text.split("\n")
    i = 0

    def flush() -> None:
        if para:
            out.append(_Block("\n".join(para).strip("\n")))
            para.clear()

    while i < len(lines):
        line = lines[i]
        m = _FENCE.fullmatch(line)
        if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            flush()
            ch, length = m.group(1)[0], len(m.group(1))
            body: list[str] = []
            i += 1
            close = None
            while i < len(lines):
                s = lines[i].strip()
                if s and set(s) == {ch} and len(s) >= length:
                    close = lines[i]
                    break
                body.append(lines[i])
                i += 1
            indent = line[: len(line) - len(line.lstrip())]
            if close is None:  # unterminated: drop trailing blank lines, close it
                while body and not body[-1].strip():
                    body.pop()
                close = indent + m.group(1)
            out.append(_Block("\n".join([line, *body, close]), True, line, close))
        elif not line.strip():
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return out


def _split_big(block: _Block, max_chars: int) -> list[_Block]:
    """Split a block longer than max_chars: code on line boundaries (each part re-fenced, lines
    never cut), prose on line, then sentence, then word boundaries."""
    if len(block.text) <= max_chars:
        return [block]
    if block.code:
        lines = block.text.split("\n")[1:-1]
        room = max(1, max_chars - len(block.fence_open) - len(block.fence_close) - 2)
        parts: list[list[str]] = []
        cur: list[str] = []
        size = 0
        for line in lines:
            if cur and size + len(line) + 1 > room:
                # cut at the last blank line of the part when it is in its second half
                blank = max((k for k, x in enumerate(cur) if not x.strip()), default=-1)
                if blank > len(cur) // 2:
                    parts.append(cur[:blank])
                    cur = cur[blank + 1:]
                else:
                    parts.append(cur)
                    cur = []
                size = sum(len(x) + 1 for x in cur)
            cur.append(line)
            size += len(line) + 1
        if cur:
            parts.append(cur)
        return [_Block("\n".join([block.fence_open, *p, block.fence_close]), True,
                       block.fence_open, block.fence_close) for p in parts if p]
    text = block.text
    if "\n" in text:
        pieces = text.split("\n")
        joiner = "\n"
    else:
        pieces = re.split(r"(?<=[.!?:;])\s+", text)
        joiner = " "
        if len(pieces) == 1:
            pieces = text.split(" ")
    out: list[_Block] = []
    cur_text = ""
    for piece in pieces:
        if len(piece) > max_chars:
            if cur_text:
                out.append(_Block(cur_text))
                cur_text = ""
            if " " in piece or "\n" in piece:
                out.extend(_split_big(_Block(piece), max_chars))
            else:  # one huge word: cut it
                out.extend(_Block(piece[k:k + max_chars]) for k in range(0, len(piece), max_chars))
            continue
        if cur_text and len(cur_text) + len(joiner) + len(piece) > max_chars:
            out.append(_Block(cur_text))
            cur_text = piece
        else:
            cur_text = f"{cur_text}{joiner}{piece}" if cur_text else piece
    if cur_text:
        out.append(_Block(cur_text))
    return out


def _pack(blocks: Iterable[_Block], max_chars: int) -> list[list[_Block]]:
    """Greedy packing of blocks into passages of at most max_chars. A short paragraph that
    introduces a code block ("For example:") moves with the code into the next passage."""
    out: list[list[_Block]] = []
    cur: list[_Block] = []
    size = 0
    for b in blocks:
        add = len(b.text) + (2 if cur else 0)
        if cur and size + add > max_chars:
            carry: list[_Block] = []
            intro = cur[-1]
            if (b.code and not intro.code and len(cur) > 1 and intro.text.rstrip().endswith(":")
                    and len(intro.text) + 2 + len(b.text) <= max_chars):
                carry = [cur.pop()]
            out.append(cur)
            cur = carry
            size = sum(len(x.text) for x in cur) + 2 * max(0, len(cur) - 1)
            add = len(b.text) + (2 if cur else 0)
        cur.append(b)
        size += add
    if cur:
        out.append(cur)
    return out


def split_passages(doc: Document, max_chars: int = 1200, *, doc_index: int = 0,
                   url: str | None = None) -> list[Passage]:
    """Split each section of `doc` into passages of at most `max_chars` (except a single line of
    code longer than that), on paragraph boundaries. A fenced code block is never split unless it
    alone exceeds max_chars; then it is split on line boundaries and each part re-fenced."""
    url = url if url is not None else (doc.url or doc.canonical_url or "")
    out: list[Passage] = []
    for si, section in enumerate(doc.sections):
        blocks: list[_Block] = []
        for b in _blocks(section.text):
            blocks.extend(_split_big(b, max_chars))
        for group in _pack(blocks, max_chars):
            text = "\n\n".join(b.text for b in group).strip()
            if not text:
                continue
            out.append(Passage(text=text, heading_path=list(section.heading_path), url=url,
                               doc=doc_index, section=si, position=len(out),
                               score=section.score, accepted=section.accepted, role=section.role))
    return out


# --- ranking --------------------------------------------------------------------------------

# Identifiers with their dots, dashes and underscores (asyncio.run, lru_cache, __init__,
# --no-cache), and numbers with their dots (3.11).
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.\-][A-Za-z_][A-Za-z0-9_]*)*|\d+(?:\.\d+)*")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = frozenset(re.findall(r"\S+",
    "a an the and or but if of to in on at by for from with without into onto about as is are was "
    "were be been being do does did done doing i me my we our you your it its this that these "
    "those there here what which who whom whose when where why how can could should would will "
    "shall may might must not no yes so than then too very just also any some all each get got "
    "use using used way ways want need make like one"))
_HOW = re.compile(r"\b(how|example|examples|snippet|syntax|usage|write|implement|code|"
                  r"command|use|using)\b", re.IGNORECASE)
_expand_cache: dict[str, tuple[str, ...]] = {}


def _stem(word: str) -> str:
    """A very light stemmer, applied the same way to questions and pages: plural -s/-ies,
    -ing, -ed and a final -e go (`caches`/`cache` -> `cach`, `configured` -> `configur`)."""
    if len(word) <= 4 or not word.isalpha():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) > 6:
        word = word[:-3]
    elif word.endswith("ed") and len(word) > 5:
        word = word[:-2]
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def _expand(raw: str) -> tuple[str, ...]:
    """Index terms for one raw token: the whole token lowercased; for a compound, also its
    dotted or dashed segments (`functools.lru_cache` -> `functools`, `lru_cache`) and their
    parts split on `_` and camelCase (`lru`, `cache`; `ThreadPool` -> `thread`, `pool`)."""
    hit = _expand_cache.get(raw)
    if hit is not None:
        return hit
    terms = [_stem(raw.lower())]
    if not raw.isalpha() or (raw[1:] != raw[1:].lower() and raw != raw.upper()):
        segments = [x for x in re.split(r"[.\-]+", raw) if x]
        for seg in segments:
            pieces = [seg] if len(segments) > 1 else []
            pieces += _PARTS.findall(seg)
            for piece in pieces:
                t = _stem(piece.lower())
                if t and t not in terms:
                    terms.append(t)
    result = tuple(terms)
    if len(_expand_cache) < 200_000:
        _expand_cache[raw] = result
    return result


def tokenize(text: str) -> list[str]:
    """Terms of `text`: identifiers kept whole (`asyncio.run`, `lru_cache`, `__init__`) and also
    split into their parts (`asyncio`, `run`, `lru`, `cache`, `init`); lowercased; plural -s
    stripped from plain words."""
    out: list[str] = []
    for raw in _TOKEN.findall(text):
        out.extend(_expand(raw))
    return out


def _query_terms(question: str) -> dict[str, float]:
    """Query terms with weights: a compound identifier counts double (it is specific), its parts
    and plain words once. Stop words go."""
    weights: dict[str, float] = {}
    for raw in _TOKEN.findall(question):
        terms = _expand(raw)
        compound = len(terms) > 1 or not raw.isalpha()
        for i, t in enumerate(terms):
            if t in _STOP or (len(t) < 2 and not t.isdigit()):
                continue
            w = 2.0 if compound and i == 0 else 1.0
            weights[t] = max(weights.get(t, 0.0), w)
    return weights


def _scores(question: str, passages: Sequence[Passage]) -> list[float]:
    """BM25 (k1=1.2, b=0.75, IDF over the given passages) times boosts: heading match up to
    +50 %, accepted answer +25 %, SO votes up to +20 % (negative: -20 %), code when the question
    asks how +20 %, an SO question post -65 % and never above the best answer of its page (it
    asks, it does not answer)."""
    query = _query_terms(question)
    if not passages or not query:
        return [0.0] * len(passages)
    # Count raw tokens per passage (C speed), then expand only the distinct raw tokens of the
    # whole pool, once, keeping those with a query term among their terms. Document length is
    # the raw token count: close enough for BM25's length normalisation.
    raw_counts = [Counter(_TOKEN.findall(p.text)) for p in passages]
    relevant: dict[str, list[str]] = {}
    for raw in set().union(*raw_counts):
        hits = [t for t in _expand(raw) if t in query]
        if hits:
            relevant[raw] = hits
    tfs: list[dict[str, int]] = []
    df: Counter[str] = Counter()
    for rc in raw_counts:
        tf: dict[str, int] = {}
        for raw in relevant.keys() & rc.keys():
            c = rc[raw]
            for t in relevant[raw]:
                tf[t] = tf.get(t, 0) + c
        tfs.append(tf)
        df.update(tf.keys())
    n = len(passages)
    lengths = [rc.total() for rc in raw_counts]
    avgdl = sum(lengths) / n or 1.0
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    wants_code = bool(_HOW.search(question))
    total_w = sum(query.values())
    k1, b = 1.2, 0.75
    out: list[float] = []
    heads: dict[tuple[str, ...], set[str]] = {}
    for p, tf, dl in zip(passages, tfs, lengths, strict=True):
        s = 0.0
        norm = k1 * (1 - b + b * dl / avgdl)
        for t, f in tf.items():
            s += query[t] * idf[t] * f * (k1 + 1) / (f + norm)
        if s > 0:
            if p.heading_path:
                key = tuple(p.heading_path)
                head = heads.get(key)
                if head is None:
                    head = heads[key] = set(tokenize(" ".join(key)))
                frac = sum(w for t, w in query.items() if t in head) / total_w
                s *= 1 + 0.5 * frac
            if p.accepted:
                s *= 1.25
            if p.score is not None:
                s *= 1 + 0.05 * min(math.log10(1 + p.score), 4) if p.score >= 0 else 0.8
            if wants_code and p.has_code:
                s *= 1.2
            if p.role == "question":
                s *= 0.35
        out.append(s)
    # A Stack Overflow question restates what the user asked, so it matches best while answering
    # nothing: keep it below the best answer of its page.
    best_answer: dict[tuple[int, str], float] = {}
    for p, s in zip(passages, out, strict=True):
        if p.role == "answer":
            key = (p.doc, p.url)
            best_answer[key] = max(best_answer.get(key, 0.0), s)
    for i, p in enumerate(passages):
        cap = best_answer.get((p.doc, p.url), 0.0)
        if p.role == "question" and cap > 0 and out[i] >= cap:
            out[i] = 0.9 * cap
    return out


def _order_key(p: Passage, s: float) -> tuple:
    # Ties: accepted answer first, then more votes, then page order.
    return (-s, not p.accepted, -(p.score or 0), p.doc, p.position)


def rank_passages(question: str, passages: Sequence[Passage], k: int) -> list[Passage]:
    """The k passages that best answer `question`, best first, as copies with `rank` set. Order is
    deterministic: by score, then accepted answer, then SO votes, then page and position."""
    scores = _scores(question, passages)
    order = sorted(range(len(passages)), key=lambda i: _order_key(passages[i], scores[i]))
    return [replace(passages[i], rank=scores[i]) for i in order[:max(0, k)]]


# --- selection across pages -----------------------------------------------------------------

_SOURCE_OVERHEAD = 14  # tokens of <source n="…">, the header line's brackets, </source>
_MIN_PASSAGE_CHARS = 120  # a trimmed passage shorter than this is not worth its header


def _trim(p: Passage, budget: int, title: str) -> Passage | None:
    """`p` cut at a paragraph boundary to fit `budget` tokens (code blocks stay whole), or None
    when not even its first paragraph fits."""
    kept: list[str] = []
    for block in _blocks(p.text):
        trial = replace(p, text="\n\n".join([*kept, block.text]))
        if estimate_tokens(trial.for_prompt(title)) > budget:
            break
        kept.append(block.text)
    text = "\n\n".join(kept)
    if len(text) < _MIN_PASSAGE_CHARS and len(text) < len(p.text):
        return None
    return replace(p, text=text) if kept else None


def select_sources(question: str, docs: Sequence[tuple[Document, str]], budget_tokens: int,
                   max_sources: int, max_chars: int = 1200) -> list[tuple[Document, Passage]]:
    """Choose passages from several pages (given best page first, each with the URL it came from)
    for the prompt, at most `max_sources` of them, their `for_prompt()` text plus per-source
    overhead within `budget_tokens` by `estimate_tokens`.

    Selection goes in rounds: first the best passage of each good page in page order, then the
    second best of each, and so on, so every good page contributes before any page gets two.
    A page is good when its best passage scores at least 30 % of the best passage overall; later
    passages of a page need that too, and 40 % of their page's best. When nothing matches the
    question's words at all, the first passage of each page stands in (the search engine thought
    the page relevant).
    A passage that does not fit is trimmed at a paragraph boundary, never inside a code block;
    if even that fails, smaller candidates still get their turn. Identical passages (mirrors)
    count once. The result is in selection order; `rank` holds each passage's score.
    """
    pool: list[Passage] = []
    for i, (doc, url) in enumerate(docs):
        pool.extend(split_passages(doc, max_chars, doc_index=i, url=url or doc.url or ""))
    if not pool or max_sources <= 0 or budget_tokens <= 0:
        return []
    scores = _scores(question, pool)
    best = max(scores)
    per_doc: list[list[Passage]] = [[] for _ in docs]
    for p, s in zip(pool, scores, strict=True):
        per_doc[p.doc].append(replace(p, rank=s))
    candidates: list[list[Passage]] = []
    for ps in per_doc:
        if not ps:
            candidates.append([])
            continue
        if best <= 0:
            first = next((p for p in ps if p.role != "question"), ps[0])
            candidates.append([first])
            continue
        ps.sort(key=lambda p: _order_key(p, p.rank))
        top = ps[0].rank
        if top < 0.3 * best:
            candidates.append([])
            continue
        floor = max(0.3 * best, 0.4 * top)
        candidates.append([ps[0]] + [p for p in ps[1:] if p.rank >= floor and p.rank > 0])

    chosen: list[tuple[Document, Passage]] = []
    seen: set[str] = set()
    left = budget_tokens
    rounds = max((len(c) for c in candidates), default=0)
    for r in range(rounds):
        for di, cands in enumerate(candidates):
            if len(chosen) >= max_sources or left < _SOURCE_OVERHEAD + 20:
                return chosen
            if r >= len(cands):
                continue
            p = cands[r]
            key = " ".join(p.text.split())[:300].casefold()
            if key in seen:
                continue
            doc = docs[di][0]
            overhead = _SOURCE_OVERHEAD + estimate_tokens(doc.title) + estimate_tokens(doc.site)
            cost = estimate_tokens(p.for_prompt(doc.title)) + overhead
            if cost > left:
                trimmed = _trim(p, left - overhead, doc.title)
                if trimmed is None:
                    continue
                p = trimmed
                cost = estimate_tokens(p.for_prompt(doc.title)) + overhead
            seen.add(key)
            chosen.append((doc, p))
            left -= cost
    return chosen
