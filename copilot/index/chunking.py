"""Cut loaded documents into chunks for the index.

Chunks are the passages of `copilot.passages.split_passages` (one splitter for the web and the
index): whole paragraphs and whole code blocks under one heading path, a code block split (on
line boundaries, each part re-fenced) only when it alone exceeds the limit. Sections are already
cut at headings and, for Stack Overflow, at each answer, so no chunk spans two of them.

`text` stays clean Markdown: the heading path, file, URL and SO votes are metadata beside it; the
retrieval code decides how to show or embed them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from copilot.document import Document
from copilot.passages import split_passages

__all__ = ["CHUNKING_VERSION", "Chunk", "chunk_document", "chunk_id"]

# Bump when the same file would chunk differently, so that stores can tell their chunks are stale
# (chunk ids only cover the file's content and the chunk's position).
CHUNKING_VERSION = 1


@dataclass
class Chunk:
    text: str  # Markdown; code blocks fenced, line breaks kept
    heading_path: list[str] = field(default_factory=list)
    source_path: str = ""  # the file it came from
    url: str | None = None  # the page's original address, when the file names it
    site: str = ""  # host of that address, else ""
    kind: str = "text"  # "so" | "docs" | "article" | "text"
    score: int | None = None  # Stack Overflow vote score of the post
    accepted: bool | None = None  # Stack Overflow accepted answer
    role: str = ""  # "question" | "answer" on Stack Overflow; "" otherwise
    title: str = ""  # the document's title
    position: int = 0  # order of the chunk in its document, from 0
    doc_key: str = ""  # the document inside the file (a Posts.xml question Id); "" for one-document files

    @property
    def heading(self) -> str:
        """The heading path as people read it: "functools › @cache"."""
        return " › ".join(self.heading_path)


def chunk_document(doc: Document, source_path: str, max_chars: int = 1200, *,
                   doc_key: str | None = None) -> list[Chunk]:
    """The chunks of `doc`, in document order, each at most `max_chars` (a single code line
    longer than that excepted). `doc_key` defaults to the document's own (`LoadedDocument`)."""
    key = doc_key if doc_key is not None else str(getattr(doc, "doc_key", "") or "")
    url = doc.canonical_url or doc.url or None
    return [
        Chunk(text=p.text, heading_path=list(p.heading_path), source_path=str(source_path), url=url,
              site=doc.site or "", kind=doc.kind, score=p.score, accepted=p.accepted, role=p.role,
              title=doc.title, position=p.position, doc_key=key)
        for p in split_passages(doc, max_chars, url=url or "")
    ]


def chunk_id(source_hash: str, doc_key: str, position: int) -> str:
    """A deterministic id for a chunk: the same file content, document and position give the
    same id on every run and in every file holding that content (so it is embedded once)."""
    raw = json.dumps([source_hash, doc_key, int(position)], ensure_ascii=False)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
