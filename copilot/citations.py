"""Find the citation markers in a model's answer and check them against the numbered sources.

Small local models cite in many styles, so `parse_citations` accepts all of these, each number of
a group giving its own entry (all entries of one group share the group's span and raw text):

    [1]  [1, 3]  [1,3]  [1;3]  [1 and 3]  [1][2]  [1-3]  [1–3]
    [Source 1]  [source 2, 3]  [Sources: 1-2]  [ref 4]  (Source 1)  (sources 1, 2)
    【1】  【1†source】  【4:0†source】  [^1]  [1†source]

Ranges are expanded; a range wider than `MAX_RANGE` numbers (``[1-999]``) yields only its two ends,
so the impossible end is still reported as invalid. Numbers are 1..999; a group that contains 0
(``[0]``, ``[0, 1]``) is a list or an index, not a citation. A bare ``(1)`` is not a citation (too
many lists and equations look like it); the parenthesised form needs the word "source".

Not citations:

- anything in code: fenced blocks (``` and ~~~, any indentation, an unterminated fence runs to the
  end of the text, as it does while the answer streams), inline `code` spans, and URLs;
- indexing: a plain ``[n]`` right after a letter, digit, ``_``, ``\\``, ``/``, ``)``, or after
  a ``]`` that does not close a citation (``argv[1]``, ``f()[0]``, ``x[0][1]``, ``[text][1]``). The
  unambiguous forms (``[Source 1]``, ``[^1]``, ``[1†…]``, ``【1】``) are accepted after a word;
- Markdown links and definitions: ``[1](https://…)``, and ``[1]: …`` / ``[^1]: …`` at the start of
  a line;
- a list of sources the model appended despite being told not to: markers that open the lines
  under a line that says only "Sources:" / "References" (bold or as a heading too);
- echoed source headers (see `_echoed_header`): a marker followed by what names a source instead
  of a claim about it. The marker is followed by whitespace and then
    * a URL (``[2] https://docs.python.org/…``), anywhere in a line; or
    * a file or page path (``[1] library/typing.html``, ``[3] notes.md``) that is the rest of the
      line or is followed by a separator (`` — ``, `` - ``, ``|``, ``(``, ``,``), anywhere; or,
      only when the marker opens the line (after an optional bullet, number or heading mark):
    * the title, site or path of that source (when `sources` are given), or
    * something ending in `` — host.tld`` / ``(host.tld)`` the way the prompt's header lines
      read (``[1] typing — Support for type hints (docs.python.org)``).
  A marker that opens a line followed by prose (``[1] Use `asyncio.run()`…``) stays a citation.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from copilot.events import Citation, Source

MAX_RANGE = 20  # widest range expanded in full

_S = r"[ \t]*"
_NUM = r"\d{1,3}"
_ITEM = rf"{_NUM}(?:{_S}[-–—]{_S}{_NUM})?"
_WORD = r"(?:sources?|refs?\.?|references?|citations?)"
_LIST = rf"{_ITEM}(?:{_S}(?:,|;|&|\band\b){_S}(?:{_WORD}{_S}[:#]?{_S})?{_ITEM})*"

_MARKER = re.compile(
    rf"\[(?P<caret>\^)?(?P<bword>{_WORD}{_S}[:#]?{_S})?(?P<blist>{_LIST})"
    rf"(?P<dagger>†[^\]\n]{{0,60}})?\]"
    rf"|【(?:{_WORD}{_S}[:#]?{_S})?(?P<llist>{_LIST})(?::\d+)?(?:†[^】\n]{{0,60}})?】"
    rf"|\({_WORD}{_S}[:#]?{_S}(?P<plist>{_LIST})\)",
    re.IGNORECASE,
)
_ITEM_RE = re.compile(rf"({_NUM})(?:{_S}[-–—]{_S}({_NUM}))?")

_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")
_BACKTICKS = re.compile(r"`+")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\[\]()\"'`]+", re.IGNORECASE)

# What may stand between the start of a line and a marker that "opens the line".
_LINE_LEAD = re.compile(r"[ \t]*(?:(?:[-*+•]|\d{1,3}[.)]|#{1,6}|>)[ \t]*)*(?:\*\*|__)?[ \t]*")
_SEPARATOR_START = ("—", "–", "-", "|", "(", ",", ":", "·")
# A line that announces a list of sources ("Sources:", "**References**", "### Sources used").
_LISTING_HEAD = re.compile(
    r"[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__|\*|_)?[ \t]*(?:sources?|references?|citations?)"
    r"(?:[ \t]+used|[ \t]+cited)?[ \t]*:?[ \t]*(?:\*\*|__|\*|_)?[ \t]*:?[ \t]*",
    re.IGNORECASE,
)
_LISTING_ITEM = re.compile(r"[ \t]*(?:(?:[-*+•]|\d{1,3}[.)])[ \t]*)?(?:\*\*|__)?[ \t]*[\[【(^]")
_PATH = re.compile(r"[\w.~%+-]+(?:/[\w.~%+@:=-]*)+")
_FILE = re.compile(
    r"[\w.~/-]*\.(?:html?|md|mdx|rst|txt|pdf|py|ipynb|json|toml|ya?ml|js|ts|sh|cfg|ini|org)",
    re.IGNORECASE,
)
_TLD = r"(?:com|org|net|io|dev|edu|gov|info|co|uk|de|fr|ru|jp|ai|app|so|me|sh|rs|ly|us|ca|py)"
_TITLE_SITE = re.compile(
    rf"(?:\s[—–|·-]\s*(?:https?://)?[\w-]+(?:\.[\w-]+)*\.{_TLD}(?:/\S*)?"
    rf"|\((?:https?://)?[\w-]+(?:\.[\w-]+)*\.{_TLD}(?:/[^)\s]*)?\))[ \t]*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Group:
    start: int
    end: int
    raw: str
    numbers: tuple[int, ...]
    line_start: bool  # the marker opens its line (after an optional bullet)


# --- code and URL masking -------------------------------------------------------------------


def _masked_spans(text: str) -> tuple[list[tuple[int, int]], int]:
    """Spans of code and URLs, sorted; plus where an open inline-code run starts (or len(text)).

    The second value matters while streaming: a marker after an unmatched backtick run in the
    last paragraph may still turn out to be inside code.
    """
    spans: list[tuple[int, int]] = []
    pending = len(text)
    prose_start = 0
    pos = 0
    fence: tuple[str, int, int] | None = None  # (char, length, start offset)
    for line in _lines(text):
        body = line.rstrip("\r\n")
        if fence is None:
            m = _FENCE_OPEN.fullmatch(body)
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                spans.extend(_inline_spans(text, prose_start, pos))
                fence = (m.group(1)[0], len(m.group(1)), pos)
        else:
            stripped = body.strip()
            ch, length, fstart = fence
            if stripped and set(stripped) == {ch} and len(stripped) >= length:
                spans.append((fstart, pos + len(line)))
                fence = None
                prose_start = pos + len(line)
        pos += len(line)
    if fence is not None:
        spans.append((fence[2], len(text)))
    else:
        inline = _inline_spans(text, prose_start, len(text), want_pending=True)
        if inline and inline[-1][0] == -1:
            pending = inline.pop()[1]
        spans.extend(inline)
    spans.extend(m.span() for m in _URL.finditer(text))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:  # a URL may sit inside code: merge overlaps so lookups stay simple
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged, pending


def _lines(text: str) -> list[str]:
    """Lines with their "\n" (only "\n" ends a line here, as in the offsets computed elsewhere)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _inline_spans(text: str, start: int, end: int,
                  want_pending: bool = False) -> list[tuple[int, int]]:
    """Inline code spans in text[start:end]: a backtick run closed by the next run of the same
    length in the same paragraph. An unclosed run is literal text."""
    out: list[tuple[int, int]] = []
    pos = start
    while True:
        m = _BACKTICKS.search(text, pos, end)
        if not m:
            return out
        n = len(m.group())
        para = _BLANK_LINE.search(text, m.end(), end)
        limit = para.start() if para else end
        close = None
        search_at = m.end()
        while True:
            c = _BACKTICKS.search(text, search_at, limit)
            if not c:
                break
            if len(c.group()) == n:
                close = c
                break
            search_at = c.end()
        if close:
            out.append((m.start(), close.end()))
            pos = close.end()
        else:
            if want_pending and para is None:
                out.append((-1, m.start()))  # sentinel: open run in the last paragraph
                return out
            pos = m.end()


