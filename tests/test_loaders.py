"""Loaders for folders of saved pages: what is walked, what is skipped and why, what is read.

The fixture folder tests/data/saved/ holds pages we wrote for these tests in the shapes people
save them: a browser "Save Page As" page with its `_files/` folder, a SingleFile page, an MHTML
snapshot (quoted-printable), Markdown, reStructuredText, text and a small Stack Exchange dump.
Bad inputs (binary, empty, odd charsets, symlinks, gzip, truncated XML …) are made at test time
in tmp_path, so the repository holds no odd files.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from copilot.index.loaders import (
    Candidate,
    LoadedDocument,
    SkipFile,
    Skipped,
    is_supported,
    load,
    rst_to_markdown,
    walk,
)

SAVED = Path(__file__).parent / "data" / "saved"

GOOD_FILES = [
    "functools.html",
    "malformed.html",
    "singlefile-blog.html",
    "so-question.mhtml",
    "notes/asyncio-guide.rst",
    "notes/python-tips.md",
    "notes/todo.txt",
    "unix.stackexchange.com/Posts.xml",
]


def docs_of(path: Path, **kw) -> list[LoadedDocument]:
    return list(load(path, **kw))


def one(path: Path, **kw) -> LoadedDocument:
    docs = docs_of(path, **kw)
    assert len(docs) == 1
    return docs[0]


def by_heading(doc, last: str):
    found = [s for s in doc.sections if s.heading_path and s.heading_path[-1] == last]
    assert found, [s.heading_path for s in doc.sections]
    return found[0]


def reason_of(path: Path, **kw) -> str:
    with pytest.raises(SkipFile) as info:
        list(load(path, **kw))
    return info.value.reason


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A writable copy of the fixture folder."""
    dest = tmp_path / "saved"
    shutil.copytree(SAVED, dest)
    return dest


# --- walking the fixture folder ----------------------------------------------------------------


def test_walk_lists_every_kind_and_skips_the_companion_folder():
    items = list(walk([SAVED]))
    assert all(isinstance(i, Candidate) for i in items), [i for i in items if isinstance(i, Skipped)]
    rel = [i.path.relative_to(SAVED).as_posix() for i in items]
    assert rel == GOOD_FILES  # files of a folder by name, then its subfolders by name
    assert not any("functools_files" in r for r in rel)
    first = items[0]
    assert first.root == SAVED
    assert first.size == (SAVED / "functools.html").stat().st_size
    assert first.mtime_ns == (SAVED / "functools.html").stat().st_mtime_ns
    assert list(walk([SAVED])) == items  # stable


def test_walk_nested_and_repeated_roots_list_each_file_once():
    items = list(walk([SAVED / "notes", SAVED, SAVED]))
    paths = [i.path for i in items]
    assert len(paths) == len(set(paths)) == len(GOOD_FILES)
    assert all(i.root == SAVED for i in items)


def test_walk_single_file_root_and_missing_root(tmp_path: Path):
    items = list(walk([SAVED / "notes" / "todo.txt", tmp_path / "nope"]))
    assert isinstance(items[0], Candidate) and items[0].path == SAVED / "notes" / "todo.txt"
    assert items[1] == Skipped(tmp_path / "nope", "not found")


def test_localized_companion_folders_and_a_lone_files_folder(tmp_path: Path):
    (tmp_path / "Seite.htm").write_text("<p>Eine Seite über tar und gzip, gespeichert.</p>")
    (tmp_path / "Seite-Dateien").mkdir()
    (tmp_path / "Seite-Dateien" / "frame.html").write_text("<p>frame</p>")
    (tmp_path / "project_files").mkdir()  # no project.html beside it: an ordinary folder
    (tmp_path / "project_files" / "notes.md").write_text("# notes\n\nkept")
    rel = sorted(i.path.relative_to(tmp_path).as_posix() for i in walk([tmp_path]))
    assert rel == ["Seite.htm", "project_files/notes.md"]


