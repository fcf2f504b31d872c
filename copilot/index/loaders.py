"""Find and read what people save: folders of web pages, docs, notes and Stack Exchange dumps.

`walk(roots)` lists the files under the given folders, in a stable order, as `Candidate`s to
load and `Skipped`s with a reason a user can read. It never leaves the roots through a symlink
unless asked (`follow_outside=True`), reports broken links and loops, and stays a generator with
`os.scandir`, so a folder of 20 000 files costs little time and no memory to speak of.

`load(path)` turns one file into `Document`s with the same extractors the web path uses
(`copilot.web.extract`): browser-saved pages (`.html`, `.htm`, `.xhtml`, SingleFile pages, `.mhtml`),
Markdown, reStructuredText, plain text, gzip-compressed copies of these, and a Stack Exchange data
dump's `Posts.xml` (one Document per question, joined with its answers). A file it cannot read
raises `SkipFile` with the reason.

Decisions worth knowing:

- A browser's "Save Page As" companion folder (`page_files/`, `page-Dateien/`, … beside
  `page.html`) is skipped silently, like hidden files and folders: it is part of the page, not
  an input of its own (it holds images, styles and frames). So are the `_sources/`, `_static/`
  and `_images/` folders of a Sphinx HTML build (`_sources/` repeats every page as .rst.txt).
- A symlink is reported as "broken symlink", "symlink loop" (a cycle of links, or a folder link
  that leads back to one of its own ancestors) or "points outside the indexed folders" (its
  target is under none of the roots' real paths). Links inside the roots are followed and their
  files listed under the link's path; the same content reached twice is deduplicated by the
  caller's content hash. A root nested in another root is walked once, as part of the outer one.
- `max_bytes` caps the file size, and for gzip files the decompressed size too. A Stack Exchange
  `Posts.xml` is exempt: it is streamed, never held whole.
- `Posts.xml` is joined through a temporary SQLite file (in `tmp_dir`, else the system's temp
  folder): one streaming pass (`lxml.etree.iterparse`, each row cleared once read) writes
  questions and answers to it, then questions are read back in Id order, each with its answers.
  Memory stays bounded whatever the dump size (answers may come before or after their question);
  the disk needs about the size of the post bodies. Answers are ordered by score (highest first,
  then oldest first), as Stack Overflow shows them by default; the accepted one keeps its mark
  but is not moved. A dump cut off mid-file yields the questions read before the break, then
  raises `SkipFile(reason, partial=True)`.
"""

from __future__ import annotations

import email
import errno
import gzip
import html as html_lib
import os
import re
import sqlite3
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urldefrag, urlsplit

import lxml.html
from lxml import etree

from copilot.document import Document
from copilot.web.extract import decode_body, extract_html, extract_text, host_of

__all__ = [
    "DEFAULT_MAX_BYTES", "Candidate", "LoadedDocument", "SkipFile", "Skipped", "is_supported", "load",
    "rst_to_markdown", "walk",
]

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    """A file to load. `path` is under `root` as the walk reached it (symlinks not resolved);
    for a root that is a file, `root` is that file."""

    path: Path
    root: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


class SkipFile(Exception):
    """The file cannot be indexed; `reason` says why in a few words ("binary file").

    `partial` is True when the documents yielded before the exception are good and only the
    rest of the file was lost (a truncated Posts.xml).
    """

    def __init__(self, reason: str, *, partial: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.partial = partial


@dataclass
class LoadedDocument(Document):
    """A Document read from a local file. `doc_key` tells the documents of one file apart (the
    question Id for a Posts.xml); "" when the file holds one document."""

    doc_key: str = ""


# ---------------------------------------------------------------------------------------------
# File kinds
# ---------------------------------------------------------------------------------------------

_KINDS = {
    ".html": "html", ".htm": "html", ".xhtml": "html", ".shtml": "html",
    ".mhtml": "mhtml", ".mht": "mhtml",
    ".md": "markdown", ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".xml": "xml",  # only a Stack Exchange Posts.xml
}
_POSTS_NAME_RE = re.compile(r"(?:[\w.-]*-)?posts\.xml", re.I)  # Posts.xml, stackoverflow.com-Posts.xml
_POSTS_ROOT_RE = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}\?>\s*)?(?:<!--.{0,2000}?-->\s*|<!DOCTYPE[^>]{0,500}>\s*)*"
    rb"<posts[\s>/]", re.S)


