"""A scripted question for screenshots, snapshot tests and benchmarks: the events the engine yields
for one answer, with fixed content (no network, no random ports), fed through the same app.

    copilot.tui.demo.services()          # Services whose `ask` plays DEMO_EVENTS
    copilot.tui.demo.failing_services()  # Services whose `ask` fails like an Ollama that is down
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from copilot import events as ev
from copilot.citations import check_citations
from copilot.errors import OllamaUnavailable
from copilot.tui.services import Services

QUESTION = "why does asyncio.run() fail in Jupyter?"
MODEL = "qwen2.5-coder:1.5b"

RESULTS = [
    ev.SearchResult(1, "asyncio.run() cannot be called from a running event loop - Stack Overflow",
                    "https://stackoverflow.com/questions/55409641",
                    "In Jupyter, calling asyncio.run(main()) raises RuntimeError: asyncio.run() cannot be "
                    "called from a running event loop.", "duckduckgo"),
    ev.SearchResult(2, "Runners — Python 3.12 documentation",
                    "https://docs.python.org/3/library/asyncio-runner.html",
                    "Execute the coroutine coro and return the result. This function cannot be called when "
                    "another asyncio event loop is running in the same thread.", "duckduckgo"),
    ev.SearchResult(3, "nest_asyncio · PyPI", "https://pypi.org/project/nest-asyncio/",
                    "By design asyncio does not allow its event loop to be nested. This module patches "
                    "asyncio to allow nested use of asyncio.run.", "duckduckgo"),
    ev.SearchResult(4, "Understanding event loops [a blog]", "https://blog.example.org/event-loops",
                    "An event loop runs tasks one at a time and switches between them when they wait.",
                    "duckduckgo"),
    ev.SearchResult(5, "Python Asyncio: The Complete Guide", "https://superfastpython.example/asyncio-guide",
                    "Asyncio is a library to write concurrent code using the async/await syntax.", "duckduckgo"),
]

SOURCES = [
    ev.Source(1, "Runners — Python 3.12 documentation", RESULTS[1].url, "web-docs",
              "Section: asyncio.run()\nExecute the coroutine coro and return the result.\n"
              "This function cannot be called when another asyncio event loop is running in the same "
              "thread.\nThis function always creates a new event loop and closes it at the end.",
              site="docs.python.org", heading="asyncio.run()"),
    ev.Source(2, "asyncio.run() cannot be called from a running event loop", RESULTS[0].url, "web-so",
              "Accepted answer (score 150):\nJupyter already runs an event loop, and asyncio.run() "
              "refuses to start a second loop in the same thread. Inside a running loop, await the "
              "coroutine directly:\n```python\nresult = await main()\n```",
              site="stackoverflow.com"),
    ev.Source(3, "nest_asyncio · PyPI", RESULTS[2].url, "web",
              "By design asyncio does not allow its event loop to be nested. This module patches "
              "asyncio to allow nested use of asyncio.run and loop.run_until_complete.",
              site="pypi.org"),
    ev.Source(4, "Understanding event loops [a blog]", RESULTS[3].url, "web",
              "An event loop runs tasks one at a time and switches between them when they wait for I/O.\n"
              "Each thread can run at most one event loop at any moment.",
              site="blog.example.org"),
]

ANSWER = (
    "`asyncio.run()` always starts a **new** event loop, and it refuses to run while another loop "
    "is already running in the same thread [1]. Jupyter runs its own loop, so the call fails; "
    "inside a notebook, await the coroutine directly instead [2]:\n\n"
    "```python\nresult = await main()\n```\n\n"
    "The nest_asyncio module ships with Python since version 3.7 [3]. Patching the loop that way "
    "changes asyncio for the whole process [7].\n"
)

TIMINGS = ev.Timings(search=0.42, fetch=1.18, first_token=2.31, total=6.05)


def tokens(text: str) -> list[str]:
    """Word-sized pieces that join back to `text`."""
    out, word = [], ""
    for ch in text:
        word += ch
        if ch in " \n":
            out.append(word)
            word = ""
    return out + ([word] if word else [])


async def demo_ask(question: str, settings, options, *, token_delay: float = 0.0) -> AsyncIterator[ev.Event]:
    yield ev.Status("Searching the web…")
    yield ev.PlainResults(list(RESULTS), "duckduckgo")
    yield ev.Status("Reading 5 pages…")
    yield ev.SourcesReady(list(SOURCES))
    yield ev.ModelChosen(MODEL)
    for t in tokens(ANSWER):
        if token_delay:
            await asyncio.sleep(token_delay)
        yield ev.Token(t)
    from copilot import support

    citations = support.score_support(ANSWER, check_citations(ANSWER, SOURCES), SOURCES)
    warnings = ["the answer cites [7], which is not among the 4 sources"]
    weak = support.weak_warning(ANSWER, citations)
    if weak:
        warnings.append(weak)
    for w in warnings:
        yield ev.Warning(w)
    yield ev.Done(ev.Answer(question=question, text=ANSWER, model=MODEL, sources=list(SOURCES),
                            citations=citations, plain_results=list(RESULTS), warnings=warnings,
                            timings=TIMINGS))


async def failing_ask(question: str, settings, options) -> AsyncIterator[ev.Event]:
    yield ev.Status("Searching the web…")
    yield ev.PlainResults(list(RESULTS), "duckduckgo")
    yield ev.SourcesReady(list(SOURCES))
    raise OllamaUnavailable("Ollama is not reachable at http://127.0.0.1:11434",
                            "start it with `ollama serve`, or set OLLAMA_HOST to where it runs")


def services(**overrides) -> Services:
    """Scripted, offline services: no warm-up, no Ollama check, no index, history as given."""
    base = dict(ask=demo_ask, warm_up=None, check_ollama=False, index_size=lambda _s: None)
    base.update(overrides)
    return Services(**base)


def failing_services(**overrides) -> Services:
    return services(ask=failing_ask, **overrides)
