"""Command line: copilot | ask | search | doctor | config.

Only argparse is imported at start; each command imports what it needs, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from copilot import __version__

STDIN_CONTEXT_LIMIT = 12_000  # characters of piped input kept (the tail: errors come last)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="copilot",
        description="Answers developer questions from real sources, with checked citations, "
                    "beside plain search results.",
    )
    p.add_argument("--version", action="version", version=f"copilot {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("ask", help="answer a question from web pages, citing them",
                       description="Answer a question from the pages a search finds, each claim "
                                   "cited [n]. Piped input is attached as context.")
    a.add_argument("question", nargs="+", help="the question, or - to read it from stdin")
    a.add_argument("--model", help="Ollama model (default: COPILOT_MODEL or an installed one)")
    a.add_argument("--no-web", action="store_true", help="don't search the web")
    a.add_argument("--engine", help="search engines in order: duckduckgo,searxng or none")
    a.add_argument("--json", action="store_true", help="print one JSON object at the end")
    a.add_argument("--compare", action="store_true",
                   help="print the cited sources next to the plain search results")

    s = sub.add_parser("search", help="plain search results, no model",
                       description="What a search alone gives: ranked results with snippets.")
    s.add_argument("query", nargs="+")
    s.add_argument("--no-web", action="store_true", help="don't search the web")
    s.add_argument("--engine", help="search engines in order: duckduckgo,searxng or none")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    sub.add_parser("doctor", help="check Ollama, models, search engine and data dir")
    sub.add_parser("config", help="print the effective settings and where each came from")
    return p


def _settings(args: argparse.Namespace):
    from copilot.config import load_settings

    flags = {}
    if getattr(args, "model", None):
        flags["model"] = args.model
    if getattr(args, "engine", None):
        flags["search_engine"] = args.engine
    return load_settings(flags)


def _read_stdin() -> str:
    data = sys.stdin.read()
    if len(data) > STDIN_CONTEXT_LIMIT:
        data = "…(earlier input cut)…\n" + data[-STDIN_CONTEXT_LIMIT:]
    return data


def _question_and_context(args: argparse.Namespace) -> tuple[str, str | None]:
    from copilot.errors import UsageError

    words = args.question
    piped = not sys.stdin.isatty() if sys.stdin else False
    if words == ["-"]:
        if not piped:
            raise UsageError("`copilot ask -` reads the question from stdin, but stdin is a terminal",
                             "pipe the question in, or type it as an argument")
        question, context = _read_stdin().strip(), None
    else:
        question = " ".join(words).strip()
        context = _read_stdin().strip() if piped else None
    if not question:
        raise UsageError("the question is empty", 'ask something, e.g. copilot ask "what is a coroutine?"')
    return question, context or None


def cmd_ask(args: argparse.Namespace) -> int:
    import asyncio

    from copilot.engine import AskOptions
    from copilot.render import AskPrinter

    settings = _settings(args)
    question, context = _question_and_context(args)
    options = AskOptions(use_web=not args.no_web, model=args.model or "", context=context)
    printer = AskPrinter(json_mode=args.json, compare=args.compare)
    return asyncio.run(printer.run(question, settings, options))


def cmd_search(args: argparse.Namespace) -> int:
    import asyncio

    from copilot.render import print_search

    settings = _settings(args)
    query = " ".join(args.query).strip()
    if not query:
        from copilot.errors import UsageError

        raise UsageError("the query is empty", 'search for something, e.g. copilot search "asyncio.run"')
    return asyncio.run(print_search(query, settings, use_web=not args.no_web, json_mode=args.json))


def cmd_doctor(args: argparse.Namespace) -> int:
    import asyncio

    from copilot.doctor import run_doctor

    return asyncio.run(run_doctor(_settings(args)))


def cmd_config(args: argparse.Namespace) -> int:
    from copilot.config import default_config_path
    from copilot.render import print_config

    settings = _settings(args)
    print_config(settings, default_config_path())
    return 0


COMMANDS = {"ask": cmd_ask, "search": cmd_search, "doctor": cmd_doctor, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    from copilot.errors import CopilotError

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except CopilotError as e:
        print(f"copilot: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ncopilot: cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the user gets one line, never a traceback
        if os.environ.get("COPILOT_DEBUG"):
            raise
        print(f"copilot: internal error: {e.__class__.__name__}: {e} "
              "(set COPILOT_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