def _classify(name: str) -> tuple[str | None, bool, str]:
    """(kind or None, gzip-compressed, suffix for messages) from a file name."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    inner = lower[:-3] if gz else lower
    suffix = os.path.splitext(inner)[1]
    label = (suffix + ".gz" if gz else suffix) if suffix else (".gz" if gz else "")
    return _KINDS.get(suffix), gz, label


def _open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for reading; anything else (a FIFO would block) is a SkipFile."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkipFile("not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_head(path: str | Path, gz: bool, size: int = 4096) -> bytes:
    with _open_regular(path) as raw:
        if gz:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return f.read(size)
        return raw.read(size)


def _is_posts(path: str | Path, gz: bool) -> bool:
    """A Stack Exchange dump's Posts.xml: by name, else by its root element `<posts>`."""
    name = os.path.basename(path)
    if _POSTS_NAME_RE.fullmatch(name[:-3] if gz else name):
        return True
    try:
        head = _read_head(path, gz)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        return False
    return bool(_POSTS_ROOT_RE.match(head))


def is_supported(path: str | Path) -> bool:
    """Whether `load` reads files of this name (a `.xml` only when it is a Posts.xml)."""
    kind, gz, _ = _classify(os.path.basename(path))
    if kind == "xml":
        try:
            return _is_posts(path, gz)
        except (OSError, SkipFile):
            return False
    return kind is not None


def _human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) or value >= 10 else f"{value:.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------
# Walking
# ---------------------------------------------------------------------------------------------

# "Save Page As" puts a page's resources in a folder named after it; some browsers localise the
# suffix (Internet Explorer, old Firefox and Chrome builds).
_COMPANION_SUFFIXES = (
    "_files", "-files", ".files", "_dateien", "-dateien", "_archivos", "-archivos", "_arquivos",
    "_fichiers", "-fichiers", "_file", "_bestanden", "-bestanden", "_filer", "-filer", "_pliki",
    "_soubory", "_tiedostot", "_dosyalar", "_datoteke", "_fitxers", "_ficheiros", "_elemei",
)
_PAGE_SUFFIXES = (".html", ".htm", ".xhtml", ".shtml")


# A Sphinx HTML build keeps each page's reStructuredText source in `_sources/` (as .rst.txt: the
# same content again, worse than the HTML page) and its assets in `_static/` and `_images/`.
_SPHINX_SIGNS = frozenset(("_sources", "searchindex.js", "objects.inv"))
_SPHINX_ASSETS = frozenset(("_sources", "_static", "_images"))


def _companion(name: str, page_stems: set[str]) -> bool:
    lower = name.casefold()
    return any(lower.endswith(s) and lower[: -len(s)] in page_stems for s in _COMPANION_SUFFIXES)


def _inside(real: str, real_roots: Iterable[str]) -> bool:
    return any(real == r or real.startswith(r if r.endswith(os.sep) else r + os.sep) for r in real_roots)


def _os_reason(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return "permission denied"
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(err, FileNotFoundError):
        return "not found"
    return f"unreadable ({err.strerror or err.__class__.__name__})".lower()


def _link_reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError | NotADirectoryError):
        return "broken symlink"
    return _os_reason(err)


def _file_result(path: str, st: os.stat_result, root: Path, max_bytes: int) -> Candidate | Skipped:
    kind, gz, label = _classify(os.path.basename(path))
    if kind is None:
        return Skipped(Path(path), f"unsupported file type {label or '(no extension)'}")
    if st.st_size == 0:
        return Skipped(Path(path), "empty file")
    if kind == "xml":
        try:
            if not _is_posts(path, gz):
                return Skipped(Path(path), f"unsupported file type {label}")
        except SkipFile as err:
            return Skipped(Path(path), err.reason)
        except OSError as err:
            return Skipped(Path(path), _os_reason(err))
    elif st.st_size > max_bytes:
        return Skipped(Path(path), f"larger than {_human(max_bytes)}")
    if not os.access(path, os.R_OK):
        return Skipped(Path(path), "permission denied")
    return Candidate(Path(path), root, st.st_size, st.st_mtime_ns)


def walk(roots: Iterable[str | Path], *, follow_outside: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Candidate | Skipped]:
    """Every file under `roots` (folders or single files), as Candidate or Skipped.

    Order is stable: roots in the order given; in each folder its files by name, then its
    subfolders by name, depth first. Paths are absolute but not resolved (a root given through a
    symlink keeps its name). Hidden files and folders and "Save Page As" companion folders are
    left out silently; everything else that is not loaded is reported with a reason.
    """
    if isinstance(roots, str | os.PathLike):
        roots = [roots]
    given = [Path(os.path.abspath(os.fspath(r))) for r in roots]
    reals = [os.path.realpath(r) for r in given]
    kept: list[tuple[Path, str]] = []
    for i, (root, real) in enumerate(zip(given, reals, strict=True)):
        others = [o for j, o in enumerate(reals) if j != i and (o != real or j < i)]
        if not _inside(real, others):
            kept.append((root, real))
    real_roots = [real for _, real in kept]
    for root, real in kept:
        try:
            st = os.stat(root)
        except OSError as err:
            yield Skipped(root, _link_reason(err) if os.path.islink(root) else _os_reason(err))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, real, real_roots, follow_outside, max_bytes)
        elif stat.S_ISREG(st.st_mode):
            yield _file_result(str(root), st, root, max_bytes)
        else:
            yield Skipped(root, "not a regular file")


