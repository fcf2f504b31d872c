"""What the app does with an answer's text, without Textual: citation markers turned into links the
Markdown widget can report, fenced code blocks for copying, the claims that cite a source, and
the lines of a passage those claims most likely came from.

All text here has already been through `copilot.safetext.clean`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from copilot.events import Citation, Source

CITE_SCHEME = "cite:"  # href of a citation link: "cite:3"
INVALID_MARK = "✗"  # [7✗]: there is no source 7
WEAK_MARK = "?"  # [3?]: source 3 may not say what the sentence claims (weak support)


@dataclass(frozen=True)
class MarkerGroup:
    """One citation marker as written (`[1, 3]` is one group with two numbers)."""

    start: int
    end: int
    numbers: tuple[int, ...]


def marker_groups(text: str, sources: Sequence[Source] | None = None) -> list[MarkerGroup]:
    """The answer's citation markers in order, each once, with the numbers it names."""
    from copilot.citations import parse_citations
    groups: dict[tuple[int, int], list[int]] = {}
    for n, start, end, _raw in parse_citations(text, sources):
        groups.setdefault((start, end), []).append(n)
    return [MarkerGroup(s, e, tuple(ns)) for (s, e), ns in groups.items()]


def groups_from_citations(citations: Iterable[Citation]) -> list[MarkerGroup]:
    groups: dict[tuple[int, int], list[int]] = {}
    for c in citations:
        groups.setdefault((c.start, c.end), []).append(c.n)
    return [MarkerGroup(s, e, tuple(ns)) for (s, e), ns in sorted(groups.items())]


def weak_citations(citations: Iterable[Citation]) -> set[tuple[int, int]]:
    """(marker start, n) of the valid citations scored as not supported."""
    return {(c.start, c.n) for c in citations if c.valid and c.supported is False}


def citation_link(n: int, valid: bool, weak: bool = False) -> str:
    label = f"{n}{INVALID_MARK}" if not valid else f"{n}{WEAK_MARK}" if weak else f"{n}"
    return f"[\\[{label}\\]]({CITE_SCHEME}{n})"


def link_citations(text: str, groups: Sequence[MarkerGroup], known: set[int] | None,
                   start: int = 0, end: int | None = None, weak: set[tuple[int, int]] | None = None) -> str:
    """text[start:end] with every marker group that lies inside it replaced by one Markdown link
    per number (`[1, 3]` → `[[1]](cite:1)[[3]](cite:3)`). A number not in `known` is marked
    invalid (`[7✗]`); `known=None` means the sources are not known yet (nothing is marked). A
    (start, n) in `weak` is marked as weakly supported (`[3?]`)."""
    end = len(text) if end is None else end
    out: list[str] = []
    pos = start
    for g in groups:
        if g.start < start or g.end > end:
            continue
        out.append(text[pos:g.start])
        out.append("".join(citation_link(n, known is None or n in known, (g.start, n) in (weak or ()))
                           for n in g.numbers))
        pos = g.end
    out.append(text[pos:end])
    return "".join(out)


def parse_cite_href(href: str) -> int | None:
    if not href.startswith(CITE_SCHEME):
        return None
    rest = href[len(CITE_SCHEME):]
    return int(rest) if rest.isdigit() else None


# --- blocks --------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^\n]*$")


def _open_fence(line: str) -> re.Match | None:
    """An opening code fence (a backtick fence's info string has no backticks)."""
    m = _FENCE_RE.match(line)
    if m and m.group(1)[0] == "`" and "`" in line[m.end(1):]:
        return None
    return m


def _closes(line: str, fence: str) -> bool:
    body = line.strip()
    return (len(line) - len(line.lstrip(" ")) <= 3 and bool(body) and set(body) == {fence[0]}
            and len(body) >= len(fence))


def finished_blocks_end(text: str) -> int:
    """Where the finished Markdown blocks end: just after the last blank line outside a code
    fence. What follows may still change as tokens arrive."""
    cut = 0
    pos = 0
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        pos += len(line)
        body = line.rstrip("\n")
        if fence is None:
            m = _open_fence(body)
            if m:
                fence = m.group(1)
            elif not body.strip() and line.endswith("\n"):
                cut = pos
        elif _closes(body, fence):
            fence = None
    return cut


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str

    @property
    def first_line(self) -> str:
        return next((line for line in self.code.splitlines() if line.strip()), "")


def code_blocks(text: str) -> list[CodeBlock]:
    """Fenced code blocks in order; an unclosed fence runs to the end (as while streaming)."""
    blocks: list[CodeBlock] = []
    fence: str | None = None
    lang = ""
    lines: list[str] = []
    for line in text.splitlines():
        if fence is None:
            m = _open_fence(line)
            if m:
                fence, lang, lines = m.group(1), m.group(2), []
        elif _closes(line, fence):
            blocks.append(CodeBlock(lang, "\n".join(lines) + "\n" if lines else ""))
            fence = None
        else:
            lines.append(line)
    if fence is not None and lines:
        blocks.append(CodeBlock(lang, "\n".join(lines) + "\n"))
    return blocks


# --- claims and passages ------------------------------------------------------------------------

_FENCED = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
_MD_NOISE = re.compile(r"[*_`#>]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.()]*|\d+")
_STOP_WORDS = (
    "the a an and or of to in on for is are was were be been it this that with as at by from you your "
    "can will not no but if then so do does use using into its which when what how why there their "
    "they them than also just only more most such may might should would could"
)
_STOP = frozenset(_STOP_WORDS.split())


def cited_claims(text: str, citations: Sequence[Citation], n: int) -> list[tuple[str, Citation]]:
    """What the answer cites source n for: each citation of n with its claim on one line (the
    claim as the support check sees it, `copilot.support.claims_for`, without code blocks or
    Markdown marks), each claim once."""
    from copilot.support import claims_for

    mine = [c for c in citations if c.n == n]
    out: list[tuple[str, Citation]] = []
    seen: set[str] = set()
    for c, claim in zip(mine, claims_for(text, mine) if mine else [], strict=True):
        one = " ".join(_MD_NOISE.sub("", _FENCED.sub(" ", claim)).split()).strip(" ,;:")
        if one and one not in seen:
            seen.add(one)
            out.append((one, c))
    return out


def _words(text: str) -> set[str]:
    return {w.lower().rstrip(".") for w in _WORD.findall(text)
            if len(w) > 2 and w.lower() not in _STOP}


def best_lines(passage: str, claims: Sequence[str], window: int = 3) -> tuple[int, int] | None:
    """The 0-based line range [first, last] of `passage` sharing the most words with the
    claims (a window of up to `window` lines), or None when nothing matches."""
    wanted = set().union(*(_words(c) for c in claims)) if claims else set()
    if not wanted:
        return None
    lines = passage.splitlines()
    scores = [len(_words(line) & wanted) for line in lines]
    best, best_at = 0, None
    for i in range(len(lines)):
        s = sum(scores[i:i + window])
        if s > best:
            best, best_at = s, i
    if best_at is None:
        return None
    first = best_at
    last = min(len(lines) - 1, best_at + window - 1)
    while last > first and scores[last] == 0:
        last -= 1
    while first < last and scores[first] == 0:
        first += 1
    return first, last
