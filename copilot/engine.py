"""The pipeline: search → read pages → pick passages → prompt → stream → check citations.

`ask()` is an async generator of events (copilot.events). It is the only place that knows the
order of the steps; the CLI and the TUI only render what it yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from copilot import events as ev
from copilot.config import Settings
from copilot.errors import CopilotError, NoSources
from copilot.passages import post_lead, short_heading
from copilot.safetext import clean

# After this long without a first token, tell the user the model is probably loading.
LOADING_NOTICE_AFTER = 2.0


@dataclass
class AskOptions:
    use_web: bool = True
    use_local: bool = True  # draw on the local index when it is not empty
    model: str = ""  # empty: settings.model, else pick an installed one
    context: str | None = None  # text the user attached (piped terminal output)


def _source_kind(doc_kind: str, origin: str) -> ev.SourceKind:
    suffix = {"so": "-so", "docs": "-docs"}.get(doc_kind, "")
    return f"{origin}{suffix}"  # type: ignore[return-value]


def _extract(page: ev.Page):
    from copilot.web.extract import decode_body, extract_html, extract_text

    text = decode_body(page.body, page.content_type)
    if "html" in page.content_type or text.lstrip()[:1] == "<":
        return extract_html(text, url=page.final_url)
    return extract_text(text, url=page.final_url)


async def read_pages(
    results: list[ev.SearchResult], settings: Settings, warn
) -> list[tuple[object, str]]:
    """Fetch the top results concurrently and extract each; failures become warnings."""
    from copilot.web.fetch import FetchFailure, fetch_pages

    urls = [r.url for r in results[: settings.max_pages]]
    if not urls:
        return []
    fetched = await fetch_pages(urls, settings)
    docs: list[tuple[object, str]] = []
    failed: list[str] = []
    pages = [p for p in fetched if not isinstance(p, FetchFailure)]
    failed = [f"{urlsplit(f.url).netloc or f.url} ({f.reason})" for f in fetched
              if isinstance(f, FetchFailure)]
    extracted = await asyncio.gather(*(asyncio.to_thread(_extract, p) for p in pages),
                                     return_exceptions=True)
    for page, doc in zip(pages, extracted, strict=True):
        if isinstance(doc, BaseException) or not doc.sections:
            failed.append(f"{urlsplit(page.final_url).netloc} (nothing readable)")
            continue
        docs.append((doc, page.url))
    if failed:
        warn(f"skipped {len(failed)} of {len(urls)} pages: " + "; ".join(failed))
    return docs


def number_sources(picked) -> list[ev.Source]:
    """Number the chosen passages [1..n]. A web source keeps the URL the search gave, so it
    matches its plain result; the page's canonical address rides along."""
    sources = []
    for n, (doc, passage) in enumerate(picked, start=1):
        url = passage.url or doc.url or doc.canonical_url or ""
        title = doc.title or url
        heading = " › ".join(short_heading(h) for h in passage.heading_path if h and h not in title)
        canonical = doc.canonical_url if doc.canonical_url and doc.canonical_url != url else None
        sources.append(ev.Source(
            n=n, title=clean(title), url=url, kind=_source_kind(doc.kind, "web"),
            text=passage.for_prompt(doc.title), site=doc.site or urlsplit(url).netloc,
            canonical_url=canonical, heading=clean(heading),
        ))
    return sources


# A local hit this far from the question (cosine similarity) is noise, not a source.
LOCAL_MIN_SIMILARITY = 0.25


# One open local index per (data dir, store, embedder) for the life of the process: opening one
# costs ~300 ms (Chroma client, HNSW load, embedder session) and a TUI that reopened it for every
# question grew by ~100 MB a question at 100k chunks. LocalIndex itself reopens Chroma when a
# writer has finished since. Searches are serialised: they share one SQLite connection.
_OPEN_INDEXES: dict[tuple, object] = {}
_INDEX_LOCK = threading.Lock()


def _shared_index(settings: Settings):
    from copilot.index.local import LocalIndex

    key = (str(settings.data_path), settings.chroma_url, settings.embed_model, settings.embed_model_dir)
    index = _OPEN_INDEXES.get(key)
    if index is None:
        index = _OPEN_INDEXES[key] = LocalIndex.open(settings)
    return index


def local_hits(question: str, settings: Settings, k: int) -> list:
    """Hybrid (keyword + dense) hits from the local index, `copilot.retrieval.Hit`s; [] when there
    is no index. Runs in a thread (it may import chromadb and load the embedder on first use)."""
    from copilot.retrieval import hybrid_search

    with _INDEX_LOCK:
        hits = hybrid_search(question, settings, k, index=_shared_index(settings))
    return [h for h in hits if h.similarity >= LOCAL_MIN_SIMILARITY]


def local_sources(hits, budget_tokens: int, max_sources: int) -> tuple[list[ev.Source], int]:
    """Sources from local hits within the budget; returns them (unnumbered) and the tokens used."""
    from copilot.prompting import estimate_tokens

    out, used = [], 0
    for hit in hits:
        if len(out) >= max_sources:
            break
        lead = post_lead(hit.role, hit.accepted, hit.score)
        text = f"{lead}\n{hit.text}" if lead else hit.text
        cost = estimate_tokens(text)
        if out and used + cost > budget_tokens:
            continue
        title = hit.title or hit.source_path.rsplit("/", 1)[-1]
        heading = " › ".join(short_heading(h) for h in hit.heading.split(" › ") if h and h not in title)
        out.append(ev.Source(
            n=0, title=clean(title), url=hit.url or "", kind=_source_kind(hit.kind, "local"), text=text,
            path=hit.source_path, site=hit.site, heading=clean(heading)))
        used += cost
    return out, used


