"""Citation support: does the cited passage say what the sentence claims?"""

from __future__ import annotations

import json
import time

from copilot import support
from copilot.citations import check_citations
from copilot.events import Answer, Source, Timings
from tests.test_ask_cli import QUESTION, _source_blocks, run_cli

pytest_plugins = ["tests.fixtures_models"]

LRU = Source(1, "functools — Higher-order functions", "https://docs.python.org/3/library/functools.html", "web-docs",
             "`@functools.lru_cache(maxsize=128, typed=False)`\n\nDecorator to wrap a function with a memoizing "
             "callable that saves up to the *maxsize* most recent calls. If *maxsize* is set to `None`, the LRU "
             "feature is disabled and the cache can grow without bound.",
             heading="@functools.lru_cache(user_function)")
RUNNER = Source(2, "Runners", "https://docs.python.org/3/library/asyncio-runner.html", "web-docs",
                "asyncio.run(coro, *, debug=None)\n\nExecute the coroutine *coro* and return the result. This "
                "function cannot be called when another asyncio event loop is running in the same thread.\n\n"
                "```python\nasync def main():\n    await asyncio.sleep(1)\n    print('hello')\n\n"
                "asyncio.run(main())\n```")
MKDIR = Source(3, "pathlib", "https://docs.python.org/3/library/pathlib.html", "web-docs",
               "Path.mkdir(mode=0o777, parents=False, exist_ok=False)\n\nCreate a new directory at this given "
               "path. If *exist_ok* is false (the default), `FileExistsError` is raised if the target directory "
               "already exists.")
SOURCES = [LRU, RUNNER, MKDIR]


def scored(text: str, sources=SOURCES, **kw):
    return support.score_support(text, check_citations(text, sources), sources, **kw)


def test_supported_claim_scores_high() -> None:
    [c] = scored("`lru_cache` saves up to `maxsize` most recent calls, and with maxsize=None the cache can grow "
                 "without bound [1].")
    assert c.supported is True and c.support >= support.THRESHOLD


def test_claim_cited_to_the_wrong_source_is_flagged() -> None:
    [c] = scored("`asyncio.run()` cannot be called while another event loop is running in the same thread [1].")
    assert c.supported is False and c.support < 0.3
    [c] = scored("`asyncio.run()` cannot be called while another event loop is running in the same thread [2].")
    assert c.supported is True


def test_swapped_number_is_flagged() -> None:
    [c] = scored("By default `lru_cache` keeps the 256 most recent calls [1].")
    assert c.supported is False
    [c] = scored("By default `lru_cache` keeps the 128 most recent calls [1].")
    assert c.supported is True


def test_wrong_default_is_flagged() -> None:
    [c] = scored("`Path.mkdir()` does not complain about an existing directory: `exist_ok` defaults to `True` [3].")
    assert c.supported is False
    [c] = scored("`Path.mkdir()` raises `FileExistsError` if the directory already exists; `exist_ok` defaults "
                 "to `False` [3].")
    assert c.supported is True


def test_neighbouring_identifier_is_flagged() -> None:
    [c] = scored("`functools.cached_property` saves up to maxsize most recent calls [1].")
    assert c.support < scored("`functools.lru_cache` saves up to maxsize most recent calls [1].")[0].support
    assert c.supported is False


def test_each_citation_judges_its_own_clause() -> None:
    cs = scored("`lru_cache` keeps the most recent calls up to maxsize [1], while `asyncio.run()` executes the "
                "coroutine and returns the result [2].")
    assert [c.supported for c in cs] == [True, True]
    cs = scored("`lru_cache` keeps the most recent calls up to maxsize [2], while `asyncio.run()` executes the "
                "coroutine and returns the result [1].")
    assert [c.supported for c in cs] == [False, False]


def test_marker_after_the_period_belongs_to_the_sentence_before() -> None:
    text = "The cache can grow without bound when maxsize is None. [1] Unrelated words follow here."
    [claim] = support.claims_for(text, check_citations(text, SOURCES))
    assert "grow without bound" in claim and "Unrelated" not in claim


