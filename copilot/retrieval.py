"""Hybrid local retrieval: keyword ranking (SQLite FTS5 `bm25()`) and dense ranking (Chroma),
fused with weights that depend on the question, then diversified by page.

Why not plain reciprocal rank fusion: keyword search wins on pasted errors and API names and
loses on vague questions, and equal-weight RRF lets the losing side drag the winner down. So:

- **One candidate pool, two exact scores.** The keyword top and the dense top are merged; every
  candidate gets its cosine similarity to the question (fetched from Chroma for keyword-only
  candidates) and its bm25 score (0 when the keyword query does not reach it). Both are scaled to
  [0, 1] over the pool and mixed linearly.
- **Query-aware weights.** A question with code identifiers (`lru_cache`, `asyncio.run`,
  `__init__`), an exception name or quoted/error text leans on the keyword side; plain prose
  leans on the dense side (`query_profile`).
- **Heading context.** bm25 weighs a match in the chunk's heading path and page title above one
  in the body (Sphinx headings are API signatures); the dense side already embeds the heading.
- **Page diversity.** Each further chunk of a page already ranked is discounted, so the top
  results are distinct pages first, and a page's best chunk stands for it.

`hybrid_search(query, settings, k, mode=...)` is the one entry point; `mode="keyword"` never
imports chromadb or loads the embedder. It works the same against embedded Chroma and a Chroma
server (only `ChromaStore.query` is asked of Chroma; exact vectors come from the manifest).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

    from copilot.config import Settings
    from copilot.index.local import LocalIndex

Mode = Literal["hybrid", "keyword", "dense"]
MODES: tuple[Mode, ...] = ("keyword", "dense", "hybrid")

# bm25 column weights, in the order of chunks_fts's columns: id, text, heading, title, source_path.
BM25_WEIGHTS = (0.0, 1.0, 3.0, 2.0, 0.0)
# Each further chunk of a page already in the ranking keeps this share of its score.
PAGE_DISCOUNT = 0.5
# bm25 times coverage**this (0: plain bm25).
COVERAGE_POWER = 1.0
# How far down each side the candidate pool reaches.
POOL_MIN = 100
# A single word found in more than this share of the chunks is left out of the keyword query: its
# bm25 weight (idf) is near zero, but matching it means scoring most of the index (at 100k chunks
# that was most of the keyword side's time). Small indexes are not worth the look-up.
MAX_DF_SHARE = 1 / 3
PRUNE_MIN_CHUNKS = 5000

# Identifiers worth matching whole: dotted (`asyncio.run`), snake_case (`lru_cache`), dunder
# (`__init__`), CamelCase (`ThreadPoolExecutor`), a call (`print(`).
_RAW = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|\d+(?:\.\d+)*")
_CODEISH = re.compile(r"[A-Za-z0-9]_|_[A-Za-z0-9]|[a-z]\.[a-z_]|^__|[a-z][A-Z]|\(\)")
_EXCEPTION = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception|Warning|Exit|Interrupt)\b")
_ERROR_LINE = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception|Warning)\s*:\s*(?P<msg>[^\n]+)")
_QUOTED = re.compile(r"'([^'\n]{3,80})'|\"([^\"\n]{3,80})\"|`([^`\n]{2,80})`")
_STOP = frozenset(re.findall(r"\S+",
    "a an the and or but if of to in on at by for from with without into onto about as is are was were be "
    "been being do does did done doing i me my we our you your it its this that these those there here what "
    "which who whom whose when where why how can could should would will shall may might must not no yes so "
    "than then too very just also any some all each get got want need like one use using used python way ways "
    "something thing things instead another there's it's i'm don't doesn't"))


@dataclass
class Hit:
    """One ranked chunk of the local index (the fields of `copilot.index.local.LocalHit`, plus
    where the score came from)."""

    id: str
    text: str
    heading: str
    title: str
    source_path: str
    url: str
    site: str
    kind: str
    score: int | None  # Stack Overflow answer score
    accepted: bool | None
    role: str
    position: int
    text_hash: str = ""
    similarity: float = 0.0  # cosine similarity to the question (0 when unknown)
    keyword: float = 0.0  # bm25 relevance (higher is better; 0 when the keyword query missed it)
    relevance: float = 0.0  # the fused score the ranking is sorted by
    modes: list[str] = field(default_factory=list)  # which rankings found it

    @property
    def distance(self) -> float:
        return 1.0 - self.similarity


# --- the keyword query -------------------------------------------------------------------------


def _phrase(text: str) -> str:
    """An FTS5 string: whatever the user typed inside it is data, never syntax."""
    return '"' + text.replace('"', '""') + '"'


def _has_word(text: str) -> bool:
    return re.search(r"[A-Za-z0-9]", text) is not None


def keyword_terms(query: str) -> list[tuple[str, float]]:
    """(FTS5 phrase, weight) pairs for the question: exact error text and quoted text as phrases,
    identifiers whole (as FTS5 phrases `lru_cache` matches `lru cache` adjacent), their parts and
    the other content words singly. Stop words go."""
    out: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        text = text.strip()
        if not _has_word(text):
            return
        key = text.lower()
        out[key] = max(out.get(key, 0.0), weight)

    for m in _ERROR_LINE.finditer(query):
        msg = m.group("msg").strip().rstrip(".?!")
        if len(msg.split()) >= 2:
            add(msg[:120], 3.0)
    for m in _QUOTED.finditer(query):
        inner = next(g for g in m.groups() if g is not None)
        add(inner, 2.0)
    for raw in _RAW.findall(query):
        low = raw.lower().strip("_")
        if not low or (low in _STOP and not _CODEISH.search(raw)):
            continue
        codeish = bool(_CODEISH.search(raw)) or raw.startswith("_")
        if codeish:
            add(raw, 2.0)
            for part in re.split(r"[._]+", raw):
                if len(part) > 2 and part.lower() not in _STOP:
                    add(part, 0.7)
        elif len(raw) > 1 or raw.isdigit():
            add(raw, 1.5 if _EXCEPTION.fullmatch(raw) else 1.0)
    return list(out.items())


def fts_query(query: str, terms: list[tuple[str, float]] | None = None) -> str:
    """A safe FTS5 MATCH expression: every term quoted, OR-ed. '' when nothing is searchable.

    bm25() sums over the query's phrases, so a term of weight w is repeated round(w) times (at
    least once): whole identifiers and error text count more than single words."""
    terms = keyword_terms(query) if terms is None else terms
    return " OR ".join(" OR ".join([_phrase(t)] * max(1, round(w))) for t, w in terms)


_TOKEN = re.compile(r"[^\W_]+")  # how FTS5's unicode61 tokenizer splits (underscore separates)


def without_common_words(conn: sqlite3.Connection, terms: list[tuple[str, float]],
                         total: int) -> list[tuple[str, float]]:
    """`terms` less the single words found in more than MAX_DF_SHARE of `total` chunks (phrases
    stay: their words together are rare). When nothing left would match (every word common or
    absent), the rarest common word stays."""
    if total < PRUNE_MIN_CHUNKS or not terms:
        return terms
    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_vocab USING fts5vocab(main, chunks_fts, 'row')")
    kept, common = [], []
    matches = False
    for term, weight in terms:
        words = _TOKEN.findall(term.lower())
        if len(words) != 1:
            kept.append((term, weight))
            matches = True
            continue
        row = conn.execute("SELECT doc FROM temp.chunks_vocab WHERE term = ?", (words[0],)).fetchone()
        df = row[0] if row else 0
        if df > MAX_DF_SHARE * total:
            common.append((df, term, weight))
        else:
            kept.append((term, weight))
            matches = matches or df > 0
    if not matches and common:
        _, term, weight = min(common)
        kept.append((term, weight))
    return kept


@dataclass(frozen=True)
class QueryProfile:
    code: bool  # identifiers, exception names, quoted or error text
    keyword_weight: float

    @property
    def dense_weight(self) -> float:
        return 1.0 - self.keyword_weight


def query_profile(query: str) -> QueryProfile:
    """How much to trust the keyword side for this question."""
    signals = 0
    if _ERROR_LINE.search(query) or _EXCEPTION.search(query):
        signals += 2
    if _QUOTED.search(query):
        signals += 1
    signals += min(2, sum(1 for raw in _RAW.findall(query) if _CODEISH.search(raw)))
    # Tuned on the development set (bench/results/retrieval.md): the dense side carries most of
    # the weight even for code questions, the keyword side breaks its near-ties.
    return QueryProfile(True, 0.4) if signals else QueryProfile(False, 0.2)


# --- the two rankings --------------------------------------------------------------------------

_COLS = ("id", "source_path", "text_hash", "text", "heading", "title", "url", "site", "kind", "score",
         "accepted", "role", "position")


def _hit(row: dict) -> Hit:
    return Hit(id=row["id"], text=row["text"], heading=row["heading"], title=row["title"],
               source_path=row["source_path"], url=row["url"], site=row["site"], kind=row["kind"],
               score=row["score"], accepted=None if row["accepted"] is None else bool(row["accepted"]),
               role=row["role"], position=row["position"], text_hash=row["text_hash"])


def keyword_ranking(conn: sqlite3.Connection, query: str, limit: int, total: int = 0) -> list[tuple[Hit, float]]:
    """Chunks by bm25 (best first) with their relevance (the negated bm25: higher is better).
    `total`: the index's chunk count, to leave out words most chunks contain (0: keep every word)."""
    terms = keyword_terms(query)
    with contextlib.suppress(sqlite3.OperationalError):  # no vocabulary table: search with every word
        terms = without_common_words(conn, terms, total)
    match = fts_query(query, terms)
    if not match or limit <= 0:
        return []
    weights = ", ".join(str(w) for w in BM25_WEIGHTS)
    cols = ", ".join(f"c.{c}" for c in _COLS)
    sql = (f"SELECT {cols}, f.rank FROM (SELECT rowid, bm25(chunks_fts, {weights}) AS rank FROM chunks_fts "
           f"WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS f JOIN chunks c ON c.rowid = f.rowid "
           f"ORDER BY f.rank")
    try:
        rows = conn.execute(sql, (match, limit)).fetchall()
    except sqlite3.OperationalError:  # a term FTS5 still refuses: search without it rather than fail
        return []
    return [(_hit(dict(zip(_COLS, r[:-1], strict=True))), -float(r[-1])) for r in rows]


