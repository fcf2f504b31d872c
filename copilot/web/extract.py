"""Turn a fetched or saved page into a `Document`: Markdown sections that keep code intact.

Three HTML paths, picked from the page itself:

- Stack Overflow / Stack Exchange question pages: the question and each answer, in page order,
  with vote scores and the accepted mark (lxml, no heuristics).
- Documentation pages (Sphinx, MkDocs): the main content split at headings and API entries, so a
  signature like ``functools.cache(user_function)`` becomes part of the heading path and the code
  examples inside ``<dl><dd>`` keep their line breaks (lxml).
- Anything else: trafilatura finds the main content; we turn its tree into Markdown ourselves and
  put back the original line breaks of code blocks that it flattened.

Page text is untrusted data: nothing is executed or followed, scripts/styles/hidden elements are
dropped, and control characters are stripped from everything we return. The functions take text
or bytes and never a path, so the index can reuse them on saved files.
"""

from __future__ import annotations

import codecs
import re
import threading
from dataclasses import dataclass
from datetime import date
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from copilot.document import Document, Section

__all__ = ["decode_body", "extract_html", "extract_text"]

# Longer input is cut: it bounds the time a hostile or broken page can cost us.
_MAX_CHARS = 8_000_000

# ---------------------------------------------------------------------------------------------
# Text hygiene
# ---------------------------------------------------------------------------------------------

# C0 controls except \t and \n, DEL, C1 controls (ESC included), invisible format characters
# that split identifiers (zero-width space, word joiner, BOM, soft hyphen) and the bidirectional
# overrides/isolates that can make text display differently from what it is.
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ue000-\ue001]"
)
# Whole terminal escape sequences, 7- and 8-bit: CSI (ESC [ or \x9b, parameters, final byte), and
# OSC, DCS, SOS, PM and APC strings closed by BEL or ST within 1024 characters (OSC 52 writes the
# clipboard, OSC 8 makes links). Removed whole, so their parameters do not stay behind as text
# (`[2J`, `]52;c;…`). A stray or unclosed ESC goes alone, with the control characters, so it
# cannot swallow the rest of a page.
_ESCAPE_START_RE = re.compile("[\x1b\x90\x98\x9b\x9d\x9e\x9f]")
_ESCAPE_SEQUENCE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]{0,1024}(?:\x07|\x1b\\|\x9c)")
_BR = "\ue000"  # private marker for a hard line break inside inline text (stripped from input)
_INLINE_WS_RE = re.compile(r"[ \t\n\r\f\v\xa0]+")
_BR_RE = re.compile(r" ?\ue000 ?")
_MANY_NL_RE = re.compile(r"\n{3,}")


def _clean(text: str) -> str:
    """Strip terminal escape sequences whole (an ESC stripped alone would leave `]52;c;…` or
    `[2J` behind as text), then control characters (keeping \\n and \\t), after normalising
    line ends."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _ESCAPE_START_RE.search(text):
        text = _ESCAPE_SEQUENCE_RE.sub("", text)
    return _CONTROL_RE.sub("", text)


def _collapse(text: str) -> str:
    """Inline whitespace to single spaces; hard line breaks become newlines."""
    text = _INLINE_WS_RE.sub(" ", text)
    if _BR in text:
        text = _BR_RE.sub("\n", text)
        text = "\n".join(line.strip() for line in text.split("\n"))
        text = _MANY_NL_RE.sub("\n\n", text)
    return text.strip()


def _text(el) -> str:
    return "".join(el.itertext())


def _plain(el) -> str:
    """One-line plain text of an element (headings, signatures): no Markdown, no permalinks."""
    return _collapse(_text(el)).strip().rstrip("¶§").strip()


def _classes(el) -> set[str]:
    return set((el.get("class") or "").split())


def _has_class(name: str) -> str:
    """XPath predicate body: the element has `name` among its class tokens."""
    # The plain contains() is cheap and usually false, so it guards the exact token test.
    return (f"(contains(@class, '{name}') and "
            f"contains(concat(' ', normalize-space(@class), ' '), ' {name} '))")


def _drop(el) -> None:
    """Remove an element but keep the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


# ---------------------------------------------------------------------------------------------
# Charset
# ---------------------------------------------------------------------------------------------

_CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.I)
_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.I)
# WHATWG label handling for the labels that matter in practice.
_CODEC_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "l1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252", "iso_8859-1": "cp1252",
    "gb2312": "gb18030", "gbk": "gb18030", "x-sjis": "shift_jis", "unicode": "utf-8",
}


def _codec(label: str | bytes | None) -> str | None:
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    name = _CODEC_ALIASES.get(label.strip().lower(), label.strip().lower())
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None  # base64, rot13 and friends are not charsets
    return info.name


def decode_body(body: bytes, content_type_header: str | None) -> str:
    """Bytes to text. Order: BOM; UTF-8 when the bytes are valid UTF-8 (a declared UTF-16/32
    comes first); the header's charset; ``<meta charset>``; charset-normalizer's guess.
    Never raises; undecodable bytes become U+FFFD."""
    try:
        return _decode(body, content_type_header)
    except Exception:  # a decoder must not take the page down with it
        return bytes(body or b"").decode("utf-8", errors="replace")


