"""The app's state without Textual: one question and what the engine said about it
(`ExchangeState`, fed the engine's events), the search engine's health as the events reveal it,
and what the status bar shows. The widgets only draw these."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from copilot import events as ev
from copilot.safetext import clean

if TYPE_CHECKING:
    from copilot.history import Message

ASKING, DONE, CANCELLED, FAILED = "asking", "done", "cancelled", "failed"
# The start of an escape sequence (ESC or a C1 introducer) with no end yet: maybe still arriving.
_ESCAPE_START = re.compile(r"[\x1b\x9b\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]{0,63}\Z")
SCOPES = ("web", "local", "both")


@dataclass
class ExchangeState:
    """One question and everything the engine yielded for it, in arrival order."""

    question: str
    scope: str = "web"
    phase: str = ASKING
    status: str = ""  # the latest progress message ("Searching the web…")
    warnings: list[str] = field(default_factory=list)
    search_warnings: list[str] = field(default_factory=list)  # those that came before the results
    searched: bool = False  # PlainResults arrived
    plain: list[ev.SearchResult] = field(default_factory=list)
    engine: str = ""
    sources: list[ev.Source] | None = None  # None until SourcesReady
    model: str = ""
    model_reason: str = ""
    answer: ev.Answer | None = None
    error: str | None = None
    error_kind: str = ""  # the CopilotError's class name
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    message_id: int | None = None  # in the history, once saved
    chat: object = None  # the conversation it was asked in (the app's handle)
    _parts: list[str] = field(default_factory=list, repr=False)
    _raw: str = field(default="", repr=False)
    _clean: tuple[int, str, bool] = field(default=(0, "", True), repr=False)
    _cites: tuple[tuple, list[ev.Citation]] = field(default=((), []), repr=False)

    # --- text ---------------------------------------------------------------------------------

    @property
    def raw_text(self) -> str:
        """The answer as the model wrote it (so far)."""
        if self._parts:
            self._raw += "".join(self._parts)
            self._parts.clear()
        return self._raw

    @property
    def text(self) -> str:
        """The answer as shown: terminal escapes and control characters removed. While it
        streams, an escape sequence that may still be arriving at the end is left out, so the
        shown text only ever grows."""
        raw = self.raw_text
        if self._clean[0] != len(raw) or self._clean[2] != self.in_flight:
            cut = len(raw)
            if self.in_flight:
                tail = _ESCAPE_START.search(raw, max(0, len(raw) - 64))
                if tail:
                    cut = tail.start()
            self._clean = (len(raw), clean(raw[:cut]), self.in_flight)
        return self._clean[1]

    @property
    def citations(self) -> list[ev.Citation]:
        """Citations of the shown text, checked against the sources (re-parsed when it grew)."""
        text = self.text
        key = (len(text), -1 if self.sources is None else len(self.sources), self.answer is not None)
        if self._cites[0] != key:
            from copilot.citations import check_citations  # not before the first frame

            cites = check_citations(text, self.sources or [])
            if self.answer is not None:
                cites = _with_support(cites, self.answer.citations)
            self._cites = (key, cites)
        return self._cites[1]

    @property
    def in_flight(self) -> bool:
        return self.phase == ASKING

    # --- events -------------------------------------------------------------------------------

    def apply(self, event: ev.Event) -> str:
        """Take one engine event; return what changed: "status", "warning", "model", "plain",
        "sources", "token" or "done"."""
        if isinstance(event, ev.Token):
            self._parts.append(event.text)
            return "token"
        if isinstance(event, ev.Status):
            self.status = clean(event.message)
            return "status"
        if isinstance(event, ev.Warning):
            message = clean(event.message)
            self.warnings.append(message)
            if not self.searched:
                self.search_warnings.append(message)
            return "warning"
        if isinstance(event, ev.ModelChosen):
            self.model, self.model_reason = clean(event.model), clean(event.reason)
            return "model"
        if isinstance(event, ev.PlainResults):
            self.searched = True
            self.plain, self.engine = list(event.results), event.engine
            return "plain"
        if isinstance(event, ev.SourcesReady):
            self.sources = list(event.sources)
            return "sources"
        if isinstance(event, ev.Done):
            a = event.answer
            self.answer = a
            self._parts, self._raw = [], a.text
            self.sources = list(a.sources)
            if a.plain_results or not self.searched:
                self.plain = list(a.plain_results)
            self.model = a.model or self.model
            seen = set(self.warnings)
            self.warnings += [clean(w) for w in a.warnings if clean(w) not in seen]
            self.phase, self.status, self.finished = DONE, "", time.monotonic()
            return "done"
        return ""

    def fail(self, message: str, kind: str = "") -> None:
        self.phase, self.error, self.error_kind = FAILED, clean(message), kind
        self.status, self.finished = "", time.monotonic()

    def cancel(self) -> None:
        if self.phase == ASKING:
            self.phase, self.status, self.finished = CANCELLED, "", time.monotonic()

    # --- history ------------------------------------------------------------------------------

    def to_message(self) -> Message:
        from copilot.history import STATUS_CANCELLED, STATUS_DONE, STATUS_ERROR, Message

        status = {DONE: STATUS_DONE, CANCELLED: STATUS_CANCELLED, FAILED: STATUS_ERROR}.get(
            self.phase, STATUS_CANCELLED)
        a = self.answer
        return Message(
            question=self.question, answer=self.raw_text, model=self.model, status=status,
            error=self.error, scope=self.scope, engine=self.engine, sources=list(self.sources or []),
            citations=list(a.citations) if a else list(self.citations), plain_results=list(self.plain),
            warnings=list(self.warnings), timings=a.timings if a else ev.Timings(),
            cut_reason=a.cut_reason if a else "",
        )

    @classmethod
    def from_message(cls, m: Message) -> ExchangeState:
        from copilot.history import STATUS_CANCELLED, STATUS_DONE, STATUS_ERROR

        phase = {STATUS_DONE: DONE, STATUS_CANCELLED: CANCELLED, STATUS_ERROR: FAILED}[m.status]
        s = cls(question=m.question, scope=m.scope or "web", phase=phase, warnings=list(m.warnings),
                searched=bool(m.plain_results) or bool(m.engine), plain=list(m.plain_results),
                engine=m.engine, sources=list(m.sources), model=m.model, error=m.error,
                message_id=m.id, finished=0.0)
        s._raw = m.answer
        if phase == DONE:
            s.answer = m.to_answer()
        return s


def _with_support(shown: list[ev.Citation], scored: list[ev.Citation]) -> list[ev.Citation]:
    """The engine scored its citations on the raw text; the shown text may differ by removed
    escapes, so carry the scores over by position (the same markers in the same order)."""
    if [c.n for c in shown] != [c.n for c in scored]:
        return shown
    from dataclasses import replace

    return [replace(c, support=s.support, supported=s.supported) for c, s in zip(shown, scored, strict=True)]


# --- search engine health --------------------------------------------------------------------

ENGINE_LABELS = {"duckduckgo": "DuckDuckGo", "searxng": "SearXNG", "cache": "cache"}


@dataclass
class SearchHealth:
    state: str  # "ok" | "rate-limited" | "offline" | "failed" | "off" | "" (not searched yet)
    detail: str = ""


def search_health(exchange: ExchangeState) -> SearchHealth | None:
    """What the last search says about the engines, from its warnings (the engine's Warning
    events carry only a message, so this reads their words); None if it did not search."""
    words = " ".join(exchange.search_warnings).lower()
    if "web search is off" in words:
        return SearchHealth("off", "COPILOT_SEARCH_ENGINE=none")
    if not exchange.searched:
        return None
    label = ENGINE_LABELS.get(exchange.engine, exchange.engine)
    limited = "rate-limited" in words or "ratelimit" in words
    if exchange.engine:
        if limited:
            return SearchHealth("rate-limited", f"fell back to {label}" if exchange.engine != "cache" else label)
        if words:
            return SearchHealth("ok", f"{label}, after a failure")
        return SearchHealth("ok", label)
    if limited:
        return SearchHealth("rate-limited", "no engine answered")
    if any(w in words for w in ("unreachable", "timed out", "out of time", "not reachable")):
        return SearchHealth("offline", "no engine answered")
    if words:
        return SearchHealth("failed", "no engine answered")
    return SearchHealth("ok", f"{label or 'engine'}: no results")


# --- status bar --------------------------------------------------------------------------------

MODEL_OK, MODEL_OFFLINE, MODEL_MISSING, MODEL_ERROR, MODEL_UNKNOWN = (
    "ok", "offline", "missing", "error", "unknown")

ERROR_MODEL_STATES = {"OllamaUnavailable": MODEL_OFFLINE, "ModelMissing": MODEL_MISSING,
                      "ModelError": MODEL_ERROR}


@dataclass
class StatusInfo:
    model: str = ""  # the model in use (chosen by the user, configured, or picked by copilot)
    model_auto: bool = True  # copilot picks the model
    model_state: str = MODEL_UNKNOWN
    scope: str = "web"
    index_chunks: int | None = None  # None: no local index (or not known)
    search: SearchHealth | None = None
    activity: str = ""  # progress of the answer in flight
    timings: ev.Timings | None = None  # of the last finished answer


def format_timings(t: ev.Timings) -> str:
    parts = []
    if t.search:
        parts.append(f"search {t.search:.1f}s")
    if t.fetch:
        parts.append(f"pages {t.fetch:.1f}s")
    if t.first_token is not None:
        parts.append(f"1st token {t.first_token:.1f}s")
    parts.append(f"total {t.total:.1f}s")
    return " · ".join(parts)
