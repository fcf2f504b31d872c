"""Page extraction: code keeps its lines, answers keep their order and votes, junk stays out.

Fixtures in tests/data/html/ are written for these tests (they mimic the markup of Sphinx,
MkDocs, Stack Overflow and a blog; no real page is copied).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from lxml import etree

from copilot.document import Document
from copilot.web.extract import decode_body, extract_html, extract_text

DATA = Path(__file__).parent / "data" / "html"
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def all_text(doc: Document) -> str:
    """Everything a Document carries as text, for leak and hygiene checks."""
    parts = [doc.title, doc.date or "", doc.canonical_url or "", doc.site]
    for s in doc.sections:
        parts += s.heading_path
        parts.append(s.text)
    return "\n".join(parts)


def section(doc: Document, last_heading: str):
    found = [s for s in doc.sections if s.heading_path and s.heading_path[-1] == last_heading]
    assert found, f"no section {last_heading!r} in {[s.heading_path for s in doc.sections]}"
    return found[0]


def assert_clean(doc: Document) -> None:
    text = all_text(doc)
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    assert "\\_" not in text


# --- Sphinx --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphinx() -> Document:
    return extract_html(load("sphinx_api.html"), url="file:///saved/frobnicate.html")


TITLE = "frobnicate — Tools for frobnicating widgets"


def test_sphinx_page_is_docs_with_metadata(sphinx):
    assert sphinx.kind == "docs"
    assert sphinx.title == TITLE
    assert sphinx.canonical_url == "https://docs.widgetry.example/2.1/library/frobnicate.html"
    assert sphinx.site == "docs.widgetry.example"
    assert sphinx.url == "file:///saved/frobnicate.html"


def test_sphinx_api_entries_become_heading_paths(sphinx):
    paths = [s.heading_path for s in sphinx.sections]
    assert [TITLE, "frobnicate.run(widget, *, capture_output=False)"] in paths
    assert [TITLE, "class frobnicate.Result"] in paths
    assert [TITLE, "class frobnicate.Result", "retry(times=3)"] in paths
    assert [TITLE, "Options"] in paths
    # page order: run() before Result before Options
    flat = [p[-1] for p in paths]
    assert flat.index("frobnicate.run(widget, *, capture_output=False)") \
        < flat.index("class frobnicate.Result") < flat.index("Options")


def test_sphinx_code_inside_dl_dd_keeps_its_lines(sphinx):
    run = section(sphinx, "frobnicate.run(widget, *, capture_output=False)")
    expected = (
        "```python\n"
        "import frobnicate\n"
        "\n"
        "def main():\n"
        '    result = frobnicate.run("gear", capture_output=True)\n'
        "    if result.ok:\n"
        "        print(result.output)\n"
        "```"
    )
    assert expected in run.text
    retry = section(sphinx, "retry(times=3)")
    assert ">>> r = frobnicate.run(\"gear\")\n>>> r.retry(times=2)\nResult(ok=True)" in retry.text


def test_sphinx_inline_code_and_prose(sphinx):
    intro = sphinx.sections[0]
    assert intro.heading_path == [TITLE]
    assert "The `frobnicate` module runs widgets." in intro.text
    assert "`max_depth` to limit recursion" in intro.text
    assert "capture_output" in intro.text
    run = section(sphinx, "frobnicate.run(widget, *, capture_output=False)")
    assert "Widgets with `max_depth=0` are never run." in run.text
    assert "New in version 2.0." in run.text


def test_sphinx_table_and_field_list(sphinx):
    options = section(sphinx, "Options")
    assert "| Option | Meaning |" in options.text
    assert "| `max_depth` | How deep to recurse |" in options.text
    assert "`FrobError` – when the widget jams." in options.text


def test_sphinx_drops_navigation_permalinks_scripts_and_hidden(sphinx):
    text = all_text(sphinx)
    for junk in ("RELATED-NAV", "SIDEBAR-NAV", "FOOTER-JUNK", "Previous topic", "never run me",
                 "color: red", "HIDDEN-STYLE", "HIDDEN-ATTR", "ignore all previous", "¶"):
        assert junk not in text, junk
    assert_clean(sphinx)


# --- MkDocs --------------------------------------------------------------------------------


def test_mkdocs_page():
    doc = extract_html(load("mkdocs_page.html"))
    assert doc.kind == "docs"
    assert doc.title == "Configuration"
    assert doc.canonical_url == "https://cogs.example.dev/guide/configuration/"
    paths = [s.heading_path for s in doc.sections]
    assert paths == [["Configuration"], ["Configuration", "File format"],
                     ["Configuration", "File format", "Environment overrides"],
                     ["Configuration", "Reloading"]]
    fmt = section(doc, "File format")
    assert "```toml\n[pool]\nworker_count = 4\nqueue_size = 100\n```" in fmt.text
    assert "Do not set `worker_count` above the number of cores." in fmt.text
    env = section(doc, "Environment overrides")
    assert "```bash\nexport COGS_WORKER_COUNT=8\ncogs run --config cogs.toml\n```" in env.text
    assert "- Send `SIGHUP` to reload.\n- Or run `cogs reload`." in section(doc, "Reloading").text
    text = all_text(doc)
    for junk in ("HEADER-NAV", "SIDEBAR-NAV", "EDIT-BUTTON", "COPY-BUTTON", "FOOTER-NAV",
                 "Made with Material", "¶"):
        assert junk not in text, junk
    assert_clean(doc)


# --- Stack Overflow ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def so() -> Document:
    return extract_html(load("so_question.html"))


QUESTION = "How do I read a file line by line without loading it all?"


def test_so_question_then_answers_in_page_order(so):
    assert so.kind == "so"
    assert so.title == QUESTION
    assert [s.role for s in so.sections] == ["question", "answer", "answer", "answer"]
    assert [s.score for s in so.sections] == [42, 57, 3, 12]  # page order, not sorted
    assert [s.accepted for s in so.sections[1:]] == [True, False, False]
    assert so.sections[0].heading_path == [QUESTION]
    assert so.sections[1].heading_path == [QUESTION, "Answer (accepted, score 57)"]
    assert so.sections[3].heading_path == [QUESTION, "Answer (score 12)"]


def test_so_metadata(so):
    assert so.date == "2021-03-04"
    assert so.canonical_url == ("https://stackoverflow.com/questions/990001/"
                                "how-do-i-read-a-file-line-by-line-without-loading-it-all")
    assert so.site == "stackoverflow.com"


def test_so_code_blocks_and_inline_code(so):
    question, accepted, chunks, shell = so.sections
    assert ("```python\nwith open(\"big.log\") as fh:\n    data = fh.read()\n"
            "for line in data.splitlines():\n    handle(line)\n```") in question.text
    assert "I tried `fh.read_lines()` but" in question.text
    assert "My log file is 40 GB." in question.text  # &nbsp; became a plain space
    assert ('    for line in fh:\n        handle(line.rstrip("\\n"))\n```') in accepted.text
    assert "def chunks(fh, size=1 << 20):\n    while True:" in chunks.text
    assert "> Note: **binary mode** avoids decoding costs." in chunks.text
    assert "```\n$ split -l 1000000 big.log part_\n$ ls part_*\npart_aa  part_ab  part_ac\n```" \
        in shell.text
    assert "1. split the file\n2. process each `part_*` file" in shell.text


def test_so_drops_comments_and_page_chrome(so):
    text = all_text(so)
    for junk in ("QUESTION-COMMENT", "ANSWER-COMMENT", "FORM-TEXT", "SIDEBAR-RELATED",
                 "TOPBAR-NAV", "LEFT-NAV", "FOOTER-LINKS", "ACCEPTED-INDICATOR-HIDDEN",
                 "StackExchange.init", "Your Answer", "asker", "UP", "DOWN"):
        assert junk not in text, junk
    assert_clean(so)


def test_so_detected_from_dom_without_url_or_canonical():
    html = load("so_question.html").decode()
    html = re.sub(r'<link rel="canonical"[^>]*>', "", html)
    html = re.sub(r'<meta property="og:url"[^>]*>', "", html)
    doc = extract_html(html)  # a saved copy: no URL, no canonical link
    assert doc.kind == "so"
    assert doc.canonical_url is None and doc.site == ""
    assert [s.score for s in doc.sections] == [42, 57, 3, 12]


def test_so_host_without_question_is_not_so():
    html = ("<html><head><title>Tags - Stack Overflow</title></head><body><main><h1>Tags</h1>"
            + "<p>A tag is a keyword or label that categorizes your question. " * 20
            + "</p></main></body></html>")
    doc = extract_html(html, url="https://stackoverflow.com/tags")
    assert doc.kind == "article"
    assert doc.site == "stackoverflow.com"


def test_element_named_question_on_other_site_is_not_so():
    html = ("<html><body><div id='question'><h1>Quiz</h1><p>What is 2 + 2? "
            + "Think about it carefully before answering the question. " * 10
            + "</p></div></body></html>")
    assert extract_html(html, url="https://quiz.example/q/1").kind == "article"


# --- Generic article -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def blog() -> Document:
    return extract_html(load("blog_article.html"))


BLOG = "Retrying HTTP calls with exponential backoff"


def test_blog_metadata(blog):
    assert blog.kind == "article"
    assert blog.title == BLOG
    assert blog.date == "2024-03-05"
    assert blog.canonical_url == "https://notes.ada.example/2024/03/retry-backoff/"
    assert blog.site == "notes.ada.example"


def test_blog_sections_and_code(blog):
    assert [s.heading_path for s in blog.sections] == [
        [BLOG], [BLOG, "The helper"], [BLOG, "Choosing the parameters"]]
    helper = section(blog, "The helper").text
    # blank lines inside code survive, including the two before a top-level def
    assert ("```python\nimport random\nimport time\n\nimport httpx\n\n\n"
            "def get_with_retry(url, max_attempts=5, base_delay=0.5):\n"
            "    for attempt in range(max_attempts):\n        try:\n") in helper
    assert "            time.sleep(base_delay * 2 ** attempt + random.random())\n```" in helper
    intro = blog.sections[0].text
    assert "`max_attempts` and `base_delay`" in intro
    params = section(blog, "Choosing the parameters").text
    assert "- Do not retry on 4xx responses; they will fail again." in params


def test_blog_drops_navigation_and_footer(blog):
    text = all_text(blog)
    for junk in ("NAV-MENU", "SIDEBAR-POPULAR", "FOOTER-COPYRIGHT", "COOKIE-BANNER",
                 "SCRIPT-JSON", "Archive"):
        assert junk not in text, junk
    assert_clean(blog)


def test_generic_restores_code_lines_flattened_by_trafilatura(monkeypatch):
    """trafilatura sometimes turns a multi-line <pre> into one prose line (a <quote> or <p>);
    the original lines come back from the page's own DOM."""
    import trafilatura

    flattened = etree.fromstring(
        "<body><head rend='h2'>Usage</head><p>Load the settings:</p>"
        "<quote>from parselib import load settings = load(\"app.conf\") "
        "for key, value in settings.items(): print(key, value)</quote>"
        "<p>Then use them.</p></body>")

    def fake_bare_extraction(*args, **kwargs):
        return SimpleNamespace(body=flattened, title="parselib", date=None)

    monkeypatch.setattr(trafilatura, "bare_extraction", fake_bare_extraction)
    html = ("<html><body><h2>Usage</h2><p>Load the settings:</p><dl><dd><pre>"
            "from parselib import load\n\nsettings = load(\"app.conf\")\n"
            "for key, value in settings.items():\n    print(key, value)\n"
            "</pre></dd></dl><p>Then use them.</p></body></html>")
    doc = extract_html(html)
    assert doc.kind == "article"
    usage = section(doc, "Usage").text
    assert ("```\nfrom parselib import load\n\nsettings = load(\"app.conf\")\n"
            "for key, value in settings.items():\n    print(key, value)\n```") in usage
    assert "Load the settings:" in usage and "Then use them." in usage


