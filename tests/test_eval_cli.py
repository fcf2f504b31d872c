"""`copilot eval retrieval QA.jsonl`: the metric math on hand-made rankings, the JSON shape over a
real small index (built through `copilot index`), and one-line errors for bad question files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from copilot.errors import UsageError
from copilot.evaluation import (
    METRIC_KEYS,
    _relative_to_roots,
    distinct_pages,
    hit_at,
    load_questions,
    ndcg_at,
    percentile,
    reciprocal_rank,
    summarize,
)

pytest_plugins = ["tests.fixtures_models"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "copilot", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env={**os.environ}, cwd=cwd)


# --- metric math ---------------------------------------------------------------------------------


def test_hits_and_reciprocal_rank() -> None:
    pages = ["a", "b", "c", "d", "e", "f"]
    assert hit_at(pages, {"a"}, 1) == 1.0
    assert hit_at(pages, {"c"}, 1) == 0.0
    assert hit_at(pages, {"e"}, 5) == 1.0
    assert hit_at(pages, {"f"}, 5) == 0.0
    assert reciprocal_rank(pages, {"c", "f"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(pages, {"z"}) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0


def test_ndcg_binary_relevance() -> None:
    assert ndcg_at(["a", "b"], {"a"}) == 1.0
    assert ndcg_at(["x", "a"], {"a"}) == pytest.approx(1 / math.log2(3))
    # Two relevant pages at ranks 1 and 3; the ideal puts them at 1 and 2.
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["a", "x", "b"], {"a", "b"}) == pytest.approx(expected)
    assert ndcg_at(["x"] * 10 + ["a"], {"a"}, 10) == 0.0
    # More relevant pages than n: the ideal is capped at n.
    assert ndcg_at(["a", "b"], {"a", "b", "c"}, 2) == 1.0


def test_percentile_and_distinct_pages() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([], 50) == 0.0
    assert distinct_pages(["a", "a", "b", "a", "c"]) == ["a", "b", "c"]


def test_summarize_over_questions() -> None:
    rankings = [["a", "b"], ["x", "b", "y"], ["x", "y", "z", "w", "v", "q"], []]
    relevants = [{"a"}, {"b"}, {"q"}, {"a"}]
    out = summarize(rankings, relevants, [10.0, 20.0, 30.0, 40.0])
    assert tuple(out) == METRIC_KEYS
    assert out["hit@1"] == 0.25
    assert out["hit@5"] == 0.5
    assert out["hit@10"] == 0.75
    assert out["mrr"] == pytest.approx(round((1 + 0.5 + 1 / 6) / 4, 4))
    assert out["p50_ms"] == 25.0


def test_paths_relative_to_the_deepest_root() -> None:
    roots = ["/docs", "/docs/html", "/other"]
    assert _relative_to_roots("/docs/html/library/sys.html", roots) == "library/sys.html"
    assert _relative_to_roots("/docs/README", roots) == "README"
    assert _relative_to_roots("/docsx/a.html", roots) == "/docsx/a.html"


# --- question files ------------------------------------------------------------------------------


def test_load_questions(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "q1", "question": " asyncio.run? ", "answer_pages": ["./library/asyncio.html"]}\n\n'
                  '{"question": "x", "answer_pages": ["a.html", "b.html"], "must_contain": ["run"]}\n')
    qs = load_questions(qa)
    assert [q.id for q in qs] == ["q1", "3"]
    assert qs[0].question == "asyncio.run?" and qs[0].answer_pages == ("library/asyncio.html",)
    assert qs[1].must_contain == ("run",)


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "a", "answer_pages": ["x"]}\n{not json\n', "qa.jsonl:2: not valid JSON"),
    ('{"answer_pages": ["x"]}\n', "qa.jsonl:1: missing 'question'"),
    ('{"question": "a"}\n', "qa.jsonl:1: missing 'answer_pages'"),
    ('{"question": "a", "answer_pages": "x.html"}\n', "'answer_pages' must be a non-empty list"),
    ('{"question": "", "answer_pages": ["x"]}\n', "'question' must be a non-empty string"),
    ('["a"]\n', "expected a JSON object"),
    ("\n\n", "holds no questions"),
])
def test_bad_question_files(tmp_path: Path, content: str, message: str) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(content)
    with pytest.raises(UsageError) as err:
        load_questions(qa)
    assert message in err.value.one_line()


def test_cli_bad_files_are_one_line_errors(env, tmp_path: Path) -> None:
    proc = run("eval", "retrieval", str(tmp_path / "missing.jsonl"), "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("copilot: no such question file") and proc.stderr.count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer_pages": ["x"]}\n{"question": \n')
    proc = run("eval", "retrieval", str(bad))
    assert proc.returncode == 2
    assert "bad.jsonl:2: not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text('{"question": "a"}\n')
    proc = run("eval", "retrieval", str(bad))
    assert proc.returncode == 2 and "missing 'answer_pages'" in proc.stderr


def test_cli_empty_index_says_so(env, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "a", "answer_pages": ["x"]}\n')
    proc = run("eval", "retrieval", str(qa), "--json")
    assert proc.returncode == 8
    assert "index is empty" in proc.stderr


# --- over a real index ---------------------------------------------------------------------------

PAGES = {
    "library/functools.md": "# functools\n\n## functools.lru_cache(maxsize=128)\n\nDecorator to wrap a function "
                            "with a memoizing callable that saves up to the maxsize most recent calls.\n",
    "library/asyncio.md": "# asyncio\n\n## asyncio.run(coro)\n\nExecute the coroutine and return the result, "
                          "managing the event loop.\n",
    "library/venv.md": "# venv — virtual environments\n\n## Overview\n\nEach virtual environment has its own "
                       "independent set of installed packages, isolated from other projects.\n",
}


@pytest.fixture
def indexed(env, minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COPILOT_EMBED_MODEL_DIR", str(minilm_dir))
    docs = tmp_path / "docs"
    for rel, text in PAGES.items():
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text(text)
    proc = run("index", "--json", str(docs))
    assert proc.returncode == 0, proc.stderr
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q) for q in [
        {"id": "1", "question": "functools.lru_cache maxsize", "answer_pages": ["library/functools.md"]},
        {"id": "2", "question": "asyncio.run", "answer_pages": ["library/asyncio.md"]},
        {"id": "3", "question": "stop the packages of my projects from interfering",
         "answer_pages": ["library/venv.md"]},
    ]) + "\n")
    return qa


def test_cli_json_shape(indexed: Path) -> None:
    proc = run("eval", "retrieval", str(indexed), "--json", "--k", "5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["modes", "n"]
    assert out["n"] == 3
    assert list(out["modes"]) == ["keyword", "dense", "hybrid"]
    for metrics in out["modes"].values():
        assert tuple(metrics) == METRIC_KEYS
        for key in METRIC_KEYS[:5]:
            assert 0.0 <= metrics[key] <= 1.0
        assert 0 < metrics["p50_ms"] <= metrics["p95_ms"]
    assert out["modes"]["hybrid"]["hit@1"] == 1.0


def test_cli_table(indexed: Path) -> None:
    proc = run("eval", "retrieval", str(indexed))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["mode", *METRIC_KEYS]
    assert [ln.split()[0] for ln in lines[2:5]] == ["keyword", "dense", "hybrid"]
    assert "3 questions" in proc.stdout