def test_walk_is_a_lazy_generator_and_fast(tmp_path: Path):
    (tmp_path / "note.md").write_text("# x\n\ny\n")
    for d in range(100):
        folder = tmp_path / f"d{d:03}"
        folder.mkdir()
        for f in range(200):
            os.link(tmp_path / "note.md", folder / f"n{f:03}.md")  # 15x quicker to make than new files
    os.unlink(tmp_path / "note.md")
    gen = walk([tmp_path])
    assert next(gen).path.name == "n000.md"
    start = time.perf_counter()
    count = 1 + sum(1 for _ in gen)
    assert count == 20_000
    assert time.perf_counter() - start < 5.0


# --- each kind ---------------------------------------------------------------------------------


def test_browser_saved_sphinx_page():
    doc = one(SAVED / "functools.html")
    assert doc.kind == "docs"
    assert doc.url is None
    # from the "saved from url=(0058)…" comment, fragment dropped
    assert doc.canonical_url == "https://docs.python.org/3/library/functools.html"
    assert doc.site == "docs.python.org"
    assert doc.doc_key == ""
    cache = by_heading(doc, "@functools.cache(user_function)")
    assert cache.heading_path[0].startswith("functools — Higher-order functions")
    assert ("```python\n@cache\ndef fib(n):\n    if n < 2:\n        return n\n"
            "    return fib(n - 1) + fib(n - 2)\n```") in cache.text
    partial = by_heading(doc, "functools.partial(func, /, *args)")
    assert ">>> basetwo = partial(int, base=2)\n>>> basetwo('10010')\n18" in partial.text
    text = doc.markdown
    assert "COMPANION" not in text and "footer line" not in text


def test_singlefile_page_url_from_its_comment_and_no_data_uris():
    doc = one(SAVED / "singlefile-blog.html")
    assert doc.kind == "article"
    assert doc.canonical_url == "https://blog.example.org/posts/retry-with-backoff"
    assert doc.site == "blog.example.org"
    assert doc.title == "Retrying flaky HTTP calls with exponential backoff"
    helper = by_heading(doc, "The helper")
    assert ("        except httpx.HTTPError:\n            if attempt == attempts - 1:\n"
            "                raise\n") in helper.text
    assert "base64" not in doc.markdown and "data:" not in doc.markdown


def test_huge_singlefile_page_is_quick(tmp_path: Path):
    """Megabytes of inlined images and fonts must not cost the extractor time (or the page its
    text: the extractor cuts input at 8 M characters)."""
    blob = "A" * 4_000_000
    page = (SAVED / "singlefile-blog.html").read_text()
    page = page.replace("<main>", "<main>" + f'<img src="data:image/png;base64,{blob}">' * 4
                        + f"<style>.x{{background:url(data:image/png;base64,{blob})}}</style>")
    path = tmp_path / "huge.html"
    path.write_text(page)
    start = time.perf_counter()
    doc = one(path, max_bytes=50_000_000)
    assert time.perf_counter() - start < 5.0
    assert "What to log" in [s.heading_path[-1] for s in doc.sections]


def test_hostile_markup_costs_linear_time(tmp_path: Path):
    path = tmp_path / "hostile.html"
    path.write_text("<p>Real text about sockets.</p>" + "<script <meta <style" * 150_000 + "<!-- saved from url=(9999)")
    start = time.perf_counter()
    docs_of(path, max_bytes=10_000_000)
    assert time.perf_counter() - start < 5.0


def test_mhtml_quoted_printable_stack_overflow_snapshot():
    doc = one(SAVED / "so-question.mhtml")
    assert doc.kind == "so"
    assert doc.title == "Why does a mutable default argument keep its value between calls?"
    assert doc.canonical_url == ("https://stackoverflow.com/questions/4242/"
                                 "why-does-a-mutable-default-argument-keep-its-value")
    assert doc.site == "stackoverflow.com"
    question, accepted, other = doc.sections
    assert question.role == "question" and question.score == 88
    assert "naïve" in question.text  # =C3=AF in quoted-printable
    assert "def append_to(item, target=[]):\n    target.append(item)\n    return target\n\nprint(" \
        in question.text
    assert (accepted.role, accepted.score, accepted.accepted) == ("answer", 120, True)
    assert "    if target is None:\n        target = []" in accepted.text
    assert (other.score, other.accepted) == (7, False)


