"""The pipeline: search → read pages → pick passages → prompt → stream → check citations.

`ask()` is an async generator of events (copilot.events). It is the only place that knows the
order of the steps; the CLI and the TUI only render what it yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from copilot import events as ev
from copilot.config import Settings
from copilot.errors import CopilotError, NoSources, UsageError
from copilot.passages import post_lead, short_heading
from copilot.safetext import clean

# After this long without a first token, tell the user the model is probably loading.
LOADING_NOTICE_AFTER = 2.0
# When the prompt does not fit the model's context, the answer budget shrinks to this at least.
MIN_ANSWER_TOKENS = 256
CONTEXT_CUT_MARK = "…(earlier input cut)…\n"

T = TypeVar("T")


@dataclass
class AskOptions:
    use_web: bool = True
    use_local: bool = True  # draw on the local index when it is not empty
    model: str = ""  # empty: settings.model, else pick an installed one
    context: str | None = None  # text the user attached (piped terminal output)


def _source_kind(doc_kind: str, origin: str) -> ev.SourceKind:
    suffix = {"so": "-so", "docs": "-docs"}.get(doc_kind, "")
    return f"{origin}{suffix}"  # type: ignore[return-value]


def _extract_all(pages: list[ev.Page]) -> list:
    """Each page's Document, or the exception its extraction raised."""
    out: list = []
    for page in pages:
        try:
            out.append(_extract(page))
        except Exception as e:  # noqa: BLE001 - a page that cannot be read is skipped with a warning
            out.append(e)
    return out


def _extract(page: ev.Page):
    from copilot.web.extract import decode_body, extract_html, extract_text

    text = decode_body(page.body, page.content_type)
    if "html" in page.content_type or text.lstrip()[:1] == "<":
        return extract_html(text, url=page.final_url)
    return extract_text(text, url=page.final_url)


async def read_pages(
    results: list[ev.SearchResult], settings: Settings, warn
) -> list[tuple[object, str]]:
    """Fetch the top results concurrently, then extract them; failures become warnings."""
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
    # One after another, in one thread: extraction holds the GIL nearly throughout, so four pages
    # in four threads took as long (28 ms against 25 for four saved SO pages) and left each
    # thread's malloc fragments behind (+8 MiB against +4 during an answer).
    extracted = await asyncio.to_thread(_extract_all, pages)
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

    key = _index_key(settings)
    index = _OPEN_INDEXES.get(key)
    if index is None:
        index = _OPEN_INDEXES[key] = LocalIndex.open(settings)
    return index


def local_hits(question: str, settings: Settings, k: int) -> list:
    """Hybrid (keyword + dense) hits from the local index, `copilot.retrieval.Hit`s; [] when there
    is no index. Runs in a thread (it may import chromadb and load the embedder on first use)."""
    import sqlite3

    from copilot.retrieval import hybrid_search

    with _INDEX_LOCK:
        try:
            hits = hybrid_search(question, settings, k, index=_shared_index(settings))
        except (CopilotError, sqlite3.Error) as e:
            # Open it afresh next time (a restarted Chroma server, a rebuilt index), and say why in
            # one line: the caller goes on without local hits.
            _forget_index(settings)
            if isinstance(e, CopilotError):
                raise
            from copilot.errors import IndexDamaged, IndexUnavailable
            from copilot.index.manifest import REBUILD_HINT

            if type(e) is sqlite3.DatabaseError:  # damaged (not a database, malformed)
                raise IndexDamaged(f"the local index is damaged ({e})", REBUILD_HINT) from None
            raise IndexUnavailable(f"the local index cannot be read ({e})",
                                   "check the data dir (COPILOT_DATA_DIR)") from None
    return [h for h in hits if h.similarity >= LOCAL_MIN_SIMILARITY]


def prepare_local(settings: Settings) -> None:
    """Open the local index and load what its first search needs (Chroma's HNSW index, the
    embedder's session): ~1 s at 100k chunks that the first question would otherwise pay. For a
    long-lived process (the TUI's warm-up thread). A fault is left for the first real search to
    report."""
    with contextlib.suppress(CopilotError):
        local_hits("warm up", settings, 1)


def _index_key(settings: Settings) -> tuple:
    return (str(settings.data_path), settings.chroma_url, settings.embed_model, settings.embed_model_dir)


def _forget_index(settings: Settings) -> None:
    index = _OPEN_INDEXES.pop(_index_key(settings), None)
    if index is not None:
        with contextlib.suppress(Exception):
            index.close()


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


async def _pick_model(settings: Settings, requested: str) -> tuple[str, str, int | None]:
    """The model, why it was chosen, and its context length (None: Ollama did not say)."""
    from copilot import llm

    model, reason = await llm.resolve_model(settings, requested)
    return model, reason, await llm.context_length(settings, model)


