"""Command line: copilot | ask | search | index | sources | doctor | config.

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
    a.add_argument("--no-local", action="store_true", help="don't use the local index")
    a.add_argument("--engine", help="search engines in order: duckduckgo,searxng or none")
    a.add_argument("--json", action="store_true", help="print one JSON object at the end")
    a.add_argument("--compare", action="store_true",
                   help="print the cited sources next to the plain search results")

    s = sub.add_parser("search", help="plain search results, no model",
                       description="What a search alone gives: ranked results with snippets.")
    s.add_argument("query", nargs="+")
    s.add_argument("--no-web", action="store_true", help="don't search the web")
    s.add_argument("--no-local", action="store_true", help="don't search the local index")
    s.add_argument("--engine", help="search engines in order: duckduckgo,searxng or none")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    ix = sub.add_parser("index", help="add folders of saved pages to the local index",
                        description="Index saved web pages, docs, notes and Stack Exchange dumps so answers "
                                    "can draw on them. Re-running only reads what changed.")
    ix.add_argument("paths", nargs="+", metavar="PATH", help="folders (or files) to index")
    ix.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ix.add_argument("--rebuild", action="store_true",
                    help="start the index over (needed after changing the embedding model)")
    ix.add_argument("--follow-symlinks", action="store_true",
                    help="follow symlinks that lead outside the given folders")
    ix.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="if another `copilot index` is running, wait this long for it (default: 0)")

    so = sub.add_parser("sources", help="list the indexed folders, or remove one",
                        description="The folders in the local index, with their file and chunk counts.")
    so.add_argument("--json", action="store_true", help="print one JSON object")
    so_sub = so.add_subparsers(dest="sources_command", metavar="ACTION")
    rm = so_sub.add_parser("remove", help="remove a folder's files and chunks from the index")
    rm.add_argument("root", metavar="ROOT", help="an indexed folder, as `copilot sources` shows it")
    rm.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="if `copilot index` is running, wait this long for it (default: 0)")

    ev = sub.add_parser("eval", help="measure retrieval or answers on a question set",
                        description="Measure how well the local index finds the pages that answer a set "
                                    "of questions, or how good the answers are beside plain search.")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    er = ev_sub.add_parser("retrieval", help="hit@1/5/10, MRR, nDCG@10 and latency per retrieval mode",
                           description="QA.jsonl: one JSON object per line with `question` and `answer_pages` "
                                       "(paths relative to an indexed folder).")
    er.add_argument("qa", metavar="QA.jsonl", help="the question file")
    er.add_argument("--json", action="store_true", help="print one JSON object")
    er.add_argument("--k", type=int, default=10, help="distinct pages judged per question (default: 10)")
    er.add_argument("--rows", action="store_true", help="with --json, add each question's ranked pages")
    ea = ev_sub.add_parser("answers", help="ask each question; key facts, citations and latency vs plain search",
                           description="QA.jsonl as for `eval retrieval`, with `must_contain` phrases. Each "
                                       "question goes through the real pipeline (local index only unless --web).")
    ea.add_argument("qa", metavar="QA.jsonl", help="the question file")
    ea.add_argument("--json", action="store_true", help="print one JSON object")
    ea.add_argument("--web", action="store_true", help="search the web too")
    ea.add_argument("--limit", type=int, metavar="N", help="ask only the first N questions")
    ea.add_argument("--model", help="Ollama model (default: COPILOT_MODEL or an installed one)")

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
    options = AskOptions(use_web=not args.no_web, use_local=not args.no_local, model=args.model or "",
                         context=context)
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
    return asyncio.run(print_search(query, settings, use_web=not args.no_web, use_local=not args.no_local,
                                    json_mode=args.json))


def cmd_index(args: argparse.Namespace) -> int:
    import json
    import signal

    from copilot.index.console import print_report, progress_bar
    from copilot.index.indexer import StopOnSignals, normalize_roots, run_index

    settings = _settings(args)
    roots = normalize_roots(args.paths)  # a missing PATH fails here, before any work
    with StopOnSignals() as stop:
        try:
            with progress_bar(sys.stderr.isatty()) as on_progress:
                report = run_index(roots, settings, rebuild=args.rebuild, follow_outside=args.follow_symlinks,
                                   on_progress=on_progress, stop=stop, wait=args.wait)
        except KeyboardInterrupt:  # a second signal, or one while waiting for the lock
            print("\ncopilot: cancelled; the next `copilot index` finishes the cleanup", file=sys.stderr)
            return 128 + (stop.signum or signal.SIGINT)
    signum = stop.signum if report.interrupted else None
    for note in report.notes:
        print(f"copilot: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report, signum=signum)
    return 128 + signum if signum else 0


def cmd_sources(args: argparse.Namespace) -> int:
    import json

    from copilot.index.console import print_sources
    from copilot.index.indexer import list_sources, remove_source

    settings = _settings(args)
    if args.sources_command == "remove":
        files, chunks = remove_source(args.root, settings, wait=args.wait)
        if args.json:
            print(json.dumps({"removed": args.root, "files": files, "chunks": chunks}, ensure_ascii=False))
        else:
            from copilot.index.console import plural

            print(f"Removed {args.root}: {plural(files, 'file')}, {plural(chunks, 'chunk')}.")
        return 0
    sources = list_sources(settings)
    if args.json:
        print(json.dumps({"sources": [{"root": s.root, "files": s.files, "chunks": s.chunks} for s in sources]},
                         ensure_ascii=False))
    else:
        print_sources(sources)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from copilot.evaluation import format_table, load_questions, run_retrieval_eval

    if args.eval_command == "answers":
        return cmd_eval_answers(args)
    settings = _settings(args)
    questions = load_questions(Path(args.qa))
    result = run_retrieval_eval(questions, settings, k=args.k, per_question=args.json and args.rows)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_table(result))
    return 0


def cmd_eval_answers(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from copilot.errors import CopilotError, UsageError
    from copilot.eval_answers import format_answers, progress_line, run_answers_eval
    from copilot.evaluation import load_questions

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    settings = _settings(args)
    questions = load_questions(Path(args.qa))[:args.limit]
    tty = sys.stderr.isatty()

    def on_progress(i: int, n: int, row: dict) -> None:
        if tty:
            print(progress_line(i, n, row), file=sys.stderr, flush=True)

    errors: list[CopilotError] = []
    result = run_answers_eval(questions, settings, use_web=args.web, on_progress=on_progress, errors=errors)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_answers(result))
    if not errors:
        return 0
    first = errors[0]
    if len(errors) == len(questions):
        same = all(type(e) is type(first) and e.message == first.message for e in errors)
        print(f"copilot: every question failed: {first.one_line()}", file=sys.stderr)
        return first.exit_code if same else 1
    print(f"copilot: {len(errors)} of {len(questions)} questions failed; first: {first.one_line()}",
          file=sys.stderr)
    return 0


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


COMMANDS = {"ask": cmd_ask, "search": cmd_search, "index": cmd_index, "sources": cmd_sources,
            "eval": cmd_eval, "doctor": cmd_doctor, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    from copilot.errors import CopilotError

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        from copilot.tui.app import run

        return run()
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
