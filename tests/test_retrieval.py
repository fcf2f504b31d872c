"""Hybrid retrieval over a real (small) index: real MiniLM files, embedded Chroma and a Chroma
server. Keyword mode finds identifiers and exact error text, dense mode finds a vague question,
hybrid does at least as well as both, pages are diversified, and no question text can inject
FTS5 syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from copilot.config import Settings
from copilot.evaluation import Question, run_retrieval_eval
from copilot.index.indexer import run_index
from copilot.retrieval import Hit, diversify, fts_query, hybrid_search, keyword_terms, query_profile

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]

PAGES = {
    "library/functools.md": """# functools — Higher-order functions and operations on callable objects

## @functools.lru_cache(maxsize=128, typed=False)

Decorator to wrap a function with a memoizing callable that saves up to the maxsize most recent
calls. It can save time when an expensive or I/O bound function is periodically called with the
same arguments. The cache_info() method reports hits and misses.

## @functools.cache(user_function)

Simple lightweight unbounded function cache. Sometimes called memoize. Returns the same as
lru_cache(maxsize=None), creating a thin wrapper around a dictionary lookup for the function
arguments.

## functools.partial(func, /, *args, **keywords)

Return a new partial object which when called will behave like func called with the positional
arguments args and keyword arguments keywords.
""",
    "library/asyncio-runner.md": """# Runners

## asyncio.run(coro, *, debug=None)

Execute the coroutine coro and return the result. This function runs the passed coroutine,
taking care of managing the asyncio event loop, finalizing asynchronous generators, and closing
the executor. This function cannot be called when another asyncio event loop is running in the
same thread.
""",
    "library/exceptions.md": """# Built-in Exceptions

## exception TypeError

Raised when an operation or function is applied to an object of inappropriate type. For example
indexing None gives TypeError: 'NoneType' object is not subscriptable, because None has no
__getitem__ method.

## exception KeyError

Raised when a mapping (dictionary) key is not found in the set of existing keys.
""",
    "reference/datamodel.md": """# Data model

## object.__init__(self[, ...])

Called after the instance has been created (by __new__()), but before it is returned to the
caller. The arguments are those passed to the class constructor expression.

## object.__repr__(self)

Called by the repr() built-in function to compute the official string representation of an
object.
""",
    "library/venv.md": """# venv — Creation of virtual environments

## Overview

The venv module supports creating lightweight virtual environments, each with their own
independent set of Python packages installed in their site directories. A virtual environment
is created on top of an existing Python installation, so that the packages a project installs
do not interfere with other projects on the same machine or with the system.
""",
    "library/time.md": """# time — Time access and conversions

## time.sleep(secs)

Suspend execution of the calling thread for the given number of seconds.

## time.monotonic()

Return the value (in fractional seconds) of a monotonic clock, i.e. a clock that cannot go
backwards.
""",
    "howto/caching-notes.md": """# Notes on caching

## Cache one

A cache keeps results. The cache is a dictionary. Cache entries, cache keys, cache cache.

## Cache two

Another cache section: cache invalidation, cache size, cache eviction, cache again.

## Cache three

The third cache section: cache warm-up, cache hits, cache misses, cache cache cache.

## Cache four