def _dense(index: LocalIndex, query: str, limit: int
           ) -> tuple[list[tuple[Hit, float]], np.ndarray | None, dict[str, float]]:
    """The `limit` nearest chunks as hits, the query's vector, and the cosine of every chunk the
    dense search scored (more than `limit`: hybrid reuses them for keyword-only candidates)."""
    found, vector = index.nearest(query, limit)
    if not found:
        return [], vector, {}
    m = index._m()
    assert m is not None
    top = found[:limit]
    rows = m.chunks_by_id([cid for cid, _ in top])
    # None: gone since (a write in progress)
    return [(_hit(rows[cid]), similarity) for cid, similarity in top if cid in rows], vector, dict(found)


# --- fusion ------------------------------------------------------------------------------------


def _scaled(values: dict[str, float]) -> dict[str, float]:
    if not values:
        return {}
    hi, lo = max(values.values()), min(values.values())
    span = hi - lo
    return {k: (v - lo) / span if span > 0 else 1.0 for k, v in values.items()}


def diversify(hits: list[Hit], discount: float = PAGE_DISCOUNT) -> list[Hit]:
    """Re-rank so each further chunk of an already-ranked page counts `discount` times less
    (the page's best chunk keeps its score). Greedy, stable."""
    seen: dict[str, int] = {}
    scored = []
    for h in sorted(hits, key=lambda h: -h.relevance):
        n = seen.get(h.source_path, 0)
        seen[h.source_path] = n + 1
        scored.append((h.relevance * (discount ** n), h))
    scored.sort(key=lambda x: -x[0])
    out = []
    for s, h in scored:
        h.relevance = s
        out.append(h)
    return out