def _walk_dir(root: Path, root_real: str, real_roots: list[str], follow_outside: bool,
              max_bytes: int) -> Iterator[Candidate | Skipped]:
    # Each stack item: a folder's path as reached, and the real paths of it and its ancestors.
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), (root_real,))]
    while stack:
        folder, chain = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as err:
            yield Skipped(Path(folder), _os_reason(err))
            continue
        page_stems = {e.name[: e.name.rfind(".")].casefold() for e in entries
                      if e.name.lower().endswith(_PAGE_SUFFIXES)}
        names = {e.name for e in entries}
        sphinx_build = "_static" in names and not names.isdisjoint(_SPHINX_SIGNS)
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            path = entry.path
            try:
                if entry.is_symlink():
                    try:
                        st = os.stat(path)
                    except OSError as err:
                        yield Skipped(Path(path), _link_reason(err))
                        continue
                    real = os.path.realpath(path)
                    if not follow_outside and not _inside(real, real_roots):
                        yield Skipped(Path(path), "points outside the indexed folders")
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if real in chain or _inside(chain[-1], [real]):
                            yield Skipped(Path(path), "symlink loop")
                        else:
                            subfolders.append((path, real))
                    elif stat.S_ISREG(st.st_mode):
                        yield _file_result(path, st, root, max_bytes)
                    else:
                        yield Skipped(Path(path), "not a regular file")
                elif entry.is_dir(follow_symlinks=False):
                    if not _companion(name, page_stems) and not (sphinx_build and name in _SPHINX_ASSETS):
                        subfolders.append((path, os.path.join(chain[-1], name)))
                elif entry.is_file(follow_symlinks=False):
                    yield _file_result(path, entry.stat(follow_symlinks=False), root, max_bytes)
                else:
                    yield Skipped(Path(path), "not a regular file")
            except FileNotFoundError:
                continue
            except OSError as err:
                yield Skipped(Path(path), _os_reason(err))
        for path, real in reversed(subfolders):
            stack.append((path, (*chain, real)))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
         tmp_dir: str | Path | None = None) -> Iterator[LoadedDocument]:
    """The documents in one file. Raises `SkipFile(reason)` (when iterated) for bad input.

    `max_bytes` caps what is read (decompressed, for gzip); a Posts.xml is streamed instead and
    `tmp_dir` holds its temporary join file. Documents have `url=None`, `canonical_url` when the
    file names the page's original address, and `site` = that address's host (else "").
    """
    path = Path(path)
    kind, gz, label = _classify(path.name)
    if kind == "xml":
        try:
            posts = _is_posts(path, gz)
        except OSError as err:
            raise SkipFile(_os_reason(err)) from None
        if not posts:
            raise SkipFile(f"unsupported file type {label}")
        yield from _load_posts(path, gz, tmp_dir)
        return
    if kind is None:
        raise SkipFile(f"unsupported file type {label or '(no extension)'}")
    data = _read(path, gz, max_bytes)
    if not data:
        raise SkipFile("empty file")
    if _looks_binary(data):
        raise SkipFile("binary file")
    if kind == "html":
        doc = _load_html(decode_body(data, None))
    elif kind == "mhtml":
        doc = _load_mhtml(data)
    elif kind == "markdown":
        doc = _load_markdown(decode_body(data, None))
    elif kind == "rst":
        doc = extract_text(rst_to_markdown(decode_body(data, None)))
    else:
        doc = extract_text(decode_body(data, None))
    if not any(s.text.strip() for s in doc.sections):
        raise SkipFile("nothing readable")
    yield _finish(doc, path)


def _read(path: Path, gz: bool, max_bytes: int) -> bytes:
    try:
        with _open_regular(path) as f:
            if not gz:
                data = f.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise SkipFile(f"larger than {_human(max_bytes)}")
                return data
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    data = g.read(max_bytes + 1)
            except (gzip.BadGzipFile, EOFError, zlib.error):
                raise SkipFile("corrupt gzip") from None
            if len(data) > max_bytes:
                raise SkipFile(f"larger than {_human(max_bytes)} when decompressed")
            return data
    except OSError as err:
        raise SkipFile("not a regular file" if isinstance(err, IsADirectoryError) else _os_reason(err)) from None