def test_code_block_is_part_of_the_claim() -> None:
    text = ("Run the coroutine like this:\n\n```python\nasyncio.run(main())\n```\n\n"
            "That executes the coroutine and returns its result [2].")
    cites = check_citations(text, SOURCES)
    [claim] = support.claims_for(text, cites)
    assert "asyncio.run(main())" in claim
    [c] = support.score_support(text, cites, SOURCES)
    assert c.supported is True


def test_citation_inside_code_is_not_scored_and_invalid_gets_zero() -> None:
    text = "Index with `argv[1]`; the cache grows without bound when maxsize is None [1]. See also [9]."
    cs = scored(text)
    assert [(c.n, c.valid) for c in cs] == [(1, True), (9, False)]
    assert cs[1].support == 0.0 and cs[1].supported is False


def test_lexical_scoring_is_cheap() -> None:
    text = " ".join(f"`lru_cache` saves up to maxsize recent calls, number {i} [1]." for i in range(12))
    t = time.perf_counter()
    for _ in range(10):
        scored(text)
    assert (time.perf_counter() - t) / 10 < 0.03


def test_weak_warning_names_the_claim() -> None:
    text = "`asyncio.run()` cannot be called while another loop is running in the same thread [1]."
    cs = scored(text)
    note = support.weak_warning(text, cs)
    assert note and '[1] may not support: "`asyncio.run()` cannot be called while another' in note


def test_json_shape_through_answer() -> None:
    text = "The cache grows without bound when maxsize is None [1]. Nested loops fail [1]. Also [7]."
    cs = scored(text)
    answer = Answer(question="q", text=text, model="m", sources=SOURCES, citations=cs, plain_results=[],
                    warnings=[], timings=Timings())
    out = json.loads(json.dumps(answer.to_json()))
    assert [set(c) for c in out["citations"]] == [{"n", "valid", "raw", "support", "supported"}] * 3
    assert out["citations"][0]["supported"] is True and 0 <= out["citations"][0]["support"] <= 1
    assert out["citations"][1]["supported"] is False
    assert out["citations"][2] == {"n": 7, "valid": False, "raw": "[7]", "support": 0.0, "supported": False}


def test_embedder_mode(minilm_dir) -> None:
    from copilot.index.embeddings import MiniLMEmbedder

    emb = MiniLMEmbedder(model_dir=minilm_dir, progress=False)
    emb.prepare()
    good = "asyncio.run() refuses to start while another event loop already runs in this thread [2]."
    wrong = "asyncio.run() refuses to start while another event loop already runs in this thread [1]."
    scored(good, embedder=emb)  # warm-up
    t = time.perf_counter()
    [g] = scored(good, embedder=emb)
    assert time.perf_counter() - t < 0.5  # generous: the goal is < 150 ms, the machine may be busy
    [w] = scored(wrong, embedder=emb)
    assert g.supported is True and w.supported is False


def test_embedder_available_never_downloads(tmp_path) -> None:
    from copilot.config import load_settings

    settings = load_settings()
    assert support.embedder_available(settings) is False  # the isolated HOME has no model files
    assert support.make_support_embedder(settings) is None


def test_the_support_check_uses_the_open_index_s_session(minilm_dir, tmp_path) -> None:
    """One MiniLM session per process: the local index and the support check share it (a second
    one is ~100 MB more resident)."""
    from copilot.config import load_settings
    from copilot.index.local import LocalIndex

    settings = load_settings(env={"COPILOT_EMBED_MODEL_DIR": str(minilm_dir), "COPILOT_DATA_DIR": str(tmp_path)})
    index = LocalIndex.open(settings)
    assert support.make_support_embedder(settings) is index.embedder
    assert support.make_support_embedder(settings) is support.make_support_embedder(settings)
    index.close()