TINY = ("<html><head><title>Tiny</title></head><body><nav>NAV-LINKS</nav><main><h1>Tiny</h1>"
        "<pre>a = 1\nb = 2</pre></main><footer>FOOT</footer></body></html>")


def test_generic_tiny_page_keeps_code_lines():
    # trafilatura turns this <pre> into a one-line <quote>; the lines come back from the DOM
    doc = extract_html(TINY)
    assert doc.title == "Tiny"
    assert "```\na = 1\nb = 2\n```" in doc.markdown
    assert "NAV-LINKS" not in doc.markdown and "FOOT" not in doc.markdown


def test_generic_falls_back_to_own_rendering_when_trafilatura_finds_nothing(monkeypatch):
    import trafilatura

    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *a, **k: None)
    doc = extract_html(TINY)
    assert doc.kind == "article"
    assert [s.heading_path for s in doc.sections] == [["Tiny"]]
    assert doc.sections[0].text == "```\na = 1\nb = 2\n```"
    assert "NAV-LINKS" not in doc.markdown and "FOOT" not in doc.markdown


def test_relative_canonical_is_resolved_and_non_http_ignored():
    body = "<body><article><h1>T</h1>" + "<p>Words that make an article. " * 30 + "</p>"
    rel = f'<html><head><link rel="canonical" href="/docs/page"></head>{body}</article></body>'
    doc = extract_html(rel, url="https://example.org/a/b?q=1")
    assert doc.canonical_url == "https://example.org/docs/page"
    assert doc.site == "example.org"
    local = f'<html><head><link rel="canonical" href="file:///etc/x.html"></head>{body}</body>'
    doc = extract_html(local)
    assert doc.canonical_url is None and doc.site == ""