async def ask(question: str, settings: Settings, options: AskOptions | None = None
              ) -> AsyncIterator[ev.Event]:
    """Answer `question`. Yields events; raises CopilotError for what stops the answer."""
    from copilot import citations, llm, prompting

    options = options or AskOptions()
    started = time.perf_counter()
    timings = ev.Timings()
    warnings: list[str] = []
    pending: list[str] = []  # warnings not yet yielded

    def warn(message: str) -> None:
        warnings.append(message)
        pending.append(message)

    def flush() -> list[ev.Warning]:
        out = [ev.Warning(m) for m in pending]
        pending.clear()
        return out

    # Ask Ollama which model to use, and search the local index, while the web work runs.
    model_task = asyncio.create_task(
        llm.resolve_model(settings, options.model or settings.model))
    local_task = (asyncio.create_task(asyncio.to_thread(local_hits, question, settings, settings.max_sources))
                  if options.use_local else None)
    try:
        results: list[ev.SearchResult] = []
        docs: list[tuple[object, str]] = []
        if options.use_web and settings.engines:
            from copilot.web.search import search

            yield ev.Status("Searching the web…")
            t = time.perf_counter()
            results, engine = await search(question, settings, on_warning=warn)
            timings.search = time.perf_counter() - t
            for w in flush():
                yield w
            yield ev.PlainResults(results, engine)
            if results:
                yield ev.Status(f"Reading {min(len(results), settings.max_pages)} pages…")
                t = time.perf_counter()
                docs = await read_pages(results, settings, warn)
                timings.fetch = time.perf_counter() - t
                for w in flush():
                    yield w
        elif options.use_web:
            warn("web search is off (COPILOT_SEARCH_ENGINE=none)")
            for w in flush():
                yield w

        from copilot.passages import select_sources

        hits = []
        if local_task:
            try:
                hits = await local_task
            except CopilotError as e:
                warn(f"the local index was not used: {e.one_line()}")
        # Local hits share the budget with the web: at most half the sources when both have some.
        local_share = settings.max_sources if not docs else max(1, settings.max_sources // 2)
        mine, used = local_sources(hits, settings.context_tokens // (1 if not docs else 2), local_share)
        picked = select_sources(question, docs, settings.context_tokens - used,
                                settings.max_sources - len(mine))
        sources = number_sources(picked)
        sources = [*mine, *sources]
        for n, s in enumerate(sources, start=1):
            s.n = n
        if mine and options.use_web and settings.engines and not docs:
            warn("no web pages could be used: answering from the local index only")
            for w in flush():
                yield w
        if not sources:
            if options.use_web and settings.engines:
                why = "no search results" if not results else "none of the pages could be read"
                raise NoSources(f"{why} for this question",
                                "try other words, check `copilot doctor`, or use --no-web to "
                                "answer from the model alone")
            warn("no sources: this answer comes from the model alone, without citations")
            for w in flush():
                yield w
        yield ev.SourcesReady(sources)

        model, reason = await model_task
        yield ev.ModelChosen(model, reason)

        messages = prompting.build_messages(question, sources, options.context)
        num_ctx = prompting.num_ctx_for(messages, settings.max_answer_tokens)
        stats = llm.ChatStats()
        parts: list[str] = []
        cut_reason = ""
        stream = llm.stream_chat(settings, model, messages, num_ctx, stats).__aiter__()
        t_model = time.perf_counter()
        told_loading = False
        step: asyncio.Future | None = None
        try:
            while True:
                step = asyncio.ensure_future(stream.__anext__())
                if not parts and not told_loading:
                    done, _ = await asyncio.wait({step}, timeout=LOADING_NOTICE_AFTER)
                    if not done:
                        told_loading = True
                        yield ev.Status(f"Loading {model}… (the first answer after a start is slow)")
                try:
                    text = await step
                except StopAsyncIteration:
                    break
                if not parts:
                    timings.first_token = time.perf_counter() - t_model
                parts.append(text)
                yield ev.Token(text)
        except llm.StreamCut as e:
            cut_reason = "stream"
            warn(f"the answer was cut: {e}")
        finally:
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            await stream.aclose()

        answer_text = "".join(parts)
        if stats.done_reason == "length":
            cut_reason = "length"
            warn(f"the answer hit the {settings.max_answer_tokens}-token limit and was cut")
        cites = citations.check_citations(answer_text, sources)
        invalid = sorted({c.n for c in cites if not c.valid})
        if invalid:
            listed = ", ".join(f"[{n}]" for n in invalid)
            warn(f"the answer cites {listed}, which {'is' if len(invalid) == 1 else 'are'} not "
                 f"among the {len(sources)} sources")
        elif sources and answer_text.strip() and not cites:
            warn("the answer cites none of its sources")
        if cites:
            from copilot import support

            cites = await asyncio.to_thread(support.check_support, answer_text, cites, sources, settings)
            weak_note = support.weak_warning(answer_text, cites)
            if weak_note:
                warn(weak_note)
        for w in flush():
            yield w
        timings.total = time.perf_counter() - started
        yield ev.Done(ev.Answer(
            question=question, text=answer_text, model=model, sources=sources, citations=cites,
            plain_results=results, warnings=warnings, timings=timings, cut_reason=cut_reason,
            prompt_tokens=stats.prompt_tokens,
        ))
    finally:
        for task in (model_task, local_task):
            if task is None:
                continue
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # consumed: never "exception was never retrieved"


__all__ = ["AskOptions", "ask", "CopilotError"]
