"""Conversations in SQLite: every question with its answer, sources, citations and plain results.

The database is `settings.data_path / "history.sqlite"`, created with file mode 0600 (it holds
the user's questions) in a directory made 0700. A conversation is a list of messages in the order
they were asked; a message keeps what the user saw: the answer text as it arrived (also when it
was stopped or failed), the numbered sources with their passages (so a source can be previewed
after a restart), the citations, the plain search results in the engine's order, warnings and
timings.

No Textual here: the TUI and any other face use the same calls (`History.open(settings)`,
`new_conversation`, `add_message`, `list_conversations`, `messages`, `delete_conversation`,
`export_markdown`). One `History` may be used from several threads (a lock serialises them), and
several processes may share the file (WAL, busy timeout).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from copilot import events as ev
from copilot.safetext import clean

if TYPE_CHECKING:
    from copilot.config import Settings

FILE_NAME = "history.sqlite"
SCHEMA_VERSION = 1
TITLE_CHARS = 80

STATUS_DONE = "done"
STATUS_CANCELLED = "cancelled"  # stopped by the user; the text is what had arrived
STATUS_ERROR = "error"  # the engine raised; `error` says what, the text is what had arrived
STATUSES = (STATUS_DONE, STATUS_CANCELLED, STATUS_ERROR)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'done',
    error TEXT,
    scope TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL DEFAULT '',
    sources TEXT NOT NULL DEFAULT '[]',
    citations TEXT NOT NULL DEFAULT '[]',
    plain_results TEXT NOT NULL DEFAULT '[]',
    warnings TEXT NOT NULL DEFAULT '[]',
    timings TEXT NOT NULL DEFAULT '{}',
    cut_reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""


class HistoryError(Exception):
    """The history file cannot be opened or is not ours."""


@dataclass
class ConversationInfo:
    id: int
    title: str
    created_at: float
    updated_at: float
    messages: int


@dataclass
class Message:
    """One question and what came back. `answer` is the text the user saw (raw model text)."""

    question: str
    answer: str = ""
    model: str = ""
    status: str = STATUS_DONE
    error: str | None = None
    scope: str = ""
    engine: str = ""  # the search engine that gave the plain results ("" if none)
    sources: list[ev.Source] = field(default_factory=list)
    citations: list[ev.Citation] = field(default_factory=list)
    plain_results: list[ev.SearchResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: ev.Timings = field(default_factory=ev.Timings)
    cut_reason: str = ""
    created_at: float = 0.0
    id: int | None = None
    conversation_id: int | None = None

    @classmethod
    def from_answer(cls, answer: ev.Answer, *, scope: str = "", engine: str = "") -> Message:
        return cls(question=answer.question, answer=answer.text, model=answer.model,
                   status=STATUS_DONE, scope=scope, engine=engine, sources=list(answer.sources),
                   citations=list(answer.citations), plain_results=list(answer.plain_results),
                   warnings=list(answer.warnings), timings=answer.timings,
                   cut_reason=answer.cut_reason)

    def to_answer(self) -> ev.Answer:
        return ev.Answer(question=self.question, text=self.answer, model=self.model,
                         sources=list(self.sources), citations=list(self.citations),
                         plain_results=list(self.plain_results), warnings=list(self.warnings),
                         timings=self.timings, cut_reason=self.cut_reason)


# --- (de)serialisation -----------------------------------------------------------------------


def _source_json(s: ev.Source) -> dict:
    return {**s.to_json(), "text": s.text}  # the passage, for previews after a restart


def _source(d: dict) -> ev.Source:
    return ev.Source(n=int(d["n"]), title=str(d.get("title", "")), url=str(d.get("url", "")),
                     kind=d.get("kind", "web"), text=str(d.get("text", "")), path=d.get("path"),
                     site=str(d.get("site", "")), canonical_url=d.get("canonical_url"),
                     heading=str(d.get("heading", "")))


def _citation_json(c: ev.Citation) -> dict:
    return {"n": c.n, "valid": c.valid, "start": c.start, "end": c.end, "raw": c.raw,
            "support": c.support, "supported": c.supported}


def _citation(d: dict) -> ev.Citation:
    support = d.get("support")
    supported = d.get("supported")
    return ev.Citation(n=int(d["n"]), valid=bool(d.get("valid")), start=int(d.get("start", 0)),
                       end=int(d.get("end", 0)), raw=str(d.get("raw", "")),
                       support=float(support) if isinstance(support, int | float) else None,
                       supported=supported if isinstance(supported, bool) else None)


def _result_json(r: ev.SearchResult) -> dict:
    return {"rank": r.rank, "title": r.title, "url": r.url, "snippet": r.snippet, "engine": r.engine}


def _result(d: dict) -> ev.SearchResult:
    return ev.SearchResult(rank=int(d.get("rank", 0)), title=str(d.get("title", "")),
                           url=str(d.get("url", "")), snippet=str(d.get("snippet", "")),
                           engine=str(d.get("engine", "")))


def _timings(d: dict) -> ev.Timings:
    t = ev.Timings()
    for name in ("search", "fetch", "total"):
        if isinstance(d.get(name), int | float):
            setattr(t, name, float(d[name]))
    if isinstance(d.get("first_token"), int | float):
        t.first_token = float(d["first_token"])
    return t


def _loads(text: str | None, default):
    try:
        value = json.loads(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def title_for(question: str) -> str:
    """A conversation's title: its first question on one line, cut to TITLE_CHARS."""
    one = " ".join(clean(question).split())
    return one if len(one) <= TITLE_CHARS else one[: TITLE_CHARS - 1].rstrip() + "…"


