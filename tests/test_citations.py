import pytest

from copilot.citations import (
    MAX_RANGE,
    CitationStream,
    check_citations,
    parse_citations,
    uncited_answer,
)
from copilot.events import Source


def numbers(text, sources=None):
    return [n for n, _, _, _ in parse_citations(text, sources)]


def raws(text, sources=None):
    return [raw for _, _, _, raw in parse_citations(text, sources)]


def src(n, title="Title", url="https://example.org/page", site="example.org", path=None):
    return Source(n=n, title=title, url=url, kind="web", text="passage", path=path, site=site)


# --- marker forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It returns a list [1].", [1]),
        ("Both agree [1, 3].", [1, 3]),
        ("Both agree [1,3].", [1, 3]),
        ("Both agree [1; 3] and [2 and 4].", [1, 3, 2, 4]),
        ("Adjacent [1][2] markers.", [1, 2]),
        ("Adjacent [1][2][3].", [1, 2, 3]),
        ("A range [1-3].", [1, 2, 3]),
        ("An en dash range [2–4].", [2, 3, 4]),
        ("A reversed range [3-1].", [1, 2, 3]),
        ("Word form [Source 1] and [source 2, 3].", [1, 2, 3]),
        ("Plural [Sources: 1-2] and [ref 4].", [1, 2, 4]),
        ("Mixed words [Source 1, Source 2].", [1, 2]),
        ("Paren form (Source 1) and (sources 2, 3).", [1, 2, 3]),
        ("Lenticular 【1】 and 【2†source】 and 【4:0†source】.", [1, 2, 4]),
        ("Footnote style[^1] and [^2].", [1, 2]),
        ("Dagger [1†source] and [3†L10-L20].", [1, 3]),
        ("Start of text:\n[1] Use `asyncio.run()` to start the loop.", [1]),
        ("Bold **[2]** and after a period.[3]", [2, 3]),
        ("After inline code `x`[1].", [1]),
        ("Duplicates in one group [2, 2] count once.", [2]),
    ],
)
def test_marker_forms(text, expected):
    assert numbers(text) == expected


def test_group_entries_share_the_group_span_and_raw():
    text = "See [1, 3] here."
    out = parse_citations(text)
    assert out == [(1, 4, 10, "[1, 3]"), (3, 4, 10, "[1, 3]")]
    assert text[4:10] == "[1, 3]"


def test_spans_point_at_the_markers_in_answer_order():
    text = "First [2]. Then 【1】. Then (Source 3)."
    out = parse_citations(text)
    assert [n for n, *_ in out] == [2, 1, 3]
    for _, start, end, raw in out:
        assert text[start:end] == raw


def test_silly_range_is_capped_to_its_ends():
    assert numbers("Everything [1-999].") == [1, 999]
    wide = f"[1-{MAX_RANGE + 1}]"
    assert numbers(f"Wide {wide}.") == [1, MAX_RANGE + 1]
    assert numbers(f"Narrow [1-{MAX_RANGE}].") == list(range(1, MAX_RANGE + 1))


def test_bare_parenthesised_numbers_and_zero_are_not_citations():
    assert numbers("Step (1) then (2).") == []
    assert numbers("An index [0] and a list [0, 1, 2].") == []
    assert numbers("Four digits [2024] are a year.") == []


# --- code and indexing ------------------------------------------------------------------------


def test_fenced_code_is_ignored():
    text = "Do this [1]:\n\n```python\nx = [2]\ny = a [3]\n```\n\nThen [4].\n"
    assert numbers(text) == [1, 4]


def test_tilde_fence_and_indented_fence_are_ignored():
    text = "A [1].\n~~~\n[2]\n~~~\n1. Step:\n   ```\n   [3]\n   ```\nB [4]."
    assert numbers(text) == [1, 4]


def test_unterminated_fence_hides_the_rest_while_streaming():
    text = "Use this [1]:\n```python\nitems = [2, 3]\nprint(items[0]) [4]"
    assert numbers(text) == [1]


def test_longer_closing_fence_needed_for_longer_opening():
    text = "````\n```\n[1]\n```\n[2]\n````\nout [3]"
    assert numbers(text) == [3]


def test_inline_code_is_ignored():
    assert numbers("Call `sys.argv [1]` or ``a [2] `b` c`` then [3].") == [3]


def test_unmatched_backtick_is_literal():
    assert numbers("A lone ` backtick [1].\n\nNext [2].") == [1, 2]


@pytest.mark.parametrize(
    "text",
    [
        "Use sys.argv[1] for the first argument.",
        "Take x[0] and a[1:2] and d[\"k\"] and arr[1, 2].",
        "Call f()[1] or x[0][1] or m[1][2].",
        "A reference link [docs][1] is not a citation.",
        "An escaped \\[1] bracket.",
        "Version 3.11[1] hugs a digit.",
    ],
)
def test_indexing_is_not_a_citation(text):
    assert numbers(text) == []


def test_unambiguous_forms_are_citations_even_after_a_word():
    assert numbers("word[^1] word[Source 2] word[3†source] word【4】") == [1, 2, 3, 4]


def test_markdown_links_and_definitions_are_not_citations():
    text = "See [1](https://example.org) and [2].\n[3]: https://example.org/def\n[^4]: a note"
    assert numbers(text) == [2]


def test_urls_are_masked():
    assert numbers("Read https://example.org/a/[1]/b then [2].") == [2]
    # a URL inside a code block does not end the code block's mask
    assert numbers("```\n# see https://example.org/x\nitems = [1, 2]\n```\nok [3]") == [3]


# --- echoed source headers --------------------------------------------------------------------