def test_mhtml_without_html_part(tmp_path: Path):
    path = tmp_path / "images.mht"
    path.write_bytes(b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n"
                     b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     b"iVBORw0KGgo=\r\n--b--\r\n")
    assert reason_of(path) == "nothing readable"


def test_markdown_heading_paths_fences_and_front_matter():
    doc = one(SAVED / "notes" / "python-tips.md")
    assert doc.kind == "text"
    assert doc.title == "functools"
    assert doc.canonical_url == "https://docs.python.org/3/library/functools.html"
    assert doc.site == "docs.python.org"
    cache = by_heading(doc, "@cache")
    assert cache.heading == "functools › @cache"
    assert "@cache\ndef fib(n):\n    return n if n < 2" in cache.text
    assert "from functools import cache\n\n\n@cache" in cache.text  # blank lines inside code kept
    assert "~~~python\nfrom functools import partial\n\nparse_binary" in by_heading(doc, "partial").text
    order = by_heading(doc, "Reading order")  # a setext heading
    assert order.heading_path == ["functools", "Reading order"]
    assert "```sh\n# this line starts with a hash but is code, not a heading\npython -m timeit" in order.text
    assert "title:" not in doc.markdown  # front matter is not content


def test_rst_sections_literal_blocks_and_directives():
    doc = one(SAVED / "notes" / "asyncio-guide.rst")
    assert doc.title == "Asyncio field guide"
    gathering = by_heading(doc, "Gathering tasks")
    assert gathering.heading == "Asyncio field guide › Running coroutines › Gathering tasks"
    assert "To run several coroutines at once, gather them:\n\n```\nimport asyncio\n\nasync def main():\n" \
           "    results = await asyncio.gather(fetch(\"a\"), fetch(\"b\"))\n    print(results)\n\n" \
           "asyncio.run(main())\n```" in gathering.text
    assert "**Note:**" in gathering.text and "`asyncio.TaskGroup.create_task` is the structured" in gathering.text
    running = by_heading(doc, "Running coroutines")
    assert "Start the event loop with `asyncio.run` and keep `main()` small." in running.text
    assert "[asyncio docs](https://docs.python.org/3/library/asyncio.html)" in running.text
    timeouts = by_heading(doc, "Timeouts")
    assert "```python\nasync def main():\n    async with asyncio.timeout(2):\n        await slow()\n```" \
        in timeouts.text
    assert ":caption:" not in timeouts.text
    assert "```pycon\n>>> import asyncio\n>>> asyncio.run(" in timeouts.text
    cancel = by_heading(doc, "Cancellation")
    assert cancel.heading_path == ["Asyncio field guide", "Cancellation"]
    assert "`asyncio.CancelledError`" in cancel.text
    assert "| cancel()   | ask the task to stop  |" in cancel.text
    assert "comment must not appear" not in doc.markdown and "cancel-target" not in doc.markdown


def test_rst_conversion_details():
    md = rst_to_markdown(textwrap.dedent("""\
        Title
        =====

        Expanded form:

        ::

            $ make

        Partial form ::

            x = 1

        A paragraph.

          indented quote
          stays text.

        Sub
        ---

        .. code:: sh

           echo hi

        .. toctree::
           :maxdepth: 2

           intro

        .. image:: pic.png
           :alt: a picture

        Shorter
        ----

        Tiny
        --

        :pep:`8` and :ref:`the guide <guide>` and ``a``.
        """))
    assert md.startswith("# Title\n")
    assert "Expanded form:\n\n```\n$ make\n```" in md
    assert "Partial form\n\n```\nx = 1\n```" in md
    assert "indented quote\nstays text." in md
    assert "## Sub" in md
    assert "```sh\necho hi\n```" in md
    assert "toctree" not in md and "intro" not in md and "pic.png" not in md
    assert "## Shorter" in md  # underline shorter than the title, but 4 long: docutils takes it
    assert "Tiny\n--" in md  # too short: text
    assert "PEP 8 and the guide and `a`." in md


