"""An extracted page: what the web path and the index both work from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DocKind = Literal["so", "docs", "article", "text"]


@dataclass
class Section:
    """A piece of a page under one heading path, in Markdown.

    Code blocks are fenced (```) and keep their line breaks. For Stack Overflow pages the question
    is one section and each answer is one section, in page order, with `score` and `accepted`.
    """

    heading_path: list[str]
    text: str
    score: int | None = None
    accepted: bool | None = None
    role: str = ""  # "question" | "answer" for SO pages; "" otherwise

    @property
    def heading(self) -> str:
        return " › ".join(self.heading_path)


@dataclass
class Document:
    title: str
    kind: DocKind
    sections: list[Section] = field(default_factory=list)
    url: str | None = None  # where it was read from (web) or None (local file)
    canonical_url: str | None = None
    date: str | None = None  # ISO date when the page names one
    site: str = ""  # host name, e.g. "stackoverflow.com", "docs.python.org"

    @property
    def markdown(self) -> str:
        parts = []
        for s in self.sections:
            head = f"## {s.heading_path[-1]}\n\n" if s.heading_path else ""
            parts.append(head + s.text.strip())
        return "\n\n".join(p for p in parts if p.strip())
