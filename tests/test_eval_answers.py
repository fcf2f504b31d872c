"""`copilot eval answers QA.jsonl`: the rates over a real small index (built through `copilot index`)
with the fake Ollama answering per question, the JSON shape, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copilot.eval_answers import contains_all, normalize
from tests.saved_pages import run_copilot as run

pytest_plugins = ["tests.fixtures_models", "tests.fixtures_index"]  # minilm_dir; indexed

KEYS = ["n", "model", "must_contain_rate", "plain_top3_rate", "cited_answer_rate", "valid_citation_rate",
        "supported_citation_rate", "prompt_tokens_mean", "first_token_p50_s", "total_p50_s", "rows"]
ROW_KEYS = ["id", "question", "answer", "must_contain_ok", "plain_top3_ok", "cited", "citations", "matched", "sources",
            "prompt_tokens", "first_token_s", "total_s", "error"]


QA = [
    {"id": "merge", "question": "how do I merge two dicts in python?", "answer_pages": ["merge-dicts.html"],
     "must_contain": ["z = x | y"]},
    {"id": "undo", "question": "how do I undo the last git commit?", "answer_pages": ["git-notes.md"],
     "must_contain": ["git reset   --SOFT"]},  # case and spacing do not matter
    {"id": "other", "question": "how do I merge two dictionaries without the union operator?",
     "answer_pages": ["merge-dicts.html"], "must_contain": ["collections.ChainMap"]},  # nowhere
]


def write_qa(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in items), encoding="utf-8")
    return path


def user_text(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def reply(body: dict) -> str:
    """merge: the fact, cited [1]; undo: the fact, no citation; other: no fact, an invalid [9]."""
    text = user_text(body)
    if "undo the last git commit" in text:
        return "Run git reset --soft HEAD~1 to keep the changes."
    if "without the union operator" in text:
        return "Use a loop over the keys [9]."
    return "Use the union operator z = x | y [1]."


def test_normalize_and_contains_all() -> None:
    assert normalize("  Git  reset\n--Soft ") == "git reset --soft"
    assert contains_all("Run `git reset --soft HEAD~1`", ["GIT RESET  --soft", "head~1"]) is True
    assert contains_all("Run git reset", ["git reset", "--soft"]) is False
    assert contains_all("anything", []) is None


def test_rates_over_a_real_index(env, ollama, web, indexed, tmp_path: Path) -> None:
    ollama.reply_with(reply)
    qa = write_qa(tmp_path / "qa.jsonl", QA)
    proc = run("eval", "answers", "--json", str(qa))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == KEYS
    assert out["n"] == 3
    assert out["model"] == "qwen2.5-coder:1.5b"
    rows = {r["id"]: r for r in out["rows"]}
    assert all(list(r) == ROW_KEYS for r in out["rows"])
    assert [(rows[i]["must_contain_ok"], rows[i]["cited"]) for i in ("merge", "undo", "other")] == [
        (True, True), (True, False), (False, False)]
    assert out["must_contain_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["cited_answer_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["valid_citation_rate"] == 0.5  # [1] valid, [9] not
    assert [(c["n"], c["valid"]) for c in rows["other"]["citations"]] == [(9, False)]
    # The top 3 local hits hold both indexed facts, and never ChainMap.
    assert [rows[i]["plain_top3_ok"] for i in ("merge", "undo", "other")] == [True, True, False]
    assert out["plain_top3_rate"] == pytest.approx(2 / 3, abs=1e-4)
    supported = rows["merge"]["citations"][0]["supported"]
    # each citation keeps the claim it was judged on, each row the passages the model was given
    merge = rows["merge"]
    assert merge["citations"][0]["claim"] and merge["citations"][0]["claim"] in merge["answer"]
    cited = next(s for s in merge["sources"] if s["n"] == merge["citations"][0]["n"])
    assert cited["title"] and cited["text"]
    assert out["supported_citation_rate"] == (1.0 if supported else 0.0)
    assert all(r["error"] is None and r["prompt_tokens"] > 0 and r["total_s"] > 0 for r in out["rows"])
    assert out["prompt_tokens_mean"] == pytest.approx(sum(r["prompt_tokens"] for r in out["rows"]) / 3, abs=0.1)
    assert out["first_token_p50_s"] is not None and out["total_p50_s"] is not None
    assert web.requests == []  # local only: no search, no fetch

    limited = run("eval", "answers", "--limit", "1", str(qa))
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.startswith("1 questions") and "must_contain_rate" in limited.stdout


def test_bad_qa_line_is_one_line_exit_2(env, tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps(QA[0]) + "\n{not json\n", encoding="utf-8")
    proc = run("eval", "answers", "--json", str(qa))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and f"{qa}:2" in proc.stderr and "not valid JSON" in proc.stderr
    missing = run("eval", "answers", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such question file" in missing.stderr
    zero = run("eval", "answers", "--limit", "0", str(write_qa(tmp_path / "ok.jsonl", QA)))
    assert zero.returncode == 2 and "--limit" in zero.stderr


def test_ollama_down_rows_carry_errors_exit_3(env, tmp_path: Path) -> None:
    qa = write_qa(tmp_path / "qa.jsonl", QA[:2])
    proc = run("eval", "answers", "--json", str(qa), extra_env={"OLLAMA_HOST": "http://127.0.0.1:9"})
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == KEYS and out["n"] == 2
    assert all(r["error"] and r["must_contain_ok"] is False and r["cited"] is False for r in out["rows"])
    assert out["must_contain_rate"] == 0.0 and out["cited_answer_rate"] == 0.0
    assert out["valid_citation_rate"] is None and out["total_p50_s"] is None
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("copilot: every question failed:")


DOCS_PAGE = """<!DOCTYPE html><html><head><title>Runners</title></head><body><main>
<h1>Runners</h1><p>asyncio.run(coro) executes the coroutine coro and returns the result.
This function cannot be called when another asyncio event loop is running in the same thread.</p>
<p>It always creates a new event loop and closes it at the end.</p></main></body></html>"""


def test_web_plain_top3_uses_snippets_and_passages(env, ollama, web, tmp_path: Path) -> None:
    docs = web.add_page("/3/library/asyncio-runner.html", DOCS_PAGE)
    web.set_search([{"title": "Runners — Python documentation", "url": docs,
                     "content": "Execute the coroutine and return the result."}])
    ollama.reply_with("asyncio.run() cannot be called when another event loop is running [1].")
    qa = write_qa(tmp_path / "qa.jsonl", [
        {"id": "snippet", "question": "what does asyncio.run return?", "answer_pages": ["x"],
         "must_contain": ["return the result"]},  # in the snippet, not in the answer
        {"id": "page", "question": "why can't I call asyncio.run in a running loop?", "answer_pages": ["x"],
         "must_contain": ["another asyncio event loop"]},  # only in the page text
    ])
    proc = run("eval", "answers", "--json", "--web", str(qa))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rows = {r["id"]: r for r in out["rows"]}
    assert rows["snippet"]["plain_top3_ok"] is True and rows["snippet"]["must_contain_ok"] is False
    assert rows["page"]["plain_top3_ok"] is True
    assert out["cited_answer_rate"] == 1.0 and out["valid_citation_rate"] == 1.0
    assert any(path.startswith("/3/library/") for _, path in web.requests)