def test_plain_text():
    doc = one(SAVED / "notes" / "todo.txt")
    assert doc.kind == "text" and doc.title == "Things to look up"
    assert "`os.scandir`" in doc.markdown
    assert doc.canonical_url is None and doc.site == ""


def test_malformed_html_best_effort():
    doc = one(SAVED / "malformed.html")
    text = doc.markdown
    assert "tar -czpf backup.tar.gz \\\n    --exclude='*.tmp' project/" in text
    assert "Extract it somewhere else" in text


# --- Stack Exchange dump -----------------------------------------------------------------------


def test_posts_xml_joins_questions_with_their_answers():
    docs = docs_of(SAVED / "unix.stackexchange.com" / "Posts.xml")
    assert [d.doc_key for d in docs] == ["100", "102", "105"]
    assert all(d.kind == "so" and d.site == "unix.stackexchange.com" and d.url is None for d in docs)
    spaces = docs[0]
    assert spaces.title == "How to delete files with spaces in their names?"
    assert spaces.canonical_url == "https://unix.stackexchange.com/questions/100"
    assert spaces.date == "2020-05-01"
    question, *answers = spaces.sections
    assert question.role == "question" and question.score == 25
    assert "```\nfor f in $(ls *.log); do\n    rm $f\ndone\n```" in question.text  # &#xA; kept
    assert "Tags: bash, filenames" in question.text
    # by score, highest first; the accepted answer keeps its mark where its score puts it
    assert [(a.score, a.accepted) for a in answers] == [(3, False), (2, True), (-1, False)]
    assert answers[1].heading_path == [spaces.title, "Answer (accepted, score 2)"]
    assert "for f in ./*.log; do\n    rm -- \"$f\"\ndone" in answers[1].text
    assert "find . -name '*.log' -print0 |\n    xargs -0 rm --" in answers[0].text  # came before its question
    assert "Tags: bash, shell-script" in docs[1].sections[0].text  # the 2024 tag format
    ordered = docs[2]
    assert "STRAY-END-TAGS" in ordered.sections[0].text  # stray </div> in a body breaks nothing
    assert [s.role for s in ordered.sections] == ["question", "answer"]
    assert "TAG-WIKI" not in "".join(d.markdown for d in docs)


def test_posts_site_from_folder_or_file_name(tmp_path: Path):
    src = SAVED / "unix.stackexchange.com" / "Posts.xml"
    (tmp_path / "dump").mkdir()
    shutil.copy(src, tmp_path / "dump" / "Posts.xml")
    docs = docs_of(tmp_path / "dump" / "Posts.xml")
    assert docs[0].canonical_url is None and docs[0].site == ""
    shutil.copy(src, tmp_path / "dump" / "superuser.com-Posts.xml")
    assert docs_of(tmp_path / "dump" / "superuser.com-Posts.xml")[0].canonical_url == \
        "https://superuser.com/questions/100"
    (tmp_path / "stackoverflow.com-Posts").mkdir()
    shutil.copy(src, tmp_path / "stackoverflow.com-Posts" / "Posts.xml")
    assert docs_of(tmp_path / "stackoverflow.com-Posts" / "Posts.xml")[0].site == "stackoverflow.com"


def test_posts_detected_by_root_element_other_xml_unsupported(tmp_path: Path):
    shutil.copy(SAVED / "unix.stackexchange.com" / "Posts.xml", tmp_path / "dump.xml")
    (tmp_path / "feed.xml").write_text('<?xml version="1.0"?><rss><channel/></rss>')
    assert is_supported(tmp_path / "dump.xml") and not is_supported(tmp_path / "feed.xml")
    assert len(docs_of(tmp_path / "dump.xml")) == 3
    assert reason_of(tmp_path / "feed.xml") == "unsupported file type .xml"
    items = {i.path.name: i for i in walk([tmp_path])}
    assert isinstance(items["dump.xml"], Candidate)
    assert items["feed.xml"] == Skipped(tmp_path / "feed.xml", "unsupported file type .xml")