def _dedupe(hits: list[Hit]) -> list[Hit]:
    """Identical text in two files is two chunks: keep the first of each."""
    seen: set[str] = set()
    out = []
    for h in hits:
        key = h.text_hash or h.id
        if key in seen:
            continue
        seen.add(key)
        out.append(h)
    return out


_NON_WORD = re.compile(r"[^a-z0-9]+")


def _norm(text: str) -> str:
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


def coverage(terms: list[tuple[str, float]], hit: Hit) -> float:
    """The weighted share of the query's terms the chunk (with its heading and title) contains,
    each matched the way FTS5 matches it: its words adjacent, in order."""
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    text = _norm(f"{hit.title} {hit.heading} {hit.text}")
    found = sum(w for t, w in terms if (n := _norm(t)).strip() and n in text)
    return found / total


def fuse(keyword: list[tuple[Hit, float]], dense: list[tuple[Hit, float]], profile: QueryProfile,
         similarities: dict[str, float] | None = None, terms: list[tuple[str, float]] | None = None) -> list[Hit]:
    """One ranking from both sides: scaled bm25 and scaled cosine similarity, mixed with the
    profile's weights. `similarities` gives the cosine of keyword-only candidates; `terms` (the
    query's keyword terms) scales each bm25 score by the share of the terms the chunk holds, so a
    chunk that matches one common word of a long question does not count as a keyword hit."""
    pool: dict[str, Hit] = {}
    kw: dict[str, float] = {}
    sim: dict[str, float] = {}
    for h, s in keyword:
        pool.setdefault(h.id, h).modes.append("keyword")
        kw[h.id] = s
    for h, s in dense:
        pool.setdefault(h.id, h).modes.append("dense")
        sim[h.id] = s
    for cid, s in (similarities or {}).items():
        if cid in pool and cid not in sim:
            sim[cid] = s
    if terms is not None and COVERAGE_POWER:
        for cid in kw:
            kw[cid] *= coverage(terms, pool[cid]) ** COVERAGE_POWER
    kw_floor = min(kw.values()) if kw else 0.0
    sim_floor = min(sim.values()) if sim else 0.0
    kws = _scaled({cid: kw.get(cid, kw_floor) for cid in pool})
    sims = _scaled({cid: sim.get(cid, sim_floor) for cid in pool})
    for cid, h in pool.items():
        h.keyword = kw.get(cid, 0.0)
        h.similarity = sim.get(cid, 0.0)
        h.relevance = profile.keyword_weight * kws[cid] + profile.dense_weight * sims[cid]
    return list(pool.values())


