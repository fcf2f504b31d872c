"""`copilot doctor`: one line per check, with the fix when something is wrong."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from copilot.config import Settings
from copilot.errors import CopilotError

OK, BAD, INFO = "ok", "FAIL", "info"


async def _check_ollama(settings: Settings) -> list[tuple[str, str, str]]:
    from copilot import llm

    try:
        version = await llm.version(settings)
    except CopilotError as e:
        return [(BAD, "ollama", e.one_line())]
    lines = [(OK, "ollama", f"reachable at {settings.ollama_host} (version {version})")]
    try:
        models = await llm.list_models(settings)
    except CopilotError as e:
        return lines + [(BAD, "models", e.one_line())]
    chat = [m.name for m in models if not m.is_embedding]
    if not chat:
        lines.append((BAD, "models", "no chat model installed — run `ollama pull qwen2.5-coder:1.5b`"))
        return lines
    lines.append((OK, "models", f"{len(chat)} chat model(s): {', '.join(chat)}"))
    if settings.model:
        try:
            await llm.resolve_model(settings, settings.model)
            lines.append((OK, "model", f"{settings.model} is installed"))
        except CopilotError as e:
            lines.append((BAD, "model", e.one_line()))
    else:
        name, _ = llm.choose_chat_model(models)
        lines.append((INFO, "model", f"COPILOT_MODEL is unset; answers will use {name}"))
    return lines


async def _check_search(settings: Settings) -> list[tuple[str, str, str]]:
    from copilot.web.search import probe_engine

    if not settings.engines:
        return [(INFO, "search", "web search is off (COPILOT_SEARCH_ENGINE=none)")]
    lines = []
    for engine in settings.engines:
        problem = await probe_engine(engine, settings)
        if problem:
            if "—" not in problem:
                fix = ("check the network or the URL in COPILOT_SEARXNG_URL" if engine == "searxng"
                       else "check the network; add a SearXNG fallback with COPILOT_SEARXNG_URL")
                problem = f"{problem} — {fix}"
            lines.append((BAD, f"search:{engine}", problem))
        else:
            lines.append((OK, f"search:{engine}", "answers"))
    return lines


def _check_data_dir(settings: Settings) -> tuple[str, str, str]:
    path = settings.data_path
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as e:
        return (BAD, "data dir", f"{path} is not writable ({e.strerror}) — set COPILOT_DATA_DIR "
                                 "to a folder you own")
    return (OK, "data dir", f"{path} is writable")


def _check_config(path: Path) -> tuple[str, str, str]:
    where = "loaded" if path.is_file() else "not present (defaults in use)"
    return (INFO, "config", f"{path} {where}")


async def run_doctor(settings: Settings) -> int:
    import asyncio

    from copilot.config import default_config_path

    ollama_lines, search_lines = await asyncio.gather(_check_ollama(settings), _check_search(settings))
    lines = [_check_config(default_config_path()), *ollama_lines, *search_lines,
             _check_data_dir(settings)]
    color = os.isatty(1)
    marks = {OK: "\x1b[32m✓\x1b[0m", BAD: "\x1b[31m✗\x1b[0m", INFO: "\x1b[2m·\x1b[0m"}
    plain = {OK: "ok  ", BAD: "FAIL", INFO: "info"}
    for status, name, text in lines:
        mark = marks[status] if color else plain[status]
        print(f"{mark} {name:<18} {text}")
    return 1 if any(status == BAD for status, _, _ in lines) else 0