def test_truncated_posts_xml_keeps_what_was_read(tmp_path: Path):
    data = (SAVED / "unix.stackexchange.com" / "Posts.xml").read_text()
    cut = data.index('<row Id="106"') + 40  # mid-element, after questions 100 and 102
    path = tmp_path / "Posts.xml"
    path.write_text(data[:cut])
    docs: list = []
    with pytest.raises(SkipFile) as info:
        for doc in load(path):
            docs.append(doc)
    assert [d.doc_key for d in docs] == ["100", "102"]
    assert [s.score for s in docs[0].sections[1:]] == [3, 2]  # answer 107 came after the cut
    assert info.value.partial
    assert info.value.reason.startswith("malformed XML")


def test_garbage_posts_xml_is_skipped(tmp_path: Path):
    path = tmp_path / "Posts.xml"
    path.write_text("<posts><row Id='1' PostTypeId='1' Title='t' Body='&lt;p&gt;x' <<<")
    with pytest.raises(SkipFile) as info:
        list(load(path))
    assert info.value.reason.startswith("malformed XML") and not info.value.partial


_POSTS_MEMORY_SCRIPT = """\
import json, resource, sys
from pathlib import Path
from xml.sax.saxutils import quoteattr
import copilot.index.loaders as loaders
from copilot.document import Document, Section

path = Path(sys.argv[1]) / "Posts.xml"
body = quoteattr("<p>" + "Some words about the problem at hand. " * 20 + "</p>"
                 "<pre><code>for i in range(3):\\n    print(i)\\n</code></pre>")
with open(path, "w") as f:
    f.write('<?xml version="1.0" encoding="utf-8"?>\\n<posts>\\n')
    pending, next_id = [], 1
    for q in range(12_500):
        qid, next_id = next_id, next_id + 1
        f.write(f'<row Id="{qid}" PostTypeId="1" Score="1" Title="Q{q}" Body={body} />\\n')
        pending += [(next_id + k, qid) for k in range(3)]
        next_id += 3
        while len(pending) > 300:
            aid, parent = pending.pop(0)
            f.write(f'<row Id="{aid}" PostTypeId="2" ParentId="{parent}" Score="2" Body={body} />\\n')
    for aid, parent in pending:
        f.write(f'<row Id="{aid}" PostTypeId="2" ParentId="{parent}" Score="2" Body={body} />\\n')
    f.write("</posts>\\n")

seen = []
def fake_extract(html, url=None):
    seen.append(html.count('class="answer'))
    return Document(title="t", kind="so", sections=[Section([], "x")])
loaders.extract_html = fake_extract

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in loaders.load(path, tmp_dir=sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "answers": sum(seen), "size": path.stat().st_size,
                  "rss_growth": (after - before) * 1024}))
"""