def test_date_from_time_element_and_itemprop():
    words = "<p>" + "Some words for the article body to be long enough. " * 20 + "</p>"
    html = f"<html><body><article><h1>A</h1><time datetime='2022-11-30T08:00'>x</time>{words}"
    assert extract_html(html + "</article></body></html>").date == "2022-11-30"
    html = (f"<html><body><article><h1>A</h1><span itemprop='datePublished' "
            f"content='2020-02-29'></span>{words}</article></body></html>")
    assert extract_html(html).date == "2020-02-29"


# --- Hostile and broken input ----------------------------------------------------------------


def test_control_characters_are_stripped_everywhere():
    html = ("<html><head><title>T\x1bitle\x07</title></head><body><article>"
            "<h1>Head\x9bline</h1><p>Red: \x1b[31mRED\x1b[0m &#27;[2J bell\x07 "
            "nul\x00 \u202eevil\u202c and ok tab\there. "
            + "Filler words so the article is long enough to extract. " * 10
            + "</p><p>Unclosed \x1b]0;window title and the rest stays.</p>"
            + "<pre>code\x1b[1m line\nsecond\x08 line</pre></article></body></html>")
    doc = extract_html(html)
    assert_clean(doc)
    text = all_text(doc)
    # Whole sequences go (their parameters would be noise on screen and in the prompt); a stray
    # or unclosed ESC goes alone, taking nothing after it.
    assert "Red: RED  bell" in text and "[31m" not in text and "[2J" not in text
    assert "Unclosed ]0;window title and the rest stays." in text
    assert "Headine" in text  # \x9bl is an 8-bit CSI (final byte "l")
    assert "code line\nsecond line" in text