The fourth cache section: cache policy, cache tuning, cache cache.
""",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    for rel, text in PAGES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def _build(corpus: Path, data: Path, minilm: Path, chroma_url: str = "") -> Settings:
    settings = Settings(data_dir=str(data), embed_model_dir=str(minilm), chroma_url=chroma_url)
    report = run_index([corpus], settings)
    assert report.to_json()["added"] == len(PAGES)
    return settings


@pytest.fixture(scope="module")
def local(corpus: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _build(corpus, tmp_path_factory.mktemp("data"), minilm_dir)


def _page(hit: Hit, corpus: Path) -> str:
    return str(Path(hit.source_path).relative_to(corpus).with_suffix(""))


def _top_pages(query: str, settings: Settings, corpus: Path, mode: str, k: int = 3) -> list[str]:
    pages: list[str] = []
    for h in hybrid_search(query, settings, 10, mode=mode):  # type: ignore[arg-type]
        p = _page(h, corpus)
        if p not in pages:
            pages.append(p)
    return pages[:k]


# --- the keyword query, without an index --------------------------------------------------------


def test_identifiers_stay_whole_and_stop_words_go() -> None:
    terms = dict(keyword_terms("how do I use functools.lru_cache with __init__ and asyncio.run?"))
    assert terms["functools.lru_cache"] == 2.0
    assert terms["__init__"] == 2.0
    assert terms["asyncio.run"] == 2.0
    assert "lru" in terms and "cache" in terms  # parts too, weaker
    assert not {"how", "do", "i", "use", "with", "and"} & set(terms)


def test_error_text_becomes_a_phrase() -> None:
    q = "TypeError: 'NoneType' object is not subscriptable"
    terms = dict(keyword_terms(q))
    assert "'nonetype' object is not subscriptable" in terms
    assert "nonetype" in terms
    assert '"\'nonetype\' object is not subscriptable"' in fts_query(q)


@pytest.mark.parametrize("query", ['"', '""', "*", "a*", "NEAR(", "NEAR(a b, 2)", "-", "--x", ":", "col:x",
                                   "title: foo", "AND OR NOT", "(", ")", "^start", "x + y", "{a b}: c",
                                   '"unterminated', "\x00", "'; DROP TABLE chunks; --", ""])
def test_fts_syntax_in_questions_is_data(query: str, local: Settings) -> None:
    expr = fts_query(query)
    if expr:
        for part in expr.split(" OR "):
            assert part.startswith('"') and part.endswith('"')
    for mode in ("keyword", "hybrid"):
        hybrid_search(query, local, 5, mode=mode)  # never raises


def test_query_profile_leans_on_keywords_for_code_and_dense_for_prose() -> None:
    error = query_profile("TypeError: 'NoneType' object is not subscriptable")
    assert query_profile("functools.lru_cache vs functools.cache").code and error.code
    prose = query_profile("how can I keep the packages of each project separate")
    assert not prose.code and prose.dense_weight > prose.keyword_weight
    assert error.keyword_weight > prose.keyword_weight


def test_diversify_puts_distinct_pages_first() -> None:
    def hit(cid: str, page: str, score: float) -> Hit:
        return Hit(id=cid, text=cid, heading="", title="", source_path=page, url="", site="", kind="docs",
                   score=None, accepted=None, role="", position=0, relevance=score)

    hits = [hit("a1", "a", 1.0), hit("a2", "a", 0.95), hit("a3", "a", 0.9), hit("b1", "b", 0.6),
            hit("c1", "c", 0.55)]
    order = [h.id for h in diversify(hits)]
    assert order[:3] == ["a1", "b1", "c1"]
    assert order[3:] == ["a2", "a3"]


# --- on the index -------------------------------------------------------------------------------


def test_keyword_mode_finds_identifiers(local: Settings, corpus: Path) -> None:
    assert _top_pages("functools.lru_cache maxsize", local, corpus, "keyword")[0] == "library/functools"
    assert _top_pages("asyncio.run", local, corpus, "keyword")[0] == "library/asyncio-runner"
    assert _top_pages("__init__", local, corpus, "keyword")[0] == "reference/datamodel"


def test_keyword_mode_finds_exact_error_text(local: Settings, corpus: Path) -> None:
    q = "I get TypeError: 'NoneType' object is not subscriptable"
    hits = hybrid_search(q, local, 3, mode="keyword")
    assert _page(hits[0], corpus) == "library/exceptions"
    assert "not subscriptable" in hits[0].text


def test_keyword_mode_does_not_load_the_embedder(local: Settings) -> None:
    hits = hybrid_search("asyncio.run", local, 3, mode="keyword")
    assert hits and all(h.modes == ["keyword"] and h.similarity == 0.0 for h in hits)


def test_dense_mode_finds_a_vague_question(local: Settings, corpus: Path) -> None:
    q = "keep the libraries of one project from clashing with another project's"
    assert _top_pages(q, local, corpus, "dense")[0] == "library/venv"
    assert _top_pages(q, local, corpus, "hybrid")[0] == "library/venv"


def test_hybrid_hits_carry_both_scores(local: Settings) -> None:
    hits = hybrid_search("functools.lru_cache maxsize", local, 5)
    top = hits[0]
    assert set(top.modes) == {"keyword", "dense"}
    assert top.keyword > 0 and 0 < top.similarity <= 1
    assert [h.relevance for h in hits] == sorted((h.relevance for h in hits), reverse=True)


def test_hybrid_diversifies_pages(local: Settings) -> None:
    hits = hybrid_search("cache", local, 4)
    pages = [h.source_path for h in hits]
    assert len(set(pages[:3])) >= 2  # four matching chunks of the notes page do not fill the top


def test_hybrid_at_least_as_good_as_either_side(local: Settings, corpus: Path) -> None:
    qs = [Question("functools.lru_cache maxsize", ("library/functools.md",)),
          Question("TypeError: 'NoneType' object is not subscriptable", ("library/exceptions.md",)),
          Question("asyncio.run", ("library/asyncio-runner.md",)),
          Question("keep the libraries of one project from clashing with another project's",
                   ("library/venv.md",)),
          Question("pause my program for a few seconds", ("library/time.md",)),
          Question("what gets called when an object is constructed", ("reference/datamodel.md",))]
    res = run_retrieval_eval(qs, local, k=5)["modes"]
    for metric in ("hit@1", "mrr"):
        assert res["hybrid"][metric] >= res["keyword"][metric]
        assert res["hybrid"][metric] >= res["dense"][metric]
    assert res["hybrid"]["hit@1"] == 1.0


def test_empty_index_gives_no_hits(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "nothing"))
    for mode in ("keyword", "dense", "hybrid"):
        assert hybrid_search("asyncio.run", settings, 5, mode=mode) == []


def test_same_results_on_a_chroma_server(corpus: Path, minilm_dir: Path, tmp_path: Path, chroma_server: str,
                                         local: Settings) -> None:
    served = _build(corpus, tmp_path / "data", minilm_dir, chroma_server)
    for q in ("functools.lru_cache maxsize", "keep the libraries of one project from clashing"):
        mine = [h.source_path for h in hybrid_search(q, local, 5)]
        theirs = [h.source_path for h in hybrid_search(q, served, 5)]
        assert mine == theirs


def test_words_most_chunks_contain_leave_the_keyword_query_and_ranking_holds(tmp_path):
    """At scale a word in most chunks costs a scan of most of the index for ~zero bm25 weight:
    it is left out, phrases and rare words stay, the rare chunk still ranks first; a question of
    only common words keeps its rarest one."""
    from copilot.index.manifest import CHUNK_COLUMNS, Manifest
    from copilot.retrieval import PRUNE_MIN_CHUNKS, keyword_ranking, without_common_words

    m = Manifest.open(tmp_path / "manifest.sqlite")
    n = PRUNE_MIN_CHUNKS + 100

    def row(i: int) -> dict:
        text = f"the event loop runs chunk {i}" + (" sometimes" if i % 4 == 0 else "")
        if i == 4242:
            text += " with the rare frobnicate call"
        return {"id": f"c{i}", "source_path": f"/p/{i % 50}.md", "text_hash": f"h{i}", "text": text,
                "heading": "", "title": "", "url": "", "site": "", "kind": "doc", "score": None,
                "accepted": None, "role": "", "position": i, "doc_key": f"/p/{i % 50}.md"}

    with m.transaction():
        m.insert_chunks([(*(row(i)[c] for c in CHUNK_COLUMNS), None) for i in range(n)])
    terms = keyword_terms("event loop frobnicate sometimes asyncio.run")
    kept = {t for t, _ in without_common_words(m.conn, terms, n)}
    # "sometimes" is in a quarter of the chunks, under the cut; asyncio/run are in none
    assert kept == {"frobnicate", "sometimes", "asyncio.run", "asyncio", "run"}
    only_common = without_common_words(m.conn, keyword_terms("event loop chunk"), n)
    assert len(only_common) == 1 and only_common[0][0] in {"event", "loop", "chunk"}
    absent = without_common_words(m.conn, keyword_terms("event loop chunk zyzzyva"), n)
    assert len(absent) == 2 and absent[0][0] == "zyzzyva"  # an unknown word alone would match nothing
    assert without_common_words(m.conn, terms, PRUNE_MIN_CHUNKS - 1) == terms  # small index: all kept
    ranked = keyword_ranking(m.conn, "event loop frobnicate", 10, n)
    assert ranked[0][0].id == "c4242"
    m.close()