def _inside(spans: list[tuple[int, int]], starts: list[int], i: int) -> bool:
    k = bisect.bisect_right(starts, i) - 1
    return k >= 0 and spans[k][0] <= i < spans[k][1]


# --- echoed source headers ------------------------------------------------------------------


def _echoed_header(text: str, end: int, numbers: tuple[int, ...], line_start: bool,
                   by_n: dict[int, Source]) -> bool:
    eol = text.find("\n", end)
    rest = text[end:] if eol < 0 else text[end:eol]
    if not rest[:1].isspace():
        return False
    r = rest.strip()
    r = r.lstrip("—–-:|· \t").lstrip("*_<\"'")
    if not r:
        return False
    if _URL.match(r):
        return True
    tok, _, after = r.partition(" ")
    tok = tok.strip("()<>*_\"'").rstrip(".,;:")
    after = after.strip()
    if "`" not in tok and (not after or after.startswith(_SEPARATOR_START)) and _is_path(tok):
        return True
    if not line_start:
        return False
    low = r.casefold()
    for n in numbers:
        src = by_n.get(n)
        if src is None:
            continue
        title = " ".join(src.title.split()).casefold()
        if len(title) >= 4 and (low.startswith(title[:60])
                                or (len(low) >= 4 and title.startswith(low))):
            return True
        for name in (src.url, src.path or "", src.site):
            name = name.casefold().removeprefix("https://").removeprefix("http://")
            if len(name) >= 4 and low.removeprefix("https://").removeprefix("http://").startswith(name):
                return True
    return bool(_TITLE_SITE.search(r))