def test_echoed_path_and_url_headers_are_ignored():
    text = (
        "[1] library/typing.html\n"
        "[2] Title — https://docs.python.org/3/library/typing.html\n"
        "[3] https://example.org/x\n"
        "- [4] notes.md\n"
        "The answer is `TypeVar` [1].\n"
    )
    assert numbers(text) == [1]


def test_echoed_title_header_with_sources():
    sources = [src(1, title="typing — Support for type hints", site="docs.python.org"),
               src(2, title="How do I sort a dict by value?", site="stackoverflow.com")]
    text = (
        "Sources:\n"
        "1. [1] typing — Support for type hints\n"
        "2. [2] How do I sort a dict by value?\n"
        "[2] docs.python.org\n"
        "Use `sorted(d.items(), key=...)` [2].\n"
    )
    assert numbers(text, sources) == [2]
    # without the sources the title lines look like prose, except a header with its site
    assert numbers("[1] typing — Support for type hints (docs.python.org)\nok [1].") == [1]


def test_appended_source_list_is_ignored():
    text = (
        "Delete the local branch with `git branch -d name` [1].\n\n"
        "**Sources:**\n"
        "[1] How do I delete a Git branch? (stackoverflow.com)\n"
        "[2] Deleting Branches\n\n"
        "- [3] Another heading\n"
    )
    assert numbers(text) == [1]
    # prose after the list ends it
    text2 = "### References\n[1] Some page\n\nBack to prose, as shown [2].\n[3] line start claim."
    assert numbers(text2) == [2, 3]
    # "Source: [1]" after a paragraph is an attribution, not a list heading
    assert numbers("Use `-D` to force it.\nSource: [1]") == [1]


def test_prompt_style_header_without_sources():
    assert numbers("[1] typing — Support for type hints (docs.python.org)") == []
    assert numbers("[3] Some Page Title — stackoverflow.com") == []


def test_prose_after_a_line_start_marker_is_a_citation():
    sources = [src(1, title="typing — Support for type hints")]
    assert numbers("[1] You can use `TypeVar` for generics.", sources) == [1]
    assert numbers("[1] The typing module supports generics.", sources) == [1]


def test_file_name_followed_by_prose_is_a_citation():
    assert numbers("As shown [1] main.py is the entry point.") == [1]
    assert numbers("As shown [1] main.py") == []


# --- check_citations / uncited ------------------------------------------------------------------


def test_check_citations_flags_invalid_and_keeps_them():
    sources = [src(1), src(2)]
    text = "A [1]. B [3]. C [2, 7]. D [1-999]."
    cites = check_citations(text, sources)
    assert [(c.n, c.valid) for c in cites] == [
        (1, True), (3, False), (2, True), (7, False), (1, True), (999, False)]
    assert all(text[c.start:c.end] == c.raw for c in cites)


def test_check_citations_with_no_sources_marks_all_invalid():
    cites = check_citations("It is so [1].", [])
    assert [(c.n, c.valid) for c in cites] == [(1, False)]


def test_uncited_answer():
    assert uncited_answer("No markers here.")
    assert uncited_answer("Only code:\n```\nx = a[1]\n```\nand `b[2]` and argv[1].")
    assert uncited_answer("[1] library/typing.html\n")
    assert not uncited_answer("A claim [1].")


# --- streaming --------------------------------------------------------------------------------


def feed_chars(stream, text):
    seen = []
    for i, ch in enumerate(text):
        for c in stream.feed(ch):
            seen.append((i + 1, c))
    return seen


def test_stream_yields_each_citation_once_after_it_settles():
    sources = [src(1), src(2)]
    text = "Use it [1]. Then [2, 3] too.\n"
    stream = CitationStream(sources)
    seen = feed_chars(stream, text)
    assert [(c.n, c.valid) for _, c in seen] == [(1, True), (2, True), (3, False)]
    # [1] settles on the "." right after it, not before
    assert seen[0][0] == text.index("[1]") + 4
    assert stream.finish() == []
    assert [(c.n, c.start, c.end) for c in stream.citations] == [
        (n, s, e) for n, s, e, _ in parse_citations(text)]


def test_stream_waits_for_link_or_header_to_be_decided():
    stream = CitationStream([src(1)])
    assert stream.feed("see [1]") == []  # could still become [1](url)
    assert stream.feed("(https://example.org)") == []
    assert stream.feed(" and\n[1]") == []
    assert stream.feed(" library/typing") == []  # line start: wait for the whole line
    assert stream.feed(".html\n") == []
    assert [c.n for c in stream.feed("ok [1].")] == [1]


def test_stream_partial_fence_never_yields_code_markers():
    text = "Try [1]:\n```python\nx = [2]\nprint(x[0]) [3]\n"
    stream = CitationStream([src(1), src(2), src(3)])
    seen = feed_chars(stream, text)
    assert [c.n for _, c in seen] == [1]
    assert stream.finish() == []
    assert stream.text == text


def test_stream_open_inline_code_waits_until_closed_or_paragraph_ends():
    stream = CitationStream([src(1), src(2)])
    assert stream.feed("Run `cmd [1]") == []
    assert stream.feed(" now") == []
    assert stream.feed("` then [2].") and stream.citations[-1].n == 2
    assert [c.n for c in stream.citations] == [2]
    stream2 = CitationStream([src(1)])
    assert stream2.feed("A stray ` then [1] x") == []
    assert [c.n for c in stream2.feed("\n\nnew paragraph")] == [1]


def test_stream_finish_settles_a_trailing_marker():
    stream = CitationStream([src(1)])
    assert stream.feed("The end [1]") == []
    assert [c.n for c in stream.finish()] == [1]
    assert stream.finish() == []