# How much more "chaos" (charset-normalizer's mess ratio) cp1252 may show than the best guess
# and still win: the few letters in which the Western single-byte charsets differ.
NEAR_TIE_CHAOS = 0.02


def _decode(body: bytes, content_type_header: str | None) -> str:
    if not body:
        return ""
    body = bytes(body)
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            return body.decode(name, errors="replace")
    declared: list[str] = []
    if content_type_header:
        m = _CHARSET_RE.search(content_type_header.encode("latin-1", "ignore"))
        if m:
            declared.append(m.group(1).decode("ascii", "ignore"))
    m = _META_CHARSET_RE.search(body[:8192])
    if m:
        label = m.group(1).decode("ascii", "ignore")
        # A document that can declare its charset in ASCII is not UTF-16 (WHATWG rule).
        declared.append("utf-8" if label.lower().startswith("utf-16") else label)
    names = [n for n in map(_codec, declared) if n]
    # Bytes that are valid UTF-8 are UTF-8 unless the server said UTF-16/32: servers often
    # label UTF-8 pages iso-8859-1, and text in a legacy charset is almost never valid UTF-8.
    wide = [n for n in names[:1] if n.startswith(("utf-16", "utf-32"))]
    for name in [*wide, "utf-8", *names]:
        try:
            return body.decode(name)
        except UnicodeDecodeError as err:
            if name == "utf-8" and err.start >= len(body) - 3 and err.reason == "unexpected end of data":
                # Cut mid-character (a size limit): UTF-8 if the rest proves it.
                head = body[:err.start].decode("utf-8")
                if not head.isascii():
                    return head
        except (LookupError, ValueError, TypeError):
            continue
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(body[:200_000]))
        # Classic Mac OS charsets are all but extinct, yet charset-normalizer often ranks one first
        # (cp1251 Russian comes out as mac_greek): use them only when nothing else fits.
        matches = [m for m in matches if not m.encoding.startswith("mac_")] or matches
        guess = matches[0].encoding if matches else None
        for match in matches:  # on a (near) tie, the web's most common legacy charset wins
            # Western text differs between the single-byte charsets in a few letters only, so their
            # scores come close: Latin-1 "crème brûlée" came out first as cp1257 "crčme brūlée".
            tied = (match.chaos - matches[0].chaos <= NEAR_TIE_CHAOS
                    and match.coherence >= matches[0].coherence)
            if tied and "cp1252" in (match.encoding, *match.could_be_from_charset):
                guess = "cp1252"
                break
        # Short inputs get wild guesses; UTF-16/32 text without a single NUL byte is one.
        if guess and not (guess.startswith(("utf_16", "utf_32")) and b"\x00" not in body):
            return body.decode(guess, errors="replace")
    except Exception:
        pass
    return body.decode("cp1252", errors="replace")


# ---------------------------------------------------------------------------------------------
# Parsing and cleaning
# ---------------------------------------------------------------------------------------------

_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_local = threading.local()


def _parser() -> lxml.html.HTMLParser:
    # lxml parsers must not be shared between threads; pages are extracted in a thread pool.
    parser = getattr(_local, "parser", None)
    if parser is None:
        # huge_tree lifts libxml2's nesting limit (256), past which it silently drops the rest
        # of the page; input size is bounded by _MAX_CHARS and deep trees by RecursionError
        # fallbacks.
        parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True,
                                      default_doctype=False, huge_tree=True)
        _local.parser = parser
    return parser


def _parse(text: str):
    text = _clean(_XML_DECL_RE.sub("", text[:_MAX_CHARS], count=1))
    if not text.strip():
        return None
    try:
        root = lxml.html.document_fromstring(text, parser=_parser())
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    return root if root is not None and isinstance(root.tag, str) else None


_NOISE_TAGS = ("script", "style", "noscript", "template", "iframe", "frame", "frameset", "object",
               "embed", "applet", "svg", "canvas", "button", "input", "select", "textarea",
               "option", "form", "nav", "audio", "video", "source", "track", "map", "dialog")
_HIDDEN_CLASSES = frozenset(("d-none", "hidden", "sr-only", "visually-hidden",
                             "screen-reader-text", "v-visible-sr"))
_HIDDEN_STYLE_RE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)


def _is_hidden(el) -> bool:
    if el.get("hidden") is not None or el.get("aria-hidden") == "true":
        return True
    cls = el.get("class")
    if cls and not _HIDDEN_CLASSES.isdisjoint(cls.split()):
        return True
    style = el.get("style")
    return bool(style and _HIDDEN_STYLE_RE.search(style))


