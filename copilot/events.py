"""The types the engine yields. The CLI and the TUI render these; neither repeats pipeline logic."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

SourceKind = Literal["web", "web-so", "web-docs", "local", "local-so", "local-docs", "context"]


@dataclass
class SearchResult:
    """One plain search result, in the engine's own order (rank starts at 1)."""

    rank: int
    title: str
    url: str
    snippet: str
    engine: str = ""


@dataclass
class Source:
    """A numbered source the model is given. `text` is the passage the model sees."""

    n: int
    title: str
    url: str
    kind: SourceKind
    text: str
    path: str | None = None  # for local sources: the file
    site: str = ""
    canonical_url: str | None = None  # the address the page names for itself, when it differs
    heading: str = ""  # where in the page the passage sits ("Runners › asyncio.run()")

    @property
    def where(self) -> str:
        """Where a person finds it: the URL; for a local file its path, and the page's original
        URL when the file names one."""
        if self.path:
            return f"{self.path} ({self.url})" if self.url else self.path
        return self.url

    @property
    def label(self) -> str:
        """Title and heading, for people (the prompt uses the title alone)."""
        return f"{self.title} › {self.heading}" if self.heading else self.title

    def to_json(self) -> dict:
        return {"n": self.n, "title": self.title, "url": self.url, "kind": self.kind,
                "path": self.path, "site": self.site, "canonical_url": self.canonical_url,
                "heading": self.heading}


@dataclass
class Citation:
    """One `[n]` the answer made, in answer order. `valid` means n names a real source."""

    n: int
    valid: bool
    start: int  # character span of the marker in the answer
    end: int
    raw: str
    support: float | None = None  # how well source n's passage supports the claim, in [0, 1]
    supported: bool | None = None  # None: not scored

    def to_json(self) -> dict:
        return {"n": self.n, "valid": self.valid, "raw": self.raw, "support": self.support,
                "supported": self.supported}


@dataclass
class Match:
    """A sentence of an answer that cites nothing, matched by copilot (not the model) to the one
    source whose passage supports it clearly best (`copilot.support.match_sentences`)."""

    n: int
    start: int  # character span of the sentence in the answer
    end: int
    sentence: str
    support: float

    def to_json(self) -> dict:
        return {"n": self.n, "sentence": self.sentence, "support": self.support}


@dataclass
class Timings:
    search: float = 0.0
    fetch: float = 0.0
    first_token: float | None = None
    total: float = 0.0


@dataclass
class Answer:
    question: str
    text: str
    model: str
    sources: list[Source]
    citations: list[Citation]
    plain_results: list[SearchResult]
    warnings: list[str]
    timings: Timings
    cut_reason: str = ""  # "stream": the connection broke mid-answer; "length": hit the token limit
    prompt_tokens: int | None = None  # as the model reported them (prompt_eval_count), when it did
    matched: list[Match] = field(default_factory=list)  # only when the answer cites nothing

    @property
    def cut(self) -> bool:
        return bool(self.cut_reason)

    def cited_numbers(self) -> set[int]:
        return {c.n for c in self.citations if c.valid}

    def to_json(self) -> dict:
        cited_urls = {s.url for s in self.sources if s.n in self.cited_numbers()}
        return {
            "question": self.question,
            "answer": self.text,
            "model": self.model,
            "cut": self.cut,
            "cut_reason": self.cut_reason,
            "sources": [s.to_json() for s in self.sources],
            "citations": [c.to_json() for c in self.citations],
            "invalid_citations": sorted({c.n for c in self.citations if not c.valid}),
            "matched": [m.to_json() for m in self.matched],
            "plain_results": [
                {"rank": r.rank, "title": r.title, "url": r.url, "snippet": r.snippet,
                 "cited": r.url in cited_urls}
                for r in self.plain_results
            ],
            "warnings": list(self.warnings),
            "timings": asdict(self.timings),
            "prompt_tokens": self.prompt_tokens,
        }


# --- events ---------------------------------------------------------------------------------


@dataclass
class Status:
    """Progress the user may want to see ("Searching…", "Reading 5 pages…", "Loading model…")."""

    message: str


@dataclass
class Warning:  # noqa: A001 - the event's natural name
    """Something went wrong but the answer goes on (rate limit, page skipped, model switched)."""

    message: str


@dataclass
class ModelChosen:
    model: str
    reason: str = ""  # why, when the user did not name it


@dataclass
class PlainResults:
    """The plain search results, ready before the model starts."""

    results: list[SearchResult]
    engine: str


@dataclass
class SourcesReady:
    sources: list[Source]


@dataclass
class Token:
    text: str


@dataclass
class Done:
    answer: Answer


Event = Status | Warning | ModelChosen | PlainResults | SourcesReady | Token | Done


@dataclass
class Page:
    """A fetched page before extraction."""

    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int
    content_type: str
    body: bytes
    encoding: str | None = None
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)