def test_ask_flags_a_citation_of_the_wrong_page(env, ollama, web) -> None:
    from tests.asyncio_pages import BLOG_PAGE, DOCS_PAGE, SO_PAGE

    so = web.add_page("/q/55409641", SO_PAGE)
    docs = web.add_page("/3/library/asyncio-runner.html", DOCS_PAGE)
    blog = web.add_page("/blog/event-loops", BLOG_PAGE)
    web.set_search([{"title": "asyncio.run() cannot be called", "url": so, "content": "Jupyter"},
                    {"title": "Runners", "url": docs, "content": "Execute the coroutine"},
                    {"title": "Understanding event loops", "url": blog, "content": "An event loop"}])

    wrong: list[int] = []

    def reply(body: dict) -> str:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        blocks = _source_blocks(user)
        so_n = next(n for n, t in blocks.items() if "await main()" in t)
        docs_n = next(n for n, t in blocks.items() if "Execute the coroutine" in t)
        wrong.append(docs_n)
        # the first claim is what the Stack Overflow answer says; the second is made up and cites the docs
        return (f"Jupyter already runs an event loop, so inside it await the coroutine directly with "
                f"`result = await main()` [{so_n}]. Pass `loop_factory=nest_asyncio.new_loop` to reuse the "
                f"running Jupyter loop [{docs_n}].")

    ollama.reply_with(reply)
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    verdicts = {c["n"]: c["supported"] for c in out["citations"]}
    assert verdicts[wrong[0]] is False
    assert sum(v is True for v in verdicts.values()) == 1
    assert any("may not support" in w and "nest_asyncio" in w for w in out["warnings"])
    plain = run_cli("ask", QUESTION)
    assert "(weak support)" in plain.stdout


# --- an answer that cites nothing: copilot's match ----------------------------------------------


def test_uncited_sentences_are_matched_to_the_source_that_says_them() -> None:
    text = ("The lru_cache decorator saves up to maxsize most recent calls, and with maxsize set to None "
            "the cache can grow without bound.\n\n```python\n@lru_cache\ndef f(x): ...\n```\n\n"
            "Path.mkdir raises FileExistsError when the target directory already exists and exist_ok is "
            "false. Bananas are yellow and grow in warm countries.")
    matched = support.match_sentences(text, SOURCES)
    assert [(m.n, m.sentence.split()[0]) for m in matched] == [(1, "The"), (3, "Path.mkdir")]
    assert all(m.support >= support.THRESHOLD for m in matched)
    assert text[matched[1].start:matched[1].end].startswith("Path.mkdir raises")
    assert "Bananas" not in " ".join(m.sentence for m in matched)  # no source says it


def test_a_sentence_two_sources_support_alike_is_not_matched() -> None:
    twin = Source(4, "functools (copy)", "https://example.org/functools", "web-other", LRU.text, heading=LRU.heading)
    text = "The lru_cache decorator saves up to maxsize most recent calls, and the cache can grow without bound."
    assert [m.n for m in support.match_sentences(text, SOURCES)] == [1]
    assert support.match_sentences(text, [*SOURCES, twin]) == []
    assert support.match_sentences("", SOURCES) == [] and support.match_sentences(text, []) == []


def test_ask_matches_an_uncited_answer_and_says_it_is_copilots_match(env, ollama, web) -> None:
    from tests.asyncio_pages import DOCS_PAGE, SO_PAGE

    so = web.add_page("/q/55409641", SO_PAGE)
    docs = web.add_page("/3/library/asyncio-runner.html", DOCS_PAGE)
    web.set_search([{"title": "asyncio.run() cannot be called", "url": so, "content": "Jupyter"},
                    {"title": "Runners", "url": docs, "content": "Execute the coroutine"}])
    numbers: dict[str, int] = {}

    def reply(body: dict) -> str:
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        blocks = _source_blocks(user)
        numbers["docs"] = next(n for n, t in blocks.items() if "Execute the coroutine" in t)
        # what the docs say, with no [n] at all
        return ("asyncio.run(coro, *, debug=None) executes the coroutine coro and returns the result; "
                "the example awaits asyncio.sleep(1) and then prints hello.")

    ollama.reply_with(reply)
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["citations"] == []
    assert {m["n"] for m in out["matched"]} == {numbers["docs"]}
    assert all(m["support"] >= support.THRESHOLD and m["sentence"] in out["answer"] for m in out["matched"])
    assert any("cites none of its sources" in w and "copilot's match" in w for w in out["warnings"])
    plain = run_cli("ask", QUESTION)
    assert f"[{numbers['docs']}] " in plain.stdout and "copilot matched a sentence to it" in plain.stdout