def _strip_noise(el) -> None:
    """Drop what a reader never sees: scripts, styles, forms, navigation, hidden elements,
    permalink anchors.

    A hidden element holding most of the page's text is kept: that is an anti-flicker
    ``<body style="display:none">`` or a saved page frozen with a dialog open, not a hidden
    aside, and dropping it would leave nothing.
    """
    etree.strip_elements(el, *_NOISE_TAGS, with_tail=False)
    hidden, anchors = [], []
    for node in el.iter():
        if not isinstance(node.tag, str):
            continue
        if node.tag == "a" and "headerlink" in _classes(node):
            anchors.append(node)
        elif _is_hidden(node):
            hidden.append(node)
    if hidden:
        most = max(2000, len(_text(el)) // 2)
        hidden = [n for n in hidden if n is not el and len(_text(n)) <= most]
    for node in anchors + hidden:
        _drop(node)


# ---------------------------------------------------------------------------------------------
# Page metadata
# ---------------------------------------------------------------------------------------------


@dataclass
class _Meta:
    og_title: str = ""
    html_title: str = ""
    canonical: str | None = None
    date: str | None = None


_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    m = _DATE_RE.search(value)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return None


def _http_url(href: str | None, base: str | None) -> str | None:
    if not href:
        return None
    href = _clean(href).strip()
    if base:
        try:
            href = urljoin(base, href)
        except ValueError:
            return None
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    return href if parts.scheme in ("http", "https") and parts.hostname else None


def host_of(url: str | None) -> str:
    """The lower-case host name of a URL; "" when there is none."""
    if not url:
        return ""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _first(root, xpath: str) -> str:
    for value in root.xpath(xpath):
        value = _collapse(_clean(str(value)))
        if value:
            return value
    return ""


_DATE_META_KEYS = ("article:published_time", "date", "dc.date.issued", "dcterms.created")


def _read_meta(root, url: str | None) -> _Meta:
    meta = _Meta()
    metas: dict[str, str] = {}
    for el in root.iter("meta"):  # one pass over <meta>, wherever a saved page put them
        content = _collapse(_clean(el.get("content") or ""))
        if not content:
            continue
        for key in (el.get("property"), el.get("name")):
            if key:
                metas.setdefault(key.strip().lower(), content)
    meta.og_title = metas.get("og:title", "")
    title = next(root.iter("title"), None)
    meta.html_title = _collapse(_clean(_text(title))) if title is not None else ""
    for link in root.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split():
            meta.canonical = _http_url(link.get("href"), url)
            if meta.canonical:
                break
    if not meta.canonical:
        meta.canonical = _http_url(metas.get("og:url"), url)
    candidates = [metas.get("article:published_time")]
    candidates += root.xpath("//*[@itemprop='datePublished' or @itemprop='dateCreated']"
                             "/@*[name()='content' or name()='datetime']")
    candidates += [metas.get(k) for k in _DATE_META_KEYS[1:]]
    candidates += [t.get("datetime") for t in root.iter("time")]
    meta.date = next((d for d in map(_iso_date, candidates) if d), None)
    return meta


# ---------------------------------------------------------------------------------------------
# HTML -> Markdown
# ---------------------------------------------------------------------------------------------


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Enter:
    """Start of an API entry (a `dt` signature); its `dd` follows until `_Exit`."""

    sig: str


class _Exit:
    pass


_EXIT = _Exit()

_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2", "h3",
    "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "menu", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
))
_SKIP_INLINE = frozenset(("img", "picture", "area", "wbr", "head", "title", "meta", "link", "base"))
_API_DL_CLASSES = frozenset((
    "py", "c", "cpp", "js", "std", "rst", "describe", "object", "function", "class", "method",
    "attribute", "data", "exception", "cmdoption", "option", "envvar", "opcode", "decorator",
    "classmethod", "staticmethod", "property", "macro", "member", "type", "var", "struct",
    "union", "enum", "enumerator", "module", "pdbcommand",
))
_PLAIN_DL_CLASSES = frozenset(("field-list", "glossary", "footnote", "citation", "option-list"))
_LANG_RE = re.compile(r"^(?:language|lang|highlight|brush:)-?([A-Za-z0-9_+#.-]{1,24})$")
_LANG_ALIASES = {"python3": "python", "py": "python", "py3": "python", "sh": "shell"}
_NO_LANG = frozenset(("default", "none", "text", "plain", "plaintext", "nohighlight", "notranslate",
                      "prettyprint", "prettyprint-override", "output", "highlight"))


def _inline_code(text: str) -> str:
    if "`" not in text:
        return f"`{text}`"
    longest = max(len(run) for run in re.findall(r"`+", text))
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def _wrap(inner: str, mark: str) -> str:
    core = inner.strip(" \t\n\r\f\v\xa0" + _BR)
    if not core:
        return inner
    start = inner.find(core[0])
    lead, trail = inner[:start], inner[start + len(core):]
    return f"{lead}{mark}{core}{mark}{trail}"


def _pre_text(el) -> str:
    if el.find(".//br") is None:
        return _text(el)
    parts: list[str] = []

    def walk(node) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if isinstance(child.tag, str):
                if child.tag == "br":
                    parts.append("\n")
                else:
                    walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(el)
    return "".join(parts)


