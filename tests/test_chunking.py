"""Chunking loaded documents: structure kept, code blocks whole, metadata carried, ids stable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from copilot.document import Document, Section
from copilot.index.chunking import Chunk, chunk_document, chunk_id
from copilot.index.loaders import Candidate, load, walk

SAVED = Path(__file__).parent / "data" / "saved"
FENCED = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?\n\1$", re.M | re.S)


def chunks_of(relpath: str, max_chars: int = 1200) -> list[Chunk]:
    path = SAVED / relpath
    out: list[Chunk] = []
    for doc in load(path):
        out.extend(chunk_document(doc, str(path), max_chars))
    return out


def test_markdown_chunks_carry_heading_path_and_keep_text_clean():
    chunks = chunks_of("notes/python-tips.md")
    cache = next(c for c in chunks if c.heading_path[-1] == "@cache")
    assert cache.heading == "functools › @cache"
    assert cache.text.startswith("`@cache` remembers every result.")  # no heading glued on
    assert "```python\nfrom functools import cache\n\n\n@cache\ndef fib(n):\n" in cache.text
    assert cache.source_path == str(SAVED / "notes" / "python-tips.md")
    assert cache.url == "https://docs.python.org/3/library/functools.html"
    assert cache.site == "docs.python.org"
    assert (cache.kind, cache.title, cache.doc_key, cache.role) == ("text", "functools", "", "")
    assert cache.score is None and cache.accepted is None
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_docs_page_chunks_by_api_entry():
    chunks = chunks_of("functools.html")
    assert chunks[1].heading_path[-1] == "@functools.cache(user_function)"
    assert all(c.kind == "docs" and c.url == "https://docs.python.org/3/library/functools.html" for c in chunks)


def test_stack_exchange_chunks_keep_votes_accepted_mark_and_question_id():
    chunks = chunks_of("unix.stackexchange.com/Posts.xml")
    first = [c for c in chunks if c.doc_key == "100"]
    assert [(c.role, c.score, c.accepted) for c in first] == [
        ("question", 25, None), ("answer", 3, False), ("answer", 2, True), ("answer", -1, False)]
    assert all(c.url == "https://unix.stackexchange.com/questions/100" and c.site == "unix.stackexchange.com"
               and c.kind == "so" for c in first)
    assert first[2].heading == "How to delete files with spaces in their names? › Answer (accepted, score 2)"
    assert {c.doc_key for c in chunks} == {"100", "102", "105"}
    for key in ("100", "102", "105"):  # positions count within each question
        assert [c.position for c in chunks if c.doc_key == key] == list(range(sum(c.doc_key == key for c in chunks)))


def test_mhtml_stack_overflow_chunks():
    chunks = chunks_of("so-question.mhtml")
    assert [(c.role, c.score, c.accepted) for c in chunks] == [
        ("question", 88, None), ("answer", 120, True), ("answer", 7, False)]
    assert chunks[0].url.startswith("https://stackoverflow.com/questions/4242/")


@pytest.mark.parametrize("max_chars", [300, 1200])
def test_code_blocks_survive_loader_and_chunker_with_their_line_breaks(max_chars: int):
    """Every multi-line code block of every fixture reaches exactly one chunk whole, unless it
    alone is longer than the limit."""
    checked = 0
    for item in walk([SAVED]):
        assert isinstance(item, Candidate)
        for doc in load(item.path):
            chunks = chunk_document(doc, str(item.path), max_chars)
            for section in doc.sections:
                for block in FENCED.finditer(section.text):
                    code = block.group(0)
                    if "\n" not in code.strip().split("\n", 1)[1].rsplit("\n", 1)[0] or len(code) > max_chars:
                        continue
                    holders = [c for c in chunks if code in c.text]
                    assert len(holders) == 1, (item.path.name, code)
                    assert holders[0].heading_path == section.heading_path
                    checked += 1
            for chunk in chunks:  # fences balanced in every chunk
                assert len(re.findall(r"^(?:```|~~~)", chunk.text, re.M)) % 2 == 0, chunk.text
    assert checked >= 12


def test_chunks_stay_within_one_section_and_the_limit():
    doc = Document(title="Guide", kind="docs", sections=[
        Section(["Guide", "Install"], "\n\n".join(f"Paragraph {i} " + "words " * 30 for i in range(8))),
        Section(["Guide", "Use"], "Short."),
    ])
    chunks = chunk_document(doc, "guide.html", max_chars=400)
    assert all(len(c.text) <= 400 for c in chunks)
    assert [c.heading_path[-1] for c in chunks].count("Use") == 1
    assert chunks[-1].text == "Short."
    assert all(c.doc_key == "" and c.url is None and c.site == "" for c in chunks)


def test_a_code_block_longer_than_the_limit_is_split_on_lines_and_refenced():
    code = "\n".join(f"    line_{i:03} = compute({i})" for i in range(60))
    doc = Document(title="Big", kind="text", sections=[
        Section(["Big"], "Intro paragraph.\n\n```python\n" + code + "\n```\n\nAfter.")])
    chunks = chunk_document(doc, "big.md", max_chars=500)
    code_chunks = [c for c in chunks if "```" in c.text]
    assert len(code_chunks) > 1
    lines: list[str] = []
    for c in code_chunks:
        (block,) = [m.group(0) for m in FENCED.finditer(c.text)]
        assert block.startswith("```python\n") and block.endswith("\n```")
        lines += block.split("\n")[1:-1]
    assert [x for x in lines if x.strip()] == code.split("\n")


def test_doc_key_from_the_document_or_given():
    doc = Document(title="t", kind="text", sections=[Section(["t"], "body")])
    assert chunk_document(doc, "a.txt")[0].doc_key == ""
    assert chunk_document(doc, "a.txt", doc_key="42")[0].doc_key == "42"
    assert chunk_document(Document(title="t", kind="text"), "a.txt") == []


def test_chunk_ids_are_deterministic_and_distinct():
    a = chunk_id("ab" * 32, "", 0)
    assert a == chunk_id("ab" * 32, "", 0)
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    others = {chunk_id("ab" * 32, "", 1), chunk_id("cd" * 32, "", 0), chunk_id("ab" * 32, "7", 0),
              chunk_id("ab" * 32, "0", 0)}
    assert a not in others and len(others) == 4
    # no ambiguity from joining fields
    assert chunk_id("x", "1", 23) != chunk_id("x", "12", 3)