# --- the entry point ---------------------------------------------------------------------------


def hybrid_search(query: str, settings: Settings, k: int = 8, *, mode: Mode = "hybrid",
                  index: LocalIndex | None = None) -> list[Hit]:
    """The k best chunks of the local index for `query`, best first; [] when there is no index.

    `index`: an open `LocalIndex` to reuse (it stays open); otherwise one is opened and closed."""
    from copilot.index.local import LocalIndex

    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}")
    own = index is None
    index = index or LocalIndex.open(settings)
    try:
        total = index.count()
        if k <= 0 or total == 0:
            return []
        m = index._m()
        assert m is not None
        pool = max(POOL_MIN, 2 * k)
        if mode == "keyword":
            ranked = keyword_ranking(m.conn, query, pool, total)
            for h, s in ranked:
                h.keyword = h.relevance = s
                h.modes.append("keyword")
            return _dedupe([h for h, _ in ranked])[:k]
        dense, qvec, scored = _dense(index, query, pool if mode == "hybrid" else k + min(k, 8))
        if mode == "dense":
            for h, s in dense:
                h.similarity = h.relevance = s
                h.modes.append("dense")
            return _dedupe([h for h, _ in dense])[:k]
        keyword = keyword_ranking(m.conn, query, pool, total)
        dense_ids = {h.id for h, _ in dense}
        missing = [h.id for h, _ in keyword if h.id not in dense_ids]
        similarities = {cid: scored[cid] for cid in missing if cid in scored}
        unscored = [cid for cid in missing if cid not in scored]
        if unscored and qvec is not None:
            similarities.update(index.similarities(unscored, qvec))
        fused = fuse(keyword, dense, query_profile(query), similarities, keyword_terms(query))
        return diversify(_dedupe(sorted(fused, key=lambda h: -h.relevance)))[:k]
    finally:
        if own:
            index.close()


__all__ = ["Hit", "MODES", "Mode", "QueryProfile", "diversify", "fts_query", "fuse", "hybrid_search",
           "keyword_ranking", "keyword_terms", "query_profile", "without_common_words"]