def test_posts_xml_memory_stays_bounded(tmp_path: Path):
    """50 000 posts (47 MB; answers arriving up to 100 questions after theirs), streamed: the
    peak memory must not grow with the dump. Measured as peak RSS in a fresh process, because
    tracemalloc sees neither libxml2's nor SQLite's allocations (and slows the run fourfold).
    Parsing this file whole takes ~110 MB; streaming it takes ~6 MB. The per-question page
    rendering (extract.py, the same whatever the dump size) is stubbed to keep the test quick."""
    out = subprocess.run([sys.executable, "-c", _POSTS_MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["count"] == 12_500 and result["answers"] == 37_500
    assert result["size"] > 40_000_000
    assert result["rss_growth"] < 30_000_000, result
    assert not list(tmp_path.glob("copilot-posts-*"))  # the join file is gone


# --- gzip --------------------------------------------------------------------------------------


def test_gzip_copies_load_like_the_original(tmp_path: Path):
    raw = (SAVED / "functools.html").read_bytes()
    (tmp_path / "functools.html.gz").write_bytes(gzip.compress(raw))
    assert one(tmp_path / "functools.html.gz").sections == one(SAVED / "functools.html").sections
    (tmp_path / "tips.md.gz").write_bytes(gzip.compress((SAVED / "notes" / "python-tips.md").read_bytes()))
    assert by_heading(one(tmp_path / "tips.md.gz"), "@cache").heading == "functools › @cache"
    (tmp_path / "unix.stackexchange.com").mkdir()
    posts = tmp_path / "unix.stackexchange.com" / "Posts.xml.gz"
    posts.write_bytes(gzip.compress((SAVED / "unix.stackexchange.com" / "Posts.xml").read_bytes()))
    assert [d.doc_key for d in docs_of(posts)] == ["100", "102", "105"]


def test_gzip_corrupt_truncated_and_bomb(tmp_path: Path):
    (tmp_path / "junk.html.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not deflate data at all")
    assert reason_of(tmp_path / "junk.html.gz") == "corrupt gzip"
    packed = gzip.compress(b"<p>" + b"words " * 50_000 + b"</p>")
    (tmp_path / "cut.html.gz").write_bytes(packed[: len(packed) // 2])
    assert reason_of(tmp_path / "cut.html.gz") == "corrupt gzip"
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * 3_000_000))
    assert reason_of(tmp_path / "bomb.txt.gz", max_bytes=1_000_000) == "larger than 977 KB when decompressed"
    assert reason_of(tmp_path / "bomb.txt.gz", max_bytes=1 << 20) == "larger than 1 MB when decompressed"
    (tmp_path / "archive.tar.gz").write_bytes(packed)
    assert reason_of(tmp_path / "archive.tar.gz") == "unsupported file type .tar.gz"


# --- bad input ---------------------------------------------------------------------------------


def test_charsets_are_detected(tmp_path: Path):
    russian = "Как прочитать файл построчно в Python?\n\nИспользуйте цикл по объекту файла, он читает по одной строке.\n"
    (tmp_path / "ru.txt").write_bytes(russian.encode("cp1251"))
    doc = one(tmp_path / "ru.txt")
    assert doc.title == "Как прочитать файл построчно в Python?"
    assert "Используйте цикл по объекту файла" in doc.markdown
    (tmp_path / "fr.md").write_bytes("# Café\n\nLe naïf garçon écrit déjà du code à Noël.\n".encode("latin-1"))
    doc = one(tmp_path / "fr.md")
    assert doc.title == "Café" and "naïf garçon écrit déjà" in doc.markdown
    (tmp_path / "wide.txt").write_bytes("UTF-16 notes: ünïcödé\n".encode("utf-16"))
    assert "ünïcödé" in one(tmp_path / "wide.txt").markdown
    (tmp_path / "page.html").write_bytes(
        '<html><head><meta charset="windows-1251"><title>Заметка</title></head>'
        "<body><p>Текст заметки о файлах и кодировках.</p></body></html>".encode("cp1251"))
    assert "Текст заметки" in one(tmp_path / "page.html").markdown


def test_binary_and_empty_content(tmp_path: Path):
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    assert reason_of(tmp_path / "image.txt") == "binary file"
    (tmp_path / "ctl.md").write_bytes(bytes(range(1, 32)) * 50)
    assert reason_of(tmp_path / "ctl.md") == "binary file"
    (tmp_path / "doc.html").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n")
    assert reason_of(tmp_path / "doc.html") == "binary file"
    (tmp_path / "empty.md").write_bytes(b"")
    assert reason_of(tmp_path / "empty.md") == "empty file"
    (tmp_path / "blank.txt").write_text("\n   \n\t\n")
    assert reason_of(tmp_path / "blank.txt") == "nothing readable"
    (tmp_path / "scripts.html").write_text("<html><body><script>var a = 1;</script><style>p{}</style></body></html>")
    assert reason_of(tmp_path / "scripts.html") == "nothing readable"


def make_bad_tree(base: Path) -> tuple[Path, Path]:
    """A folder with a good file or two and every bad input; returns (root, outside folder)."""
    root = base / "root"
    outside = base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.md").write_text("# outside\n\nnever indexed unless asked\n")
    (root / "good.md").write_text("# Good\n\nA good note.\n")
    (root / "sub" / "deep.txt").write_text("A note in a subfolder.\n")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (root / "empty.md").write_bytes(b"")
    (root / "big.html").write_text("<p>" + "x " * 40_000 + "</p>")
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "Makefile").write_text("all:\n\ttrue\n")
    (root / "cp1251.txt").write_bytes("Привет, мир! Заметка о кодировках.".encode("cp1251"))
    (root / "feed.xml").write_text("<rss/>")
    (root / "malformed.html").write_text("<html><body><p>Still <b>readable</p></i></div><table><td>cell")
    (root / "bad.html.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (root / ".hidden.md").write_text("# hidden\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.txt").write_text("ref: refs/heads/main\n")
    (root / "page.html").write_text("<html><body><p>A saved page with its files.</p></body></html>")
    (root / "page_files").mkdir()
    (root / "page_files" / "style.txt").write_text("companion")
    dump = root / "broken.stackexchange.com"
    dump.mkdir()
    posts = (SAVED / "unix.stackexchange.com" / "Posts.xml").read_text()
    (dump / "Posts.xml").write_text(posts[: posts.index('<row Id="103"') + 25])
    os.symlink(root / "missing.md", root / "broken-link.md")
    os.symlink(root / "loop-b.md", root / "loop-a.md")
    os.symlink(root / "loop-a.md", root / "loop-b.md")
    os.symlink(root, root / "sub" / "back-to-root")  # a folder link to an ancestor
    os.symlink(outside / "secret.md", root / "outside-file.md")
    os.symlink(outside, root / "outside-dir")
    os.symlink(root / "good.md", root / "sub" / "link-to-good.md")  # inside: followed
    os.mkfifo(root / "pipe.txt")
    return root, outside


def run_index_like_a_caller(roots, **kw) -> tuple[dict[str, str], dict[str, LoadedDocument]]:
    """walk + load as `copilot index` would: every file ends loaded or skipped with a reason."""
    reasons: dict[str, str] = {}
    loaded: dict[str, LoadedDocument] = {}
    max_bytes = kw.pop("max_bytes", 64 * 1024)
    for item in walk(roots, max_bytes=max_bytes, **kw):
        if isinstance(item, Skipped):
            reasons[item.path.name] = item.reason
            continue
        try:
            for doc in load(item.path, max_bytes=max_bytes):
                loaded[f"{item.path.name}#{doc.doc_key}"] = doc
        except SkipFile as err:
            reasons[item.path.name] = err.reason
    return reasons, loaded


def test_every_bad_input_is_skipped_with_its_reason_and_the_walk_goes_on(tmp_path: Path):
    root, outside = make_bad_tree(tmp_path)
    reasons, loaded = run_index_like_a_caller([root])
    truncated = reasons.pop("Posts.xml")
    assert truncated.startswith("malformed XML")
    assert reasons == {
        "binary.txt": "binary file",
        "empty.md": "empty file",
        "big.html": "larger than 64 KB",
        "picture.png": "unsupported file type .png",
        "Makefile": "unsupported file type (no extension)",
        "feed.xml": "unsupported file type .xml",
        "bad.html.gz": "corrupt gzip",
        "broken-link.md": "broken symlink",
        "loop-a.md": "symlink loop",
        "loop-b.md": "symlink loop",
        "back-to-root": "symlink loop",
        "outside-file.md": "points outside the indexed folders",
        "outside-dir": "points outside the indexed folders",
        "pipe.txt": "not a regular file",
    }
    assert sorted(loaded) == ["Posts.xml#100", "Posts.xml#102", "cp1251.txt#", "deep.txt#", "good.md#", "link-to-good.md#",
                              "malformed.html#", "page.html#"]
    assert "Привет, мир!" in loaded["cp1251.txt#"].markdown
    assert "Still **readable**" in loaded["malformed.html#"].markdown
    assert all("hidden" not in name and "HEAD" not in name and "style" not in name for name in loaded)


def test_follow_outside_when_asked(tmp_path: Path):
    root, outside = make_bad_tree(tmp_path)
    reasons, loaded = run_index_like_a_caller([root], follow_outside=True)
    assert "outside-file.md" not in reasons and "outside-dir" not in reasons
    assert "outside-file.md#" in loaded and "secret.md#" in loaded
    # a link pointing into another given root is inside the indexed folders
    reasons, loaded = run_index_like_a_caller([root, outside])
    assert "outside-file.md#" in loaded and "outside-dir" not in reasons


def test_size_cap_reason_reads_well(tmp_path: Path):
    (tmp_path / "a.txt").write_text("x" * 6_000_000)
    assert list(walk([tmp_path])) == [Skipped(tmp_path / "a.txt", "larger than 5 MB")]
    assert reason_of(tmp_path / "a.txt") == "larger than 5 MB"
    assert list(walk([tmp_path], max_bytes=5_000_000)) == [Skipped(tmp_path / "a.txt", "larger than 4.8 MB")]


def test_posts_xml_is_exempt_from_the_size_cap(tmp_path: Path):
    (tmp_path / "unix.stackexchange.com").mkdir()
    shutil.copy(SAVED / "unix.stackexchange.com" / "Posts.xml", tmp_path / "unix.stackexchange.com")
    (item,) = walk([tmp_path], max_bytes=100)
    assert isinstance(item, Candidate)
    assert len(docs_of(item.path, max_bytes=100)) == 3


_DROP_READ_RIGHTS = """
import ctypes, json, sys
from copilot.index.loaders import Skipped, SkipFile, load, walk
out = []
for item in walk([sys.argv[1]]):
    if isinstance(item, Skipped):
        out.append([item.path.name, item.reason])
        continue
    try:
        docs = list(load(item.path))
        out.append([item.path.name, f"{len(docs)} docs"])
    except SkipFile as err:
        out.append([item.path.name, err.reason])
print(json.dumps(out))
"""


def _without_dac_override() -> None:
    """Run as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: file modes apply again."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses Linux permissions and prctl")
def test_permission_denied_is_a_reason_not_a_crash(tmp_path: Path):
    """Real denials: root ignores file modes, so as root the walk runs in a child process that
    dropped the capabilities that let it; file modes then apply as they would to any user."""
    root = tmp_path / "root"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "inside.md").write_text("# x\n\ny\n")
    (root / "a-secret.md").write_text("# secret\n\nno\n")
    (root / "readable.md").write_text("# open\n\nyes\n")
    os.chmod(root / "a-secret.md", 0)
    os.chmod(root / "locked", 0)
    try:
        preexec = _without_dac_override if os.geteuid() == 0 else None
        try:
            out = subprocess.run([sys.executable, "-c", _DROP_READ_RIGHTS, str(root)], capture_output=True,
                                 text=True, timeout=60, preexec_fn=preexec)
        except subprocess.SubprocessError as err:
            pytest.skip(f"cannot drop the capabilities: {err}")
    finally:
        os.chmod(root / "locked", 0o755)
        os.chmod(root / "a-secret.md", 0o644)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [["a-secret.md", "permission denied"], ["readable.md", "1 docs"],
                                      ["locked", "permission denied"]]


def test_load_reports_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same reason when the file turns unreadable between walk and load."""
    path = tmp_path / "note.md"
    path.write_text("# n\n\nx\n")
    real_open = os.open

    def deny(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    assert reason_of(path) == "permission denied"


def test_load_never_blocks_on_a_fifo_or_reads_a_folder(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.html")
    assert reason_of(tmp_path / "pipe.html") == "not a regular file"
    os.mkfifo(tmp_path / "pipe.xml")
    assert reason_of(tmp_path / "pipe.xml") == "not a regular file"
    (tmp_path / "folder.md").mkdir()
    assert reason_of(tmp_path / "folder.md") == "not a regular file"


def test_misnamed_posts_xml(tmp_path: Path):
    (tmp_path / "Posts.xml").write_text('<?xml version="1.0"?><rss><channel><item/></channel></rss>')
    assert reason_of(tmp_path / "Posts.xml") == "no Stack Exchange questions found"
    (tmp_path / "Posts.xml.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert reason_of(tmp_path / "Posts.xml.gz") == "corrupt gzip"


def test_vanished_file_and_unsupported_load(tmp_path: Path):
    assert reason_of(tmp_path / "gone.md") == "not found"
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    assert reason_of(tmp_path / "x.png") == "unsupported file type .png"