# --- the store ---------------------------------------------------------------------------------


def _create_private(path: Path) -> None:
    """Make the directory (0700 when new) and the file (0600); tighten a file that is wider."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    if (path.stat().st_mode & 0o777) != 0o600:
        os.chmod(path, 0o600)


class History:
    """Conversations and their messages in one SQLite file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            _create_private(self.path)
            self._conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA foreign_keys = ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(f"{self.path} was written by a newer copilot (schema {version})")
            if version < SCHEMA_VERSION:  # a new file: WAL (readers never wait), then the tables
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA
                                         + f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")
        except (sqlite3.Error, OSError) as e:
            raise HistoryError(f"cannot open the history {self.path}: {e}") from None

    @classmethod
    def open(cls, settings: Settings) -> History:
        return cls(settings.data_path / FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------------

    def new_conversation(self, title: str, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO conversations(title, created_at, updated_at) VALUES (?, ?, ?)",
                (title_for(title) or "(untitled)", now, now))
            return int(cur.lastrowid)

    def add_message(self, conversation_id: int, message: Message, *, now: float | None = None) -> int:
        if message.status not in STATUSES:
            raise ValueError(f"unknown message status {message.status!r}")
        now = time.time() if now is None else now
        created = message.created_at or now
        row = (
            conversation_id, message.question, message.answer, message.model, message.status,
            message.error, message.scope, message.engine,
            json.dumps([_source_json(s) for s in message.sources], ensure_ascii=False),
            json.dumps([_citation_json(c) for c in message.citations], ensure_ascii=False),
            json.dumps([_result_json(r) for r in message.plain_results], ensure_ascii=False),
            json.dumps(list(message.warnings), ensure_ascii=False),
            json.dumps(asdict(message.timings)), message.cut_reason, created,
        )
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    "INSERT INTO messages(conversation_id, question, answer, model, status, error, scope,"
                    " engine, sources, citations, plain_results, warnings, timings, cut_reason, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                self._conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                                   (max(now, created), conversation_id))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            message.id = int(cur.lastrowid)
            message.conversation_id = conversation_id
            message.created_at = created
            return message.id

    def delete_conversation(self, conversation_id: int) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return cur.rowcount > 0

    # --- reading -------------------------------------------------------------------------------

    def list_conversations(self, limit: int = 500) -> list[ConversationInfo]:
        """Most recently used first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT c.id, c.title, c.created_at, c.updated_at,"
                " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)"
                " FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (limit,)).fetchall()
        return [ConversationInfo(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    def conversation(self, conversation_id: int) -> ConversationInfo | None:
        with self._lock:
            r = self._conn.execute(
                "SELECT c.id, c.title, c.created_at, c.updated_at,"
                " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)"
                " FROM conversations c WHERE c.id = ?", (conversation_id,)).fetchone()
        return ConversationInfo(int(r[0]), r[1], r[2], r[3], int(r[4])) if r else None

    def messages(self, conversation_id: int) -> list[Message]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, question, answer, model, status, error, scope, engine, sources, citations,"
                " plain_results, warnings, timings, cut_reason, created_at"
                " FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)).fetchall()
        out = []
        for r in rows:
            out.append(Message(
                id=int(r[0]), conversation_id=conversation_id, question=r[1], answer=r[2], model=r[3],
                status=r[4] if r[4] in STATUSES else STATUS_DONE, error=r[5], scope=r[6], engine=r[7],
                sources=[_source(d) for d in _loads(r[8], []) if isinstance(d, dict) and "n" in d],
                citations=[_citation(d) for d in _loads(r[9], []) if isinstance(d, dict) and "n" in d],
                plain_results=[_result(d) for d in _loads(r[10], []) if isinstance(d, dict)],
                warnings=[str(w) for w in _loads(r[11], [])],
                timings=_timings(_loads(r[12], {})), cut_reason=r[13], created_at=r[14],
            ))
        return out

    # --- export --------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        info = self.conversation(conversation_id)
        if info is None:
            raise KeyError(conversation_id)
        return conversation_markdown(info, self.messages(conversation_id))


def _md_escape(text: str) -> str:
    """Text for a Markdown link label or list item: no line breaks, brackets escaped."""
    text = " ".join(clean(text).split())
    for ch in "\\[]*_`<>":
        text = text.replace(ch, "\\" + ch)
    return text


def _md_url(url: str) -> str:
    return clean(url).strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def conversation_markdown(info: ConversationInfo, messages: list[Message]) -> str:
    """A conversation as a Markdown document: each question, its answer, the sources it was given
    (cited or not), invalid citations, and the plain search results with what the answer cited."""
    out = [f"# {_md_escape(info.title)}", "",
           f"_copilot conversation, started {_when(info.created_at)}, {len(messages)} "
           f"question{'s' if len(messages) != 1 else ''}._", ""]
    for m in messages:
        out += [f"## {_md_escape(m.question)}", ""]
        text = clean(m.answer).strip()
        out += [text if text else "_(no answer text)_", ""]
        notes = [m.model or "model unknown", _when(m.created_at)]
        if m.status == STATUS_CANCELLED:
            notes.append("stopped before the end")
        if m.status == STATUS_ERROR and m.error:
            notes.append(f"failed: {clean(m.error)}")
        if m.cut_reason:
            notes.append(f"cut ({m.cut_reason})")
        out += ["_" + _md_escape(" · ".join(notes)) + "_", ""]
        cited = {c.n for c in m.citations if c.valid}
        weak = {c.n for c in m.citations if c.valid and c.supported is False}
        if m.sources:
            out += ["**Sources**", ""]
            for s in m.sources:
                where = s.url or s.path or ""
                label = _md_escape(s.label)
                item = f"[{label}]({_md_url(where)})" if where.startswith(("http://", "https://")) else label
                if where and not where.startswith(("http://", "https://")):
                    item += f" — `{clean(where)}`"
                mark = "cited, weak support" if s.n in weak else "cited" if s.n in cited else "not cited"
                out.append(f"{s.n}. {item} ({mark})")
            out.append("")
        invalid = sorted({c.n for c in m.citations if not c.valid})
        if invalid:
            out += ["**Invalid citations:** " + ", ".join(f"\\[{n}\\]" for n in invalid)
                    + " (no such source)", ""]
        if m.plain_results:
            cited_urls = {s.url for s in m.sources if s.n in cited}
            engine = f" ({m.engine})" if m.engine else ""
            out += [f"**Plain search{engine}**", ""]
            for r in m.plain_results:
                mark = " — cited" if r.url in cited_urls else ""
                out.append(f"{r.rank}. [{_md_escape(r.title) or _md_escape(r.url)}]({_md_url(r.url)}){mark}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