_TEXT_CONTROLS = bytes(range(0, 32)).translate(None, b"\t\n\r\x0c\x1b\x08")
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _looks_binary(data: bytes) -> bool:
    """NUL bytes or many control bytes in the first 8 KB (UTF-16/32 with a BOM is text)."""
    head = data[:8192]
    if head.startswith(_WIDE_BOMS):
        return False
    if b"\x00" in head or head.startswith(b"%PDF-"):
        return True
    controls = len(head) - len(head.translate(None, _TEXT_CONTROLS))
    return controls > len(head) // 20


def _http(url: str | None) -> str | None:
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def _finish(doc: Document, path: Path, key: str = "") -> LoadedDocument:
    values = {f.name: getattr(doc, f.name) for f in fields(Document)}
    out = LoadedDocument(**values, doc_key=key)
    out.url = None
    out.site = host_of(out.canonical_url)
    if not out.title:
        name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
        out.title = os.path.splitext(name)[0]
    return out


# --- HTML --------------------------------------------------------------------------------------

# Inline scripts and styles say nothing a reader sees; SingleFile pages inline megabytes of them
# (fonts, CSS), and images as data: URIs. Drop their contents before parsing (the tags and their
# attributes stay: a `<script id="documentation_options">` tells a Sphinx page).
_OPEN_RE = re.compile(r"<(script|style)\b[^>]{0,2000}>", re.I)
_CLOSE_RE = {"script": re.compile(r"</script\s*>", re.I), "style": re.compile(r"</style\s*>", re.I)}
_DATA_URI_RE = re.compile(r"data:[^\s\"'()<>]{200,}", re.I)
# Where the page came from, as browsers and save tools record it.
_MOTW_RE = re.compile(r"<!--\s*saved from url=\((\d{1,5})\)\s*([^\s>]+)", re.I)
_SINGLEFILE_RE = re.compile(r"<!--\s*Page saved with SingleFile\s+url:\s*(\S+)", re.I)
_META_TAG_RE = re.compile(r"<meta\b[^>]{0,2000}>", re.I)
_ATTR_RE = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_SAVED_URL_METAS = ("savepage-url", "savepage:url", "singlefile:url", "original-url")


def _saved_from(head: str) -> str | None:
    """The address a saved page names as its origin, outside its own canonical link."""
    m = _MOTW_RE.search(head)
    if m:
        url = m.group(2)
        length = int(m.group(1))
        if 0 < length <= len(url):
            url = url[:length]
        if _http(url):
            return urldefrag(url).url
    m = _SINGLEFILE_RE.search(head)
    if m and _http(m.group(1)):
        return m.group(1)
    for tag in _META_TAG_RE.findall(head):
        attrs = {k.lower(): html_lib.unescape(a if a is not None else b if b is not None else c)
                 for k, a, b, c in _ATTR_RE.findall(tag)}
        if (attrs.get("name") or attrs.get("property") or "").lower() in _SAVED_URL_METAS:
            url = _http(attrs.get("content"))
            if url:
                return url
    return None


def _slim(html: str) -> str:
    """The page without the contents of its inline scripts and styles and without long data:
    URIs. Linear time: an unclosed <script> ends the stripping (the parser drops the rest)."""
    out: list[str] = []
    pos = 0
    while True:
        m = _OPEN_RE.search(html, pos)
        if m is None:
            break
        close = _CLOSE_RE[m.group(1).lower()].search(html, m.end())
        if close is None:
            break
        out.append(html[pos:m.end()])
        pos = close.start()
    out.append(html[pos:])
    return _DATA_URI_RE.sub("data:,", "".join(out))


def _load_html(html: str, origin: str | None = None) -> Document:
    """A saved page: the extractor picks SO / docs / generic. `origin` is where an archive format
    says the page came from (MHTML headers); the page's own canonical link wins over it."""
    html = _slim(html)
    origin = _http(origin) or _saved_from(html[:65536])
    doc = extract_html(html, url=origin)
    if not doc.canonical_url:
        doc.canonical_url = origin
    return doc


# --- MHTML -------------------------------------------------------------------------------------


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except Exception:  # a malformed encoded word: keep the raw value
        return str(value).strip()