def _is_path(tok: str) -> bool:
    if _FILE.fullmatch(tok):
        return True
    if not _PATH.fullmatch(tok):
        return False
    last = tok.rsplit("/", 1)[1]
    return tok.endswith("/") or tok.count("/") >= 2 or bool(re.search(r"\.\w{1,5}$", last))


# --- parsing --------------------------------------------------------------------------------


def _numbers(list_text: str) -> tuple[int, ...] | None:
    out: list[int] = []
    for m in _ITEM_RE.finditer(list_text):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if lo == 0 or hi == 0:
            return None
        if lo > hi:
            lo, hi = hi, lo
        seq = range(lo, hi + 1) if hi - lo < MAX_RANGE else (lo, hi)
        out.extend(n for n in seq if n not in out)
    return tuple(out) or None


def _listing_lines(text: str) -> set[int]:
    """Start offsets of the lines of a "Sources:" list: the marker-led lines (blank lines
    allowed between them) right under a line that announces the list."""
    out: set[int] = set()
    pos = 0
    in_list = False
    for line in _lines(text):
        body = line.rstrip("\r\n")
        if _LISTING_HEAD.fullmatch(body):
            in_list = True
        elif in_list and body.strip():
            if _LISTING_ITEM.match(body):
                out.add(pos)
            else:
                in_list = False
        pos += len(line)
    return out


def _groups(text: str, sources: Sequence[Source] | None = None) -> tuple[list[_Group], int]:
    spans, pending = _masked_spans(text)
    listing = _listing_lines(text)
    starts = [s for s, _ in spans]
    by_n = {s.n: s for s in sources or ()}
    out: list[_Group] = []
    last_end = -1
    for m in _MARKER.finditer(text):
        start, end = m.span()
        if _inside(spans, starts, start):
            continue
        plain = (m.group("blist") is not None and not m.group("caret") and not m.group("bword")
                 and not m.group("dagger"))
        prev = text[start - 1] if start else ""
        if plain and prev and (prev.isalnum() or prev in "_\\)/"
                              or (prev == "]" and start != last_end)):
            continue
        nxt = text[end:end + 1]
        line_begin = text.rfind("\n", 0, start) + 1
        line_start = _LINE_LEAD.fullmatch(text, line_begin, start) is not None
        if m.group("plist") is None and nxt == "(":
            continue  # a Markdown link: [1](https://...)
        if line_start and nxt == ":":
            continue  # a link or footnote definition: [1]: https://...
        numbers = _numbers(m.group("blist") or m.group("llist") or m.group("plist"))
        if numbers is None:
            continue
        if line_start and line_begin in listing:
            continue
        if _echoed_header(text, end, numbers, line_start, by_n):
            continue
        out.append(_Group(start, end, m.group(), numbers, line_start))
        last_end = end
    return out, pending