async def _unless_model_fails(work: Awaitable[T], model_task: asyncio.Task) -> T:
    """`await work`, but raise the model task's error as soon as it fails (Ollama down, model
    missing): no answer can come, so reading pages for it would only make the user wait."""
    task = asyncio.ensure_future(work)
    try:
        if not model_task.done():
            await asyncio.wait({task, model_task}, return_when=asyncio.FIRST_COMPLETED)
        if model_task.done() and not model_task.cancelled() and model_task.exception() is not None:
            await model_task  # raises
        return await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _longest(most: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, most] with fits(n) (fits grows false as n grows); 0 when none."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _tail(text: str, n: int) -> str:
    if n <= 0:
        return ""
    return text if n >= len(text) else CONTEXT_CUT_MARK + text[-n:]


def _shortened(sources: list[ev.Source], per_mille: int) -> list[ev.Source]:
    """Copies of `sources` with each passage cut to per_mille/1000 of its length (the originals,
    already shown, stay whole)."""
    out = []
    for s in sources:
        keep = len(s.text) * per_mille // 1000
        text = s.text if keep >= len(s.text) else s.text[:keep].rstrip() + " …"
        out.append(dataclasses.replace(s, text=text))
    return out


def fit_prompt(question: str, sources: list[ev.Source], context: str | None, max_answer: int,
               limit: int | None, model: str, warn: Callable[[str], None]
               ) -> tuple[list[dict], int, int]:
    """(messages, num_ctx, answer budget) that fit the model's context of `limit` tokens (None:
    unknown, nothing is cut). Ollama lowers a larger num_ctx to that context and then cuts the
    prompt without a word, so what does not fit is shortened here, each step with a warning: the
    answer budget (not below MIN_ANSWER_TOKENS), the piped input (its start goes: errors come
    last), the sources' passages (each by the same share). A question that still does not fit is
    a UsageError."""
    from copilot import prompting

    def need(srcs: list[ev.Source], ctx: str | None, answer_tokens: int) -> int:
        return prompting.tokens_needed(prompting.build_messages(question, srcs, ctx), answer_tokens)

    answer = max_answer
    if limit and need(sources, context, answer) > limit:
        where = f"{model}'s {limit}-token context"
        answer = min(max_answer, max(MIN_ANSWER_TOKENS, limit // 4))
        if answer < max_answer:
            warn(f"the answer is limited to {answer} tokens to fit {where}")
        if context and need(sources, context, answer) > limit:
            keep = _longest(len(context), lambda n: need(sources, _tail(context, n), answer) <= limit)
            context = _tail(context, keep)
            warn(f"the piped input was cut to its last {keep} characters to fit {where}" if keep
                 else f"the piped input was left out to fit {where}")
        if sources and need(sources, context, answer) > limit:
            keep = _longest(1000, lambda k: need(_shortened(sources, k), context, answer) <= limit)
            sources = _shortened(sources, keep)
            warn(f"the sources were shortened to fit {where}")
        total = need(sources, context, answer)
        if total > limit:
            raise UsageError(f"the question is too long for {where} (it needs about {total} tokens)",
                             "shorten it, or choose a model with a longer context with --model")
    messages = prompting.build_messages(question, sources, context)
    num_ctx = prompting.num_ctx_for(messages, answer)
    return messages, min(num_ctx, limit) if limit else num_ctx, answer


def matched_note(matched: list[ev.Match]) -> str:
    numbers = ", ".join(f"[{n}]" for n in sorted({m.n for m in matched}))
    k = len(matched)
    return (f"; by their wording, {k} of its sentence{'s' if k != 1 else ''} match{'' if k != 1 else 'es'} "
            f"{numbers} (copilot's match, not the model's citation)")


async def ask(question: str, settings: Settings, options: AskOptions | None = None
              ) -> AsyncIterator[ev.Event]:
    """Answer `question`. Yields events; raises CopilotError for what stops the answer."""
    from copilot import citations, llm, prompting, support
    from copilot.echo import EchoGuard

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
    model_task = asyncio.create_task(_pick_model(settings, options.model or settings.model))
    local_task = (asyncio.create_task(asyncio.to_thread(local_hits, question, settings, settings.max_sources))
                  if options.use_local else None)
    try:
        results: list[ev.SearchResult] = []
        docs: list[tuple[object, str]] = []
        search_failed = ""  # what happened to each engine, when none answered
        if options.use_web and settings.engines:
            from copilot.web.search import ALL_FAILED, search

            yield ev.Status("Searching the web…")
            t = time.perf_counter()
            results, engine = await search(question, settings, on_warning=warn)
            timings.search = time.perf_counter() - t
            if not engine and pending and pending[-1].endswith(ALL_FAILED):
                search_failed = pending[-1].removesuffix(ALL_FAILED)
            for w in flush():
                yield w
            yield ev.PlainResults(results, engine)
            if results:
                yield ev.Status(f"Reading {min(len(results), settings.max_pages)} pages…")
                t = time.perf_counter()
                docs = await _unless_model_fails(read_pages(results, settings, warn), model_task)
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
            if options.use_web and settings.engines and search_failed:
                raise NoSources(f"no search results: every search engine failed ({search_failed})",
                                "try again in a minute, add a fallback engine (COPILOT_SEARXNG_URL), "
                                "or use --no-web to answer from the model alone")
            if options.use_web and settings.engines:
                why = "no search results" if not results else "none of the pages could be read"
                raise NoSources(f"{why} for this question",
                                "try other words, check `copilot doctor`, or use --no-web to "
                                "answer from the model alone")
            warn("no sources: this answer comes from the model alone, without citations")
            for w in flush():
                yield w
        yield ev.SourcesReady(sources)

        model, reason, context_limit = await model_task
        yield ev.ModelChosen(model, reason)

        messages, num_ctx, answer_tokens = fit_prompt(
            question, sources, options.context, settings.max_answer_tokens, context_limit, model, warn)
        for w in flush():
            yield w
        chat_settings = settings if answer_tokens == settings.max_answer_tokens else \
            dataclasses.replace(settings, max_answer_tokens=answer_tokens)
        parts: list[str] = []
        cut_reason = ""
        t_model = time.perf_counter()
        told_loading = False
        instruction = prompting.CITE_INSTRUCTION if sources else prompting.NO_SOURCES_INSTRUCTION

        def show(piece: str) -> ev.Token:
            if not parts:
                timings.first_token = time.perf_counter() - t_model
            parts.append(piece)
            return ev.Token(piece)

        for attempt in (1, 2):
            # The first try is watched for an answer that only says the question back (copilot.echo)
            said_back = (question, f"Question: {question}") if attempt == 1 else ()
            guard = EchoGuard(*said_back, instructions=(instruction,))
            stats = llm.ChatStats()
            stream = llm.stream_chat(chat_settings, model, messages, num_ctx, stats).__aiter__()
            step: asyncio.Future | None = None
            heard = False
            try:
                while True:
                    step = asyncio.ensure_future(stream.__anext__())
                    if not heard and not parts and not told_loading:
                        done, _ = await asyncio.wait({step}, timeout=LOADING_NOTICE_AFTER)
                        if not done:
                            told_loading = True
                            yield ev.Status(f"Loading {model}… (the first answer after a start is slow)")
                    try:
                        text = await step
                    except StopAsyncIteration:
                        break
                    heard = True
                    for piece in guard.feed(text):
                        yield show(piece)
            except llm.StreamCut as e:
                cut_reason = "stream"
                warn(f"the answer was cut: {e}")
            finally:
                if step is not None and not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                await stream.aclose()
            if cut_reason or attempt == 2 or not guard.is_echo():
                for piece in guard.release():  # held back, and not an echo after all
                    yield show(piece)
                break
            guard.release()  # dropped: the user never sees the echo
            warn("the model first only repeated the question back; it was asked again")
            yield ev.Status("The model repeated the question; asking again…")
            messages = prompting.nudged(messages)

        answer_text = "".join(parts)
        if answer_text:
            # The words are all here: a screen can show them now, before the checks below (the
            # support check takes 0.1-0.5 s).
            yield ev.Status("Checking the citations…")
        if stats.done_reason == "length":
            cut_reason = "length"
            warn(f"the answer hit the {answer_tokens}-token limit and was cut")
        cites = citations.check_citations(answer_text, sources)
        matched: list[ev.Match] = []
        if sources and answer_text.strip() and not any(c.valid for c in cites):
            # The model cited nothing: say which sources its sentences come from, as copilot's match
            matched = await asyncio.to_thread(support.match_uncited, answer_text, sources, settings)
        invalid = sorted({c.n for c in cites if not c.valid})
        if invalid:
            listed = ", ".join(f"[{n}]" for n in invalid)
            warn(f"the answer cites {listed}, which {'is' if len(invalid) == 1 else 'are'} not "
                 f"among the {len(sources)} sources")
        elif sources and answer_text.strip() and not cites:
            warn("the answer cites none of its sources" + (matched_note(matched) if matched else ""))
        if cites:
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
            prompt_tokens=stats.prompt_tokens, matched=matched,
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