def _load_mhtml(data: bytes) -> Document:
    """MIME multipart/related (Chrome's "Webpage, Single File", IE's .mht): the text/html part,
    its transfer encoding undone, with the snapshot's address as the page URL."""
    msg = email.message_from_bytes(data)
    html_part = None
    start = (msg.get_param("start") or "") if msg.is_multipart() else ""
    start = str(start).strip("<>")
    for part in msg.walk():
        if part.is_multipart() or part.get_content_type() != "text/html":
            continue
        if html_part is None:
            html_part = part
        if start and str(part.get("Content-ID", "")).strip().strip("<>") == start:
            html_part = part
            break
    if html_part is None:
        raise SkipFile("nothing readable")
    payload = html_part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload.strip():
        raise SkipFile("nothing readable")
    charset = html_part.get_content_charset()
    html = decode_body(payload, f"text/html; charset={charset}" if charset else None)
    origin = (_http(_header(msg, "Snapshot-Content-Location"))
              or _http(_header(html_part, "Content-Location"))
              or _http(_header(msg, "Content-Location")))
    doc = _load_html(html, origin)
    if not doc.title:
        doc.title = _header(msg, "Subject")
    return doc


# --- Markdown ----------------------------------------------------------------------------------

_FRONT_MATTER_RE = re.compile(r"\A(?:\ufeff)?---[ \t]*\n(.{0,8000}?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FRONT_KEY_RE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$", re.M)
_URL_KEYS = ("canonical_url", "canonical", "original_url", "source_url", "url", "source", "link")
_SETEXT_RE = re.compile(r" {0,3}(=+|-+)[ \t]*")
_MD_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})")
_NOT_SETEXT_START = re.compile(r" {0,3}(?:[-*+>#|]|\d+[.)]|`{3,}|~{3,})|\s{4,}")


def _setext_to_atx(text: str) -> str:
    """`Title` over `=====` / `-----` to `# Title` / `## Title` (extract_text reads ATX only)."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _MD_FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = None
        elif m:
            fence = m.group(1)
        elif (line.strip() and i + 1 < len(lines) and _SETEXT_RE.fullmatch(lines[i + 1])
              and (i == 0 or not lines[i - 1].strip()) and not _NOT_SETEXT_START.match(line)):
            level = "#" if lines[i + 1].strip()[0] == "=" else "##"
            out.append(f"{level} {line.strip()}")
            i += 2
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _load_markdown(text: str) -> Document:
    title = None
    origin = None
    m = _FRONT_MATTER_RE.match(text)
    if m:
        keys = {k.lower(): v.strip("'\"") for k, v in _FRONT_KEY_RE.findall(m.group(1))}
        title = keys.get("title") or None
        origin = next((u for u in (_http(keys.get(k)) for k in _URL_KEYS) if u), None)
        text = text[m.end():]
    doc = extract_text(_setext_to_atx(text), title=title)
    doc.canonical_url = origin
    return doc


# --- reStructuredText --------------------------------------------------------------------------

_ADORNMENT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_DIRECTIVE_RE = re.compile(r"\.\.\s+([A-Za-z0-9][\w:+.-]*)\s*::(?:\s+(.*))?$")
_OPTION_RE = re.compile(r"\s*:[\w-]+:(?:\s|$)")
_FOOTNOTE_RE = re.compile(r"\.\.\s+\[([^\]]+)\]\s*(.*)$")
_TABLE_RE = re.compile(r"\+[-=+]{3,}\+|=+(?: +=+)+")
_CODE_DIRECTIVES = frozenset(("code-block", "code", "sourcecode", "ipython", "doctest", "testcode",
                              "testoutput", "parsed-literal", "productionlist"))
_DROP_DIRECTIVES = frozenset((
    "toctree", "image", "figure", "raw", "include", "literalinclude", "contents", "index",
    "highlight", "meta", "sectnum", "header", "footer", "automodule", "autoclass", "autofunction",
    "automethod", "autoattribute", "autodata", "autoexception", "autosummary", "moduleauthor",
    "sectionauthor", "codeauthor", "currentmodule", "default-role", "role", "tabularcolumns",
    "graphviz", "inheritance-diagram", "math", "csv-table", "only-html-never", "spelling",
))
_ADMONITIONS = {
    "note": "Note", "warning": "Warning", "tip": "Tip", "important": "Important", "caution": "Caution",
    "attention": "Attention", "danger": "Danger", "error": "Error", "hint": "Hint", "seealso": "See also",
    "versionadded": "New in version", "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version", "todo": "To do",
}
# Roles whose text is prose, not code.
_PROSE_ROLES = frozenset(("ref", "doc", "term", "numref", "abbr", "guilabel", "menuselection",
                          "download", "math", "title-reference", "emphasis", "strong", "sub", "sup"))
_ROLE_RE = re.compile(r":(?:[A-Za-z][\w+.-]*:)*([A-Za-z][\w+.-]*):`([^`]+)`")
_LINK_RE = re.compile(r"`([^`<]+?)\s*<([^`<>]+)>`__?")
_REF_RE = re.compile(r"(?<!`)`([^`]+)`__?")
_LITERAL_RE = re.compile(r"``([^`]+?)``")


def _role(m: re.Match) -> str:
    role, text = m.group(1).lower(), m.group(2)
    target = re.fullmatch(r"(.*?)\s*<([^<>]+)>", text, re.S)
    if target and target.group(1):
        text = target.group(1)
    text = text.lstrip("~!")
    if role == "pep":
        return f"PEP {text}"
    if role == "rfc":
        return f"RFC {text}"
    if role in _PROSE_ROLES:
        return text
    return f"`{text}`"


def _inline(text: str) -> str:
    text = _ROLE_RE.sub(_role, text)
    text = _LITERAL_RE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _LINK_RE.sub(lambda m: f"[{m.group(1)}]({m.group(2)})", text)
    return _REF_RE.sub(r"\1", text)


def _adornment(line: str) -> str | None:
    s = line.rstrip()
    if len(s) >= 2 and s[0] in _ADORNMENT and s == s[0] * len(s):
        return s[0]
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _take_indented(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """Lines from `start` until a non-blank line indented `base` or less; trailing blanks stay."""
    j = start
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
        j += 1
    while j > start and not lines[j - 1].strip():
        j -= 1
    return lines[start:j], j


def _dedent(block: list[str]) -> list[str]:
    width = min((_indent(x) for x in block if x.strip()), default=0)
    lines = [x[width:] for x in block]
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def _fenced(lines: list[str], lang: str = "") -> list[str]:
    body = [x.rstrip() for x in lines]
    while body and not body[-1]:
        body.pop()
    if not body:
        return []
    fence = "```"
    while any(fence in x for x in body):
        fence += "`"
    return [f"{fence}{lang}", *body, fence, ""]


def _heading_text(title: str) -> str:
    return _inline(title).replace("`", "").strip()


def rst_to_markdown(text: str) -> str:
    """Enough of reStructuredText as Markdown for sectioning and code: titles by their
    underline (and overline) style in order of first use → `#`…; `::` literal blocks, doctest
    blocks and `code-block`/`code`/`sourcecode` directives → fenced code; admonitions → a bold
    lead and their text; tables fenced as text; roles, literals and links → Markdown; comments,
    targets and toctree/image/include-like directives dropped. Not docutils: no validation."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8)
    out: list[str] = []
    _rst_block(text.split("\n"), out, [])
    md = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"