def _code_lang(el) -> str:
    nodes = [el]
    inner = el.find("code")  # <pre><code class="language-x">
    if inner is None and len(el) and isinstance(el[0].tag, str):
        inner = el[0]  # trafilatura's code renamed to pre
    if inner is not None:
        nodes.append(inner)
    parent = el.getparent()
    for _ in range(2):
        if parent is None:
            break
        nodes.append(parent)
        parent = parent.getparent()
    for node in nodes:
        for cls in (node.get("class") or "").split():
            m = _LANG_RE.match(cls)
            if m:
                lang = m.group(1).lower()
                if lang in _NO_LANG:
                    return ""
                return _LANG_ALIASES.get(lang, lang)
    return ""


def _fence(code: str, lang: str = "") -> str:
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{lang}\n{code}\n{fence}"


def _code_block(text: str, lang: str = "") -> str | None:
    lines = [line.rstrip() for line in text.replace("\xa0", " ").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    return _fence("\n".join(lines), lang)


def _is_api_dl(dl) -> bool:
    classes = _classes(dl)
    if classes & _PLAIN_DL_CLASSES:
        return False
    dt = dl.find("dt")
    if dt is None:
        return False
    dt_classes = _classes(dt)
    if "sig" in dt_classes or "sig-object" in dt_classes:
        return True
    return bool(classes & _API_DL_CLASSES and dt.get("id"))


class _Renderer:
    """Renders an lxml subtree to a list of Markdown blocks and heading markers.

    mode "docs": headings and API entries become markers, blockquotes are plain indentation;
    mode "article": headings become markers; mode "so": headings become bold lines (a post is
    one section).
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.headings = mode in ("docs", "article")

    def blocks(self, el) -> list:
        out: list = []
        buf: list[str] = []
        if el.text:
            buf.append(el.text)
        for child in el:
            tag = child.tag
            if isinstance(tag, str):
                if tag in _BLOCK_TAGS or (tag not in _SKIP_INLINE and self._has_block(child)):
                    self._flush(buf, out)
                    out.extend(self.block(child))
                else:
                    buf.append(self.inline(child))
            if child.tail:
                buf.append(child.tail)
        self._flush(buf, out)
        return out

    @staticmethod
    def _has_block(el) -> bool:
        return any(node is not el for node in el.iter(*_BLOCK_TAGS))

    @staticmethod
    def _flush(buf: list[str], out: list) -> None:
        if buf:
            text = _collapse("".join(buf))
            buf.clear()
            if text:
                out.append(text)

    def inline(self, el) -> str:
        tag = el.tag
        if tag == "br":
            return _BR
        if tag in _SKIP_INLINE:
            return ""
        if tag in ("code", "kbd", "samp", "tt"):
            text = _collapse(_text(el))
            return _inline_code(text) if text else ""
        parts = [el.text or ""]
        for child in el:
            if isinstance(child.tag, str):
                parts.append(self.inline(child))
            if child.tail:
                parts.append(child.tail)
        inner = "".join(parts)
        if tag in ("strong", "b"):
            return _wrap(inner, "**")
        if tag in ("em", "i", "cite", "dfn"):
            return _wrap(inner, "*")
        if tag in ("del", "s", "strike"):
            return _wrap(inner, "~~")
        return inner

    def block(self, el) -> list:
        tag = el.tag
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            text = _plain(el)
            if not text:
                return []
            level = int(tag[1])
            if self.headings and level <= 4:  # h5/h6 are too fine to be sections
                return [_Heading(level, text)]
            return [f"**{text}**"]
        if tag == "pre":
            block = _code_block(_pre_text(el), _code_lang(el))
            return [block] if block else []
        if tag in ("ul", "ol", "menu"):
            text = self.list(el)
            return [text] if text else []
        if tag == "dl":
            return self.dl(el)
        if tag == "table":
            return self.table(el)
        if tag == "blockquote":
            if self.mode == "docs":  # Sphinx uses blockquote for indentation, not quotes
                return self.blocks(el)
            text = "\n\n".join(self.flatten(self.blocks(el)))
            if not text:
                return []
            return ["\n".join(f"> {line}" if line else ">" for line in text.split("\n"))]
        if tag == "hr":
            return []
        if tag == "p" and "admonition-title" in _classes(el):
            text = _plain(el)
            return [f"**{text}**"] if text else []
        return self.blocks(el)

    def flatten(self, items: list) -> list[str]:
        """Markers to plain Markdown, for places that cannot hold sections (lists, cells)."""
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, _Heading):
                out.append(f"**{item.text}**")
            elif isinstance(item, _Enter) and item.sig:
                out.append(f"**{item.sig}**")
        return out

    def list(self, el) -> str:
        ordered = el.tag == "ol"
        try:
            number = int(el.get("start") or 1)
        except ValueError:
            number = 1
        rendered = []
        for li in el:
            if not isinstance(li.tag, str):
                continue
            items = self.flatten(self.block(li) if li.tag in ("ul", "ol") else self.blocks(li))
            if not items:
                continue
            if li.tag in ("ul", "ol"):  # a list nested without its <li>
                rendered.append("\n".join("  " + line for line in "\n".join(items).split("\n")))
                continue
            marker = f"{number}. " if ordered else "- "
            number += 1
            pad = " " * len(marker)
            lines = "\n".join(items).split("\n")
            rendered.append(marker + lines[0] + "".join(
                "\n" + (pad + line if line else "") for line in lines[1:]))
        return "\n".join(rendered)

    def dl(self, el) -> list:
        api = self.mode == "docs" and _is_api_dl(el)
        out: list = []
        terms: list = []
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            if tag == "dt":
                terms.append(child)
            elif tag == "dd":
                if api:
                    sigs = [s for s in (_plain(t) for t in terms) if s]
                    out.append(_Enter(sigs[0] if sigs else ""))
                    out.extend(f"`{s}`" if "`" not in s else s for s in sigs[1:])
                    out.extend(self.blocks(child))
                    out.append(_EXIT)
                else:
                    out.extend(self._terms(terms))
                    out.extend(self.blocks(child))
                terms = []
            elif tag == "div":  # HTML5 allows <div> groups inside <dl>
                out.extend(self.dl(child))
            else:
                out.extend(self.block(child) if tag in _BLOCK_TAGS else [])
        out.extend(self._terms(terms))
        return out

    def _terms(self, terms: list) -> list[str]:
        out = []
        for term in terms:
            text = _collapse(" ".join(self.flatten(self.blocks(term)))).rstrip("¶").strip()
            if text:
                out.append("**" + text.replace("**", "") + "**")
        return out

    def table(self, el) -> list:
        if el.find(".//pre") is not None or el.find(".//table") is not None:
            out: list = []  # code or nested tables: keep the content, drop the grid
            for row in el.iter("tr"):
                for cell in row:
                    if isinstance(cell.tag, str) and cell.tag in ("td", "th"):
                        out.extend(self.blocks(cell))
            return out
        rows = []
        for row in el.iter("tr"):
            cells = [self._cell(c) for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]
            if any(cells):
                rows.append(cells)
        caption = el.find("caption")
        out = [t for t in self.flatten(self.blocks(caption))] if caption is not None else []
        if not rows:
            return out
        width = max(len(r) for r in rows)
        if width == 1 or len(rows) == 1:  # layout, not data
            out.extend(" ".join(c for c in r if c) for r in rows)
            return out
        lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
        lines.insert(1, "|" + " --- |" * width)
        out.append("\n".join(lines))
        return out

    def _cell(self, cell) -> str:
        text = " ".join(self.flatten(self.blocks(cell)))
        return text.replace("\n", " ").replace("|", "\\|").strip()


def _norm_title(text: str) -> str:
    return _collapse(text).casefold()


def _assemble(items: list, title: str) -> list[Section]:
    """Cut renderer output into sections; heading_path starts with the page title."""
    sections: list[Section] = []
    heads: list[tuple[int, str]] = []
    entries: list[str] = []
    buf: list[str] = []
    title_key = _norm_title(title)
    title_seen = False

    def path() -> list[str]:
        return ([title] if title else []) + [h for _, h in heads] + entries

    current = path()

    def flush() -> None:
        text = "\n\n".join(buf).strip()  # blocks are stripped; code keeps its blank lines
        buf.clear()
        sections.append(Section(heading_path=list(current), text=text))

    for item in items:
        if isinstance(item, str):
            buf.append(item)
        elif isinstance(item, _Heading):
            flush()
            entries.clear()
            if not title_seen and _norm_title(item.text) == title_key:
                title_seen = True
                heads.clear()
            else:
                while heads and heads[-1][0] >= item.level:
                    heads.pop()
                heads.append((item.level, item.text))
            current = path()
        elif isinstance(item, _Enter):
            flush()
            entries.append(item.sig or "…")
            current = path()
        elif isinstance(item, _Exit):
            flush()
            if entries:
                entries.pop()
            current = path()
    flush()
    return _prune(sections)


def _prune(sections: list[Section]) -> list[Section]:
    """Drop empty sections whose heading survives in another section's path."""
    covered: set[tuple[str, ...]] = set()
    for s in sections:
        path = tuple(s.heading_path)
        upto = len(path) + 1 if s.text else len(path)
        for i in range(upto):
            covered.add(path[:i])
    kept, seen_empty = [], set()
    for s in sections:
        if s.text:
            kept.append(s)
            continue
        path = tuple(s.heading_path)
        if path and path not in covered and path not in seen_empty:
            seen_empty.add(path)
            kept.append(s)
    return kept


def _sanitize(doc: Document) -> Document:
    doc.title = _collapse(_clean(doc.title))
    for s in doc.sections:
        s.heading_path = [_collapse(_clean(h)) for h in s.heading_path]
        s.text = _clean(s.text)
    return doc


def _render(el, mode: str) -> list:
    try:
        return _Renderer(mode).blocks(el)
    except RecursionError:  # absurdly deep markup: fall back to its text
        text = _collapse(_text(el))
        return [text] if text else []


def _render_sections(el, mode: str, title: str) -> list[Section]:
    return _assemble(_render(el, mode), title)


# ---------------------------------------------------------------------------------------------
# Stack Overflow / Stack Exchange
# ---------------------------------------------------------------------------------------------

_SO_HOSTS = ("stackoverflow.com", "stackexchange.com", "superuser.com", "serverfault.com",
             "askubuntu.com", "mathoverflow.net", "stackapps.com")
_QUESTION_XPATH = (
    "//*[@id='question' or (@data-questionid and " + _has_class("question") + ")]"
)
_ANSWER_XPATH = (
    "//*[@data-answerid and (" + _has_class("answer") + " or starts-with(@id, 'answer-'))]"
)
_POST_BODY_XPATH = (
    ".//*[" + _has_class("js-post-body") + " or " + _has_class("post-text") + "]"
)
_VOTE_XPATH = (
    ".//*[" + _has_class("js-vote-count") + " or " + _has_class("vote-count-post")
    + " or @itemprop='upvoteCount']"
)
_SCORE_RE = re.compile(r"^([-−]?)(\d+(?:[.,]\d+)?)\s*([km]?)$", re.I)


def _is_so_host(host: str) -> bool:
    return any(host == h or host.endswith("." + h) for h in _SO_HOSTS)


def _score(post) -> int | None:
    for node in post.xpath(_VOTE_XPATH):
        for raw in (node.get("data-value"), node.get("content"), _text(node)):
            m = _SCORE_RE.match(_collapse(raw or ""))
            if not m:
                continue
            value = float(m.group(2).replace(",", "."))
            value *= {"k": 1_000, "m": 1_000_000}.get(m.group(3).lower(), 1)
            return -int(value) if m.group(1) else int(value)
    return None


def _post_body(post):
    found = post.xpath(_POST_BODY_XPATH)
    if found:
        return found[0]
    found = post.xpath(".//*[@itemprop='text']")
    return found[0] if found else None


def _post_text(post) -> str:
    body = _post_body(post)
    if body is None:
        return ""
    items = _Renderer("so").flatten(_render(body, "so"))
    return "\n\n".join(items).strip()


def _so_title(root, meta: _Meta) -> str:
    # Not any a.question-hyperlink: the "Linked" and "Related" sidebars use that class too.
    for xpath in ("//*[@id='question-header']//h1", "//h1[@itemprop='name']"):
        for el in root.xpath(xpath):
            text = _plain(el)
            if text:
                return text
    if meta.og_title:
        return meta.og_title
    title = meta.html_title
    # "tag - Question title - Stack Overflow"
    title = re.sub(r"\s+-\s+[^-]*(Stack Overflow|Stack Exchange|Super User|Server Fault|Ask Ubuntu)"
                   r"[^-]*$", "", title)
    return re.sub(r"^[\w.#+-]+ - ", "", title)


def _extract_so(root, url: str | None, meta: _Meta) -> Document | None:
    questions = root.xpath(_QUESTION_XPATH)
    if not questions:
        return None
    question = questions[0]
    if not _is_so_host(host_of(meta.canonical) or host_of(url)) and _post_body(question) is None:
        return None  # an element called "question" on some other site
    answers = [a for a in root.xpath(_ANSWER_XPATH) if "deleted-answer" not in _classes(a)]
    chosen = set(answers)
    answers = [a for a in answers if not any(p in chosen for p in a.iterancestors())]
    title = _so_title(root, meta)
    answer_nodes = set(answers)

    when = None
    for t in root.xpath("//time[@itemprop='dateCreated']"):
        if not any(p in answer_nodes for p in t.iterancestors()):
            when = _iso_date(t.get("datetime"))
            break
    if not when:
        when = _iso_date(_first(question, ".//*[" + _has_class("owner") + "]//*[@title]/@title"))

    for post in [question, *answers]:
        body = _post_body(post)
        if body is not None:
            _strip_noise(body)
    sections = [Section(heading_path=[title], text=_post_text(question), score=_score(question),
                        role="question")]
    for answer in answers:
        score = _score(answer)
        accepted = ("accepted-answer" in _classes(answer)
                    or answer.get("itemprop") == "acceptedAnswer")
        label = ", ".join(p for p in ("accepted" if accepted else "",
                                      f"score {score}" if score is not None else "") if p)
        heading = f"Answer ({label})" if label else "Answer"
        sections.append(Section(heading_path=[title, heading], text=_post_text(answer),
                                score=score, accepted=accepted, role="answer"))
    canonical = meta.canonical
    return Document(title=title, kind="so", sections=sections, url=url, canonical_url=canonical,
                    date=when or meta.date, site=host_of(canonical or url))


# ---------------------------------------------------------------------------------------------
# Documentation (Sphinx, MkDocs)
# ---------------------------------------------------------------------------------------------

_DOCS_SIGNS = (
    "//meta[@name='generator' and (starts-with(translate(@content, 'SPHINXMKDOCSUTL', "
    "'sphinxmkdocsutl'), 'sphinx') or starts-with(translate(@content, 'SPHINXMKDOCSUTL', "
    "'sphinxmkdocsutl'), 'mkdocs') or starts-with(translate(@content, 'SPHINXMKDOCSUTL', "
    "'sphinxmkdocsutl'), 'docutils'))]",
    "//script[@id='documentation_options' or contains(@src, 'documentation_options.js')]",
    "//*[" + " or ".join(_has_class(c) for c in (
        "sphinxsidebar", "md-content", "md-content__inner", "rst-content", "wy-nav-content",
        "bd-article", "sphinx-tabs")) + "]",
    "//*[@data-md-component]",
    "//dl[dt[" + _has_class("sig") + "]]",
)
_DOCS_MAIN = (
    "//article[" + _has_class("md-content__inner") + "]",
    "//*[" + _has_class("md-content") + "]",
    "//article[" + _has_class("bd-article") + "]",  # pydata theme: its <main> holds sidebars
    "//*[@role='main']",
    "//div[" + _has_class("body") + "]",
    "//main",
    "//article",
)
# Navigation and chrome inside the main element. docutils' <aside class="sidebar"> is content
# (examples live there), so it stays.
_DOCS_JUNK_CLASSES = frozenset((
    "headerlink", "sphinxsidebar", "related", "footer", "md-sidebar", "md-content__button",
    "md-source-file", "md-footer", "md-clipboard", "rst-footer-buttons", "prev-next-area",
    "bd-sidebar", "bd-toc", "linenos", "lineno", "viewcode-link", "viewcode-back", "copybutton",
    "breadcrumbs", "wy-breadcrumbs", "edit-this-page", "clearer", "bd-sidebar-primary",
    "bd-sidebar-secondary", "bd-header-article", "bd-footer-article", "prev-next-footer",
    "toc-drawer", "related-pages", "sidebar-drawer",
))
_DOCS_JUNK_ROLES = frozenset(("navigation", "search", "contentinfo"))


def _drop_docs_junk(main) -> None:
    junk = []
    for el in main.iter():  # one pass in Python beats one XPath pass per class here
        if not isinstance(el.tag, str):
            continue
        cls = el.get("class")
        if (el.tag == "footer" or el.get("role") in _DOCS_JUNK_ROLES
                or (cls and not _DOCS_JUNK_CLASSES.isdisjoint(cls.split()))):
            junk.append(el)
    for el in junk:
        _drop(el)


def _looks_like_docs(root) -> bool:
    return any(root.xpath(f"boolean({xpath})") for xpath in _DOCS_SIGNS)


def _extract_docs(root, url: str | None, meta: _Meta) -> Document | None:
    main = None
    for xpath in _DOCS_MAIN:
        found = root.xpath(xpath)
        if found:
            main = found[0]
            break
    if main is None:
        return None
    _drop_docs_junk(main)
    h1 = main.xpath(".//h1")
    title = (_plain(h1[0]) if h1 else "") or meta.og_title or _docs_title(meta.html_title)
    sections = _render_sections(main, "docs", title)
    if not sections:
        return None
    canonical = meta.canonical
    return Document(title=title, kind="docs", sections=sections, url=url, canonical_url=canonical,
                    date=meta.date, site=host_of(canonical or url))


def _docs_title(html_title: str) -> str:
    # "functools — Higher-order functions — Python 3.11 documentation": drop the suffix only.
    return re.sub(r"\s+[—|]\s+[^—|]*$", "", html_title) or html_title


# ---------------------------------------------------------------------------------------------
# Generic pages: trafilatura for the main content, our own Markdown
# ---------------------------------------------------------------------------------------------

_WS_RE = re.compile(r"\s+")
# trafilatura's XML vocabulary to HTML tags our renderer knows.
_TRAF_HI = {"#b": "b", "#i": "i", "#t": "code", "#u": "span", "#sub": "sub", "#sup": "sup"}
_TRAF_BLOCK_PARENTS = frozenset(("body", "main", "doc", "div", "quote", "text"))


def _code_key(text: str) -> str:
    return _WS_RE.sub("", text)


def _to_html_vocabulary(body, originals: dict[str, tuple[str, str]]) -> None:
    """Rename trafilatura's tags in place; code it flattened gets its original lines back."""
    for el in list(body.iter()):
        tag = el.tag
        if not isinstance(tag, str):
            continue
        if tag in ("code", "quote", "p") and originals:
            block = tag != "code" or (el.getparent() is not None
                                      and el.getparent().tag in _TRAF_BLOCK_PARENTS)
            original = originals.get(_code_key(_text(el))) if block else None
            if original is not None:
                text, lang = original
                for child in list(el):
                    el.remove(child)
                el.tag, el.text = "pre", text
                el.attrib.clear()
                if lang:
                    el.set("class", f"language-{lang}")
                continue
        if tag == "head":
            rend = el.get("rend") or "h2"
            el.tag = rend if re.fullmatch(r"h[1-6]", rend) else "h2"
        elif tag == "list":
            el.tag = {"ol": "ol", "dl": "dl"}.get(el.get("rend") or "", "ul")
        elif tag == "item":
            rend = el.get("rend") or ""
            el.tag = "dt" if rend.startswith("dt") else "dd" if rend.startswith("dd") else "li"
        elif tag == "hi":
            el.tag = _TRAF_HI.get(el.get("rend") or "", "span")
        elif tag == "lb":
            el.tag = "br"
        elif tag == "quote":
            el.tag = "blockquote"
        elif tag == "code":
            parent = el.getparent()
            multiline = "\n" in _text(el)
            if multiline or (parent is not None and parent.tag in _TRAF_BLOCK_PARENTS):
                el.tag = "pre"
        elif tag == "row":
            el.tag = "tr"
        elif tag == "cell":
            el.tag = "th" if el.get("role") == "head" else "td"
        elif tag in ("ref", "graphic", "del"):
            el.tag = {"ref": "span", "graphic": "img", "del": "del"}[tag]
        elif tag in ("doc", "main", "text", "comments"):
            el.tag = "div"


def _extract_generic(root, url: str | None, meta: _Meta) -> Document:
    originals: dict[str, tuple[str, str]] = {}
    for pre in root.iter("pre"):
        text = _pre_text(pre)
        key = _code_key(text)
        if key and "\n" in text.strip():
            originals.setdefault(key, (text, _code_lang(pre)))

    title = meta.og_title
    when = meta.date
    body = None
    try:
        import trafilatura

        result = trafilatura.bare_extraction(
            root, include_formatting=True, include_tables=True, include_comments=False,
            include_links=False, include_images=False, with_metadata=True, deduplicate=False)
    except Exception:  # trafilatura failing on a page must not fail the page
        result = None
    if result is not None:
        body = getattr(result, "body", None)
        title = title or (getattr(result, "title", None) or "")
        when = when or _iso_date(getattr(result, "date", None))
    if not title:
        h1 = root.xpath("//h1")
        title = (_plain(h1[0]) if h1 else "") or meta.html_title

    if body is not None and len(body):
        _to_html_vocabulary(body, originals)
        sections = _render_sections(body, "article", title)
    else:  # too little text for trafilatura: render the page's main element ourselves
        main = root.xpath("//main") or root.xpath("//article") or root.xpath("//body") or [root]
        for junk in main[0].xpath(".//header|.//footer|.//aside"):
            _drop(junk)
        sections = _render_sections(main[0], "article", title)
    sections = [s for s in sections if s.text or len(s.heading_path) > 1]
    canonical = meta.canonical
    return Document(title=title, kind="article", sections=sections, url=url,
                    canonical_url=canonical, date=when, site=host_of(canonical or url))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def extract_html(html: str | bytes, url: str | None = None) -> Document:
    """Extract a page into Markdown sections. Never follows links, never runs page code.

    The page kind is detected from the DOM (and the URL when given): Stack Overflow/Stack
    Exchange question → kind "so"; Sphinx/MkDocs documentation → "docs"; else "article".
    A page with nothing readable gives a Document without sections.
    """
    text = decode_body(html, None) if isinstance(html, bytes | bytearray) else (html or "")
    root = _parse(text)
    if root is None:
        return Document(title="", kind="article", url=url, site=host_of(url))
    meta = _read_meta(root, url)
    body = root.find("body")
    host = host_of(meta.canonical) or host_of(url)
    is_so = _is_so_host(host) or root.xpath(f"boolean({_QUESTION_XPATH})")
    looks_like_docs = not is_so and _looks_like_docs(root)  # before scripts go: one is a sign
    etree.strip_elements(root, "script", "style", "noscript", "template", with_tail=False)
    doc = None
    if is_so:
        doc = _extract_so(root, url, meta)
    if doc is None:
        _strip_noise(body if body is not None else root)
        if looks_like_docs:
            doc = _extract_docs(root, url, meta)
        if doc is None:
            doc = _extract_generic(root, url, meta)
    return _sanitize(doc)


_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")


def extract_text(text: str, url: str | None = None, title: str | None = None) -> Document:
    """Plain text or Markdown: split at ATX headings (``#``…) outside code fences; fences kept.

    The title is `title`, else the first heading, else the first line.
    """
    text = _clean(text or "")
    items: list = []
    buf: list[str] = []
    fence: str | None = None
    first_heading = ""

    def flush() -> None:
        chunk = "\n".join(buf).strip("\n")
        buf.clear()
        if chunk.strip():
            items.append(chunk)

    for line in text.split("\n"):
        m = _FENCE_RE.match(line)
        if fence is not None:
            buf.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        if m:
            fence = m.group(1)
            buf.append(line)
            continue
        h = _ATX_RE.match(line)
        if h and len(h.group(1)) <= 4:  # h5/h6 stay in the text, as in HTML pages
            flush()
            heading = _collapse(h.group(2))
            first_heading = first_heading or heading
            items.append(_Heading(len(h.group(1)), heading))
            continue
        buf.append(line)
    flush()

    if not title:
        title = first_heading
    if not title:
        first_line = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
        title = first_line[:120]
    title = _collapse(_clean(title))
    sections = _assemble(items, title)
    doc = Document(title=title, kind="text", sections=sections, url=url, site=host_of(url))
    return _sanitize(doc)
