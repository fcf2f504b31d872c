"""How each plain result and each source relates to the answer — the heart of the comparison panel.

A plain search result is:
  * "cited"    — it was given to the model as source n and the answer cites [n];
  * "ignored"  — it was given to the model, but the answer does not cite it;
  * "unread"   — the engine ranked it, but it was not among the sources (not fetched, not
                 readable, or crowded out by better passages);
  * "pending"  — the answer is still being written (sources known or not yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from copilot.events import Citation, SearchResult, Source

CITED, IGNORED, UNREAD, PENDING = "cited", "ignored", "unread", "pending"


def url_key(url: str) -> str:
    """A URL reduced for matching a source to a plain result: no scheme, fragment, "www." or
    trailing slash; host lower-cased."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    host = parts.netloc.lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return f"{host}{path}" + (f"?{parts.query}" if parts.query else "")


def _source_keys(s: Source) -> set[str]:
    return {url_key(u) for u in (s.url, s.canonical_url or "") if u}


@dataclass
class PlainMark:
    result: SearchResult
    state: str
    numbers: list[int] = field(default_factory=list)  # the sources this result became


def plain_marks(results: Sequence[SearchResult], sources: Sequence[Source] | None,
                cited: set[int], finished: bool) -> list[PlainMark]:
    """Each plain result in the engine's order with its state (see the module docstring).
    While the answer streams a result already cited is "cited"; the rest stay "pending"."""
    out = []
    for r in results:
        key = url_key(r.url)
        numbers = [s.n for s in sources or () if key in _source_keys(s)]
        if any(n in cited for n in numbers):
            state = CITED
        elif not finished:
            state = PENDING
        elif numbers:
            state = IGNORED
        else:
            state = UNREAD
        out.append(PlainMark(r, state, numbers))
    return out


def cited_numbers(citations: Iterable[Citation]) -> set[int]:
    return {c.n for c in citations if c.valid}


def invalid_numbers(citations: Iterable[Citation]) -> list[int]:
    return sorted({c.n for c in citations if not c.valid})


def citation_counts(citations: Iterable[Citation]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for c in citations:
        counts[c.n] = counts.get(c.n, 0) + 1
    return counts


KIND_LABELS = {
    "web": "web", "web-so": "web · Stack Overflow", "web-docs": "web · docs",
    "local": "local", "local-so": "local · Stack Overflow", "local-docs": "local · docs",
    "context": "your input",
}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def where(source: Source) -> str:
    """Site for web sources, the file path for local ones."""
    if source.path:
        return source.path
    return source.site or urlsplit(source.url).netloc or source.url