def _rst_block(lines: list[str], out: list[str], styles: list[tuple[str, bool]]) -> None:
    i, n = 0, len(lines)

    def heading(title: str, style: tuple[str, bool]) -> None:
        if style not in styles:
            styles.append(style)
        level = min(styles.index(style) + 1, 6)
        out.extend([f"{'#' * level} {_heading_text(title)}", ""])

    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            out.append("")
            i += 1
            continue
        indent = _indent(line)
        ch = _adornment(line)
        # Title with overline and underline.
        if (ch and i + 2 < n and lines[i + 1].strip() and not _adornment(lines[i + 1])
                and _adornment(lines[i + 2]) == ch):
            heading(lines[i + 1].strip(), (ch, True))
            i += 3
            continue
        # Title with underline only (at the start, after a blank line or right after a title).
        if not ch and indent == 0 and i + 1 < n and (i == 0 or not lines[i - 1].strip() or _adornment(lines[i - 1])):
            under = _adornment(lines[i + 1])
            width = len(lines[i + 1].rstrip())
            if under and (width >= len(stripped) or width >= 4):
                heading(stripped, (under, False))
                i += 2
                continue
        if ch and len(stripped) >= 4 and (i + 1 >= n or not lines[i + 1].strip()):
            i += 1  # a transition
            continue
        # Explicit markup: directives, comments, targets, footnotes.
        if stripped == ".." or stripped.startswith(".. "):
            block, i = _take_indented(lines, i + 1, indent)
            _rst_explicit(stripped, block, out, styles)
            continue
        # Doctest block.
        if stripped.startswith(">>>"):
            block = []
            while i < n and lines[i].strip():
                block.append(lines[i])
                i += 1
            out.extend(_fenced(_dedent(block), "pycon"))
            continue
        # Grid or simple table: keep its layout.
        if _TABLE_RE.fullmatch(stripped):
            block = []
            while i < n and lines[i].strip():
                block.append(lines[i])
                i += 1
            out.extend(_fenced(_dedent(block), "text"))
            continue
        # A paragraph; a final "::" starts a literal block.
        para: list[str] = []
        while i < n and lines[i].strip():
            para.append(lines[i].strip())
            i += 1
        literal = para[-1].endswith("::")
        if literal:
            last = para[-1]
            if last == "::":
                para.pop()
            elif last.endswith(" ::"):
                para[-1] = last[:-3].rstrip()
            else:
                para[-1] = last[:-1]
        out.extend(_inline(p) for p in para)
        out.append("")
        if literal:
            j = i
            while j < n and not lines[j].strip():
                j += 1
            if j < n and _indent(lines[j]) > indent:
                block, i = _take_indented(lines, j, indent)
                out.extend(_fenced(_dedent(block)))
            elif j < n and lines[j][0] in _ADORNMENT:  # quoted literal block
                quote = lines[j][0]
                block = []
                while j < n and lines[j][:1] == quote:
                    block.append(lines[j])
                    j += 1
                out.extend(_fenced(block))
                i = j