def test_empty_and_whitespace_input():
    for value in ("", "   \n\t ", b"", b"\x00\x00"):
        doc = extract_html(value, url="https://example.org/x")
        assert doc.sections == []
        assert doc.site == "example.org"


def test_binary_garbage_does_not_raise():
    garbage = bytes(range(256)) * 64 + b"\xff\xfe\x00<html><p>\x00\x1b"
    doc = extract_html(garbage)
    assert_clean(doc)


def test_malformed_html():
    doc = extract_html(load("malformed.html"))
    text = doc.markdown
    assert "First paragraph with **bold that never closes" in text
    assert "Second paragraph" in text
    assert "```\nline one\n  line two\n```" in text
    assert_clean(doc)


def test_xml_declaration_in_str_input():
    html = ('<?xml version="1.0" encoding="utf-8"?>\n<html><body><article><h1>X</h1>'
            + "<p>Enough words to be an article worth extracting here. " * 10
            + "</p></article></body></html>")
    doc = extract_html(html)
    assert "Enough words" in doc.markdown


def test_wrong_charset_bytes():
    text = ("Le café était très chaud, la crème brûlée délicieuse et le garçon très aimable. "
            "Nous reviendrons à Noël pour goûter les crêpes. ")
    html = f"<html><body><article><h1>Café</h1><p>{text * 4}</p></article></body></html>"
    doc = extract_html(html.encode("cp1252"))  # no charset anywhere, not UTF-8
    assert doc.title == "Café"
    assert "la crème brûlée délicieuse" in doc.markdown
    assert "\ufffd" not in doc.markdown


def test_huge_single_line():
    words = "lorem_ipsum dolor " * 150_000  # ~2.7 MB on one line
    html = f"<html><body><article><h1>Big</h1><p>{words}</p><pre>x = 1\ny = 2</pre></article>"
    doc = extract_html(html)
    assert doc.markdown.count("lorem_ipsum") == 150_000
    assert "```\nx = 1\ny = 2\n```" in doc.markdown
    assert "\\_" not in doc.markdown


def test_deeply_nested_markup():
    words = "deep text " + "more words in the deep paragraph " * 30
    html = "<html><body><article>" + "<div>" * 1200 + f"<p>{words}</p>" + "</div>" * 1200
    assert "deep text more words" in extract_html(html).markdown
    html = "<html><body>" + "<div>" * 5000 + "<p>deeper text</p>" + "</div>" * 5000
    assert isinstance(extract_html(html), Document)  # past libxml2's limit: no crash