def parse_citations(text: str,
                    sources: Sequence[Source] | None = None) -> list[tuple[int, int, int, str]]:
    """Every citation in answer order as (n, start, end, raw); a group gives one entry per number,
    all with the group's span. `sources` sharpens the echoed-header rule (titles, sites, paths)."""
    groups, _ = _groups(text, sources)
    return [(n, g.start, g.end, g.raw) for g in groups for n in g.numbers]


def check_citations(text: str, sources: Sequence[Source]) -> list[Citation]:
    """Citations in answer order; `valid` says whether n is one of the sources' numbers.
    Invalid ones are kept so the faces can flag them."""
    known = {s.n for s in sources}
    return [Citation(n=n, valid=n in known, start=s, end=e, raw=raw)
            for n, s, e, raw in parse_citations(text, sources)]


def uncited_answer(text: str, sources: Sequence[Source] | None = None) -> bool:
    """True when the answer cites nothing outside code."""
    return not parse_citations(text, sources)


# --- streaming ------------------------------------------------------------------------------


class CitationStream:
    """Feed the answer as it streams; get each citation once, as soon as it can no longer change.

        stream = CitationStream(sources)
        for token in tokens:
            for citation in stream.feed(token):
                ...
        for citation in stream.finish():
            ...

    A marker is settled when text after it decides it: the character after it is not
    whitespace (a link's "(" or a definition's ":" would be), or the next word (the whole line,
    for a marker that opens a line) is complete, so the echoed-header rule can be applied; and no
    unmatched backtick before it in the last paragraph may still turn it into code. Inside an
    open fence nothing is a citation. The answer is re-parsed whole, but only when a chunk closes
    a bracket or a marker is waiting to settle; `finish` settles whatever is left.
    """

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)
        self._known = {s.n for s in self.sources}
        self._parts: list[str] = []
        self._text = ""
        self._emitted: set[tuple[int, int]] = set()
        self._unsettled = False
        self.citations: list[Citation] = []

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def feed(self, chunk: str) -> list[Citation]:
        self._parts.append(chunk)
        # A new marker can only complete with a closing bracket; otherwise only markers already
        # seen but not yet settled need another look.
        if not self._unsettled and not any(c in chunk for c in "]】)"):
            return []
        return self._collect(final=False)

    def finish(self) -> list[Citation]:
        return self._collect(final=True)

    def _collect(self, final: bool) -> list[Citation]:
        text = self.text
        groups, pending = _groups(text, self.sources)
        new: list[Citation] = []
        self._unsettled = False
        for g in groups:
            if not final and not _settled(text, g, pending):
                self._unsettled = True
                continue
            for n in g.numbers:
                key = (g.start, n)
                if key in self._emitted:
                    continue
                self._emitted.add(key)
                c = Citation(n=n, valid=n in self._known, start=g.start, end=g.end, raw=g.raw)
                new.append(c)
        self.citations.extend(new)
        return new


def _settled(text: str, g: _Group, pending: int) -> bool:
    if g.end > pending:
        return False
    rest = text[g.end:]
    if not rest:
        return False
    if not rest[0].isspace():
        return True
    if "\n" in rest:
        return True
    if g.line_start:
        return False
    return re.match(r"\s*\S+[ \t]+\S", rest) is not None


# A bracket near the end of a streaming answer that may still become a marker: "[", "[1, 2", "【3",
# "(sources 1", … (an opening bracket with no closing one yet, on the same line).
_OPEN_TAIL = re.compile(
    r"(?:[\[【][^\]】\n]{0,40}"
    r"|\((?:s(?:o(?:u(?:r(?:c(?:es?)?)?)?)?)?)?(?:[ \t:#]+[\d ,;&–—-]*(?:and[ \t]*[\d ,;&–—-]*)*)?)\Z",
    re.IGNORECASE,
)


def settled_end(text: str, sources: Sequence[Source] | None = None) -> int:
    """While an answer streams: the length of its longest prefix whose citations are final.

    That is up to the first marker that text still to come may change (the rules of
    `CitationStream`), or up to an opening bracket at the end that may still become a marker;
    `len(text)` when nothing is pending. A face can show `text[:settled_end(text)]` with its
    markers already rendered as citations and only ever append to it."""
    groups, pending = _groups(text, sources)
    end = len(text)
    for g in groups:
        if not _settled(text, g, pending):
            end = min(end, g.start)
    tail = _OPEN_TAIL.search(text, max(0, len(text) - 64))
    if tail:
        end = min(end, tail.start())
    return end