def _rst_explicit(first: str, block: list[str], out: list[str], styles: list[tuple[str, bool]]) -> None:
    m = _DIRECTIVE_RE.fullmatch(first)
    if m:
        name = m.group(1).lower().split(":")[-1]
        arg = (m.group(2) or "").strip()
        body = _dedent(block)
        options = 0
        while options < len(body) and _OPTION_RE.match(body[options]):
            options += 1  # :linenos:, :caption: …
        content = body[options:]
        while content and not content[0].strip():
            content.pop(0)
        if name in _CODE_DIRECTIVES:
            lang = arg.split()[0] if arg else ("pycon" if name == "doctest" else "")
            out.extend(_fenced(content, "" if name in ("parsed-literal", "productionlist") else lang))
        elif name in _DROP_DIRECTIVES:
            pass
        elif name in _ADMONITIONS or name == "admonition":
            lead = _ADMONITIONS.get(name, "")
            label = f"{lead} {arg}".strip() if name.startswith(("version", "deprecated")) else lead
            rest = "" if name.startswith(("version", "deprecated")) else arg
            head = f"**{label}:**" if label else ""
            out.extend([" ".join(x for x in (head, _inline(rest)) if x), ""])
            _rst_block(content, out, styles)
        else:  # unknown or prose-bearing directive (topic, sidebar, rubric, only …): keep its text
            if arg:
                out.extend([f"**{_heading_text(arg)}**", ""])
            _rst_block(content, out, styles)
        out.append("")
        return
    m = _FOOTNOTE_RE.fullmatch(first)
    if m:
        out.append(f"[{m.group(1)}] {_inline(m.group(2))}")
        _rst_block(_dedent(block), out, styles)
        out.append("")
    # Anything else is a comment, a hyperlink target or a substitution definition: dropped.


# --- Stack Exchange data dump ------------------------------------------------------------------

_SE_SITE_RE = re.compile(
    r"(?:[a-z0-9-]+\.)*(?:stackoverflow\.com|stackexchange\.com|superuser\.com|serverfault\.com|"
    r"askubuntu\.com|mathoverflow\.net|stackapps\.com)")
_BATCH_ROWS = 500
_BATCH_CHARS = 2_000_000


def _dump_site(path: Path) -> str | None:
    """The site a dump belongs to, from its folder (`unix.stackexchange.com/Posts.xml`,
    `stackoverflow.com-Posts/`) or its own name (`superuser.com-Posts.xml`)."""
    names = [path.parent.name, path.name]
    for raw in names:
        name = raw.lower()
        for cut in (".gz", ".xml", ".7z", "-posts", "_posts", ".posts"):
            name = name.removesuffix(cut)
        if _SE_SITE_RE.fullmatch(name):
            return name
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _tags(raw: str | None) -> list[str]:
    """`<python><functools>` (old dumps) or `|python|functools|` (2024 on)."""
    if not raw:
        return []
    return [t for t in re.split(r"[<>|]+", raw) if t]