def test_deeply_nested_stack_overflow_post():
    html = load("so_question.html").decode().replace(
        "<p>If you need chunks", "<div>" * 1500 + "<p>nested words</p>" + "</div>" * 1500
        + "<p>If you need chunks")
    doc = extract_html(html)
    assert doc.kind == "so"
    assert "nested words" in doc.sections[2].text


def test_threads_extract_independently():
    pages = [load("sphinx_api.html"), load("so_question.html"), load("mkdocs_page.html")] * 4
    expected = [extract_html(p).markdown for p in pages]
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = extract_html(pages[i]).markdown

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(pages))] == expected


def test_docs_and_so_do_not_import_trafilatura():
    code = (
        "import sys; from pathlib import Path; from copilot.web.extract import extract_html\n"
        f"d = Path({str(DATA)!r})\n"
        "for n in ('sphinx_api.html', 'mkdocs_page.html', 'so_question.html'):\n"
        "    extract_html((d / n).read_bytes())\n"
        "print('trafilatura' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, env={"PYTHONPATH": str(root)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --- decode_body -----------------------------------------------------------------------------


def test_decode_body_header_charset():
    assert decode_body("Grüße".encode("cp1252"), "text/html; charset=windows-1252") == "Grüße"
    assert decode_body("Привет".encode("koi8-r"), 'text/html; charset="KOI8-R"') == "Привет"


def test_decode_body_meta_charset():
    body = '<html><head><meta charset="windows-1252"></head><p>Grüße</p>'.encode("cp1252")
    assert "Grüße" in decode_body(body, "text/html")
    body = ('<meta http-equiv="Content-Type" content="text/html; charset=shift_jis">'
            "<p>日本語</p>").encode("shift_jis")
    assert "日本語" in decode_body(body, None)


def test_decode_body_valid_utf8_beats_a_wrong_latin1_label():
    assert decode_body("café".encode(), "text/html; charset=ISO-8859-1") == "café"


def test_decode_body_bom_and_cut_utf8():
    assert decode_body(b"\xef\xbb\xbfhi", None) == "hi"
    assert decode_body("hé".encode("utf-16"), None) == "hé"
    cut = "naïve café".encode()[:-1]  # cut inside the final "é"
    assert decode_body(cut, "text/html; charset=utf-8") == "naïve caf"


def test_decode_body_never_raises():
    assert decode_body(b"", None) == ""
    assert isinstance(decode_body(bytes(range(256)) * 10, "text/html; charset=base64"), str)
    assert isinstance(decode_body(b"\xff" * 100, "text/html; charset=no-such-codec"), str)
    assert isinstance(decode_body(b"abc", "charset=" + "x" * 5000), str)


# --- extract_text ----------------------------------------------------------------------------


MARKDOWN = """# Deploying

Intro with `snake_case` words.

## Build

```bash
# this is a comment, not a heading
make build
```

## Run

~~~
## still code
~~~

### Flags

Use --fast.
"""


def test_extract_text_markdown_sections_and_fences():
    doc = extract_text(MARKDOWN, url="https://example.org/README.md")
    assert doc.kind == "text"
    assert doc.title == "Deploying"
    assert doc.site == "example.org"
    assert [s.heading_path for s in doc.sections] == [
        ["Deploying"], ["Deploying", "Build"], ["Deploying", "Run"],
        ["Deploying", "Run", "Flags"]]
    assert section(doc, "Build").text == (
        "```bash\n# this is a comment, not a heading\nmake build\n```")
    assert section(doc, "Run").text == "~~~\n## still code\n~~~"
    assert "`snake_case`" in doc.sections[0].text


def test_extract_text_plain():
    doc = extract_text("first line\r\nsecond\x1b[0m line\r\n", title=None)
    assert doc.title == "first line"
    assert len(doc.sections) == 1
    assert doc.sections[0].text == "first line\nsecond line"
    doc = extract_text("body", title="Given\x07 title")
    assert doc.title == "Given title"
    assert extract_text("").sections == []


def test_hidden_wrapper_holding_the_whole_page_is_kept():
    words = "Real article words that a reader sees once scripts run. " * 60
    html = (f"<html><body style='display:none'><div aria-hidden='true'><article><h1>Shown</h1>"
            f"<p>{words}</p><p style='display:none'>SMALL-HIDDEN</p></article></div>"
            f"</body></html>")
    doc = extract_html(html)
    assert "Real article words" in doc.markdown
    assert "SMALL-HIDDEN" not in doc.markdown