def _stage_posts(path: Path, gz: bool, db: sqlite3.Connection) -> str | None:
    """Copy questions and answers into `db`, streaming. Returns why the file stopped early, or
    None when it was read to the end."""
    db.executescript("""
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        PRAGMA cache_size = -4000;
        PRAGMA temp_store = FILE;
        CREATE TABLE questions (id INTEGER PRIMARY KEY, title TEXT, body TEXT, score INTEGER,
                                accepted INTEGER, tags TEXT, created TEXT);
        CREATE TABLE answers (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, score INTEGER, body TEXT);
    """)
    questions: list[tuple] = []
    answers: list[tuple] = []
    chars = 0

    def flush() -> None:
        nonlocal chars
        with db:
            db.executemany("INSERT OR REPLACE INTO questions VALUES (?, ?, ?, ?, ?, ?, ?)", questions)
            db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", answers)
        questions.clear()
        answers.clear()
        chars = 0

    error = None
    try:
        with _open_regular(path) as raw, (gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw) as f:
            rows = etree.iterparse(f, events=("end",), tag="row", resolve_entities=False, no_network=True,
                                   load_dtd=False, remove_comments=True, remove_pis=True)
            for _, el in rows:
                kind, pid = el.get("PostTypeId"), _int(el.get("Id"))
                body = el.get("Body") or ""
                if pid is not None and kind == "1":
                    questions.append((pid, el.get("Title") or "", body, _int(el.get("Score")),
                                      _int(el.get("AcceptedAnswerId")), "\n".join(_tags(el.get("Tags"))),
                                      el.get("CreationDate") or ""))
                    chars += len(body)
                elif pid is not None and kind == "2" and _int(el.get("ParentId")) is not None:
                    answers.append((pid, _int(el.get("ParentId")), _int(el.get("Score")), body))
                    chars += len(body)
                # Free the row and the rows before it: the tree never grows.
                el.clear()
                parent = el.getparent()
                while el.getprevious() is not None and parent is not None:
                    del parent[0]
                if len(questions) + len(answers) >= _BATCH_ROWS or chars >= _BATCH_CHARS:
                    flush()
    except etree.XMLSyntaxError as err:
        error = f"malformed XML ({err.msg}, line {err.lineno})" if err.lineno else "malformed XML"
    except (gzip.BadGzipFile, EOFError, zlib.error):
        error = "corrupt gzip"
    except OSError as err:
        raise SkipFile(_os_reason(err)) from None
    flush()
    db.execute("CREATE INDEX answers_by_parent ON answers (parent, score DESC, id)")
    return error


def _post_div(parent: etree._Element, body: str) -> None:
    """The post's HTML, parsed on its own so that stray end tags cannot break the page around it."""
    holder = etree.SubElement(parent, "div", {"class": "js-post-body"})
    if not body.strip():
        return
    try:
        fragment = lxml.html.fragment_fromstring(body, create_parent="div")
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        holder.text = body
        return
    holder.text = fragment.text
    for child in fragment:
        holder.append(child)


def _question_page(row: tuple, answers: list[tuple], canonical: str | None) -> str:
    """A minimal Stack Exchange question page, so that `extract_html` renders the posts with the
    same code-keeping Markdown renderer as saved pages (one implementation)."""
    qid, title, body, score, accepted_id, tags, created = row
    html = etree.Element("html")
    head = etree.SubElement(html, "head")
    if canonical:
        etree.SubElement(head, "link", {"rel": "canonical", "href": canonical})
    page = etree.SubElement(html, "body")
    header = etree.SubElement(page, "div", {"id": "question-header"})
    etree.SubElement(header, "h1").text = title or f"Question {qid}"
    question = etree.SubElement(page, "div", {"id": "question", "class": "question",
                                              "data-questionid": str(qid)})
    if score is not None:
        etree.SubElement(question, "div", {"class": "js-vote-count", "data-value": str(score)})
    if created:
        etree.SubElement(question, "time", {"itemprop": "dateCreated", "datetime": created})
    _post_div(question, body)
    if tags:
        etree.SubElement(question[-1], "p").text = "Tags: " + ", ".join(tags.split("\n"))
    for aid, a_score, a_body in answers:
        cls = "answer accepted-answer" if aid == accepted_id else "answer"
        answer = etree.SubElement(page, "div", {"id": f"answer-{aid}", "class": cls, "data-answerid": str(aid)})
        if a_score is not None:
            etree.SubElement(answer, "div", {"class": "js-vote-count", "data-value": str(a_score)})
        _post_div(answer, a_body)
    return etree.tostring(html, encoding="unicode", method="html")


def _load_posts(path: Path, gz: bool, tmp_dir: str | Path | None) -> Iterator[LoadedDocument]:
    site = _dump_site(path)
    with tempfile.TemporaryDirectory(prefix="copilot-posts-", dir=tmp_dir) as tmp:
        db = sqlite3.connect(os.path.join(tmp, "posts.sqlite"))
        yielded = 0
        try:
            error = _stage_posts(path, gz, db)
            rows = db.execute("SELECT id, title, body, score, accepted, tags, created FROM questions ORDER BY id")
            for row in rows:
                answers = db.execute("SELECT id, score, body FROM answers WHERE parent = ? "
                                     "ORDER BY score DESC, id", (row[0],)).fetchall()
                canonical = f"https://{site}/questions/{row[0]}" if site else None
                doc = extract_html(_question_page(row, answers, canonical))
                if not any(s.text.strip() for s in doc.sections):
                    continue
                doc.kind = "so"
                doc.canonical_url = canonical
                yielded += 1
                yield _finish(doc, path, str(row[0]))
        finally:
            db.close()
    if error:
        raise SkipFile(error, partial=yielded > 0)
    if not yielded:
        raise SkipFile("no Stack Exchange questions found")
