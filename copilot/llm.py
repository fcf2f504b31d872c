"""Ollama: stream chat, list and pick models, health. Timeouts are always set.

The official `ollama` client is imported lazily: `copilot --help` must not pay for it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from copilot.errors import ModelError, ModelMissing, OllamaUnavailable
from copilot.tls import ssl_context

if TYPE_CHECKING:
    from copilot.config import Settings

# Names and families of models that only embed: never offered as the chat model.
_EMBED_HINTS = re.compile(r"embed|minilm|bge|e5-|gte-|nomic-bert|\bbert\b|snowflake-arctic", re.I)


@dataclass
class ModelInfo:
    name: str
    family: str = ""
    parameter_size: str = ""
    size: int = 0
    modified_at: str = ""

    @property
    def is_embedding(self) -> bool:
        return bool(_EMBED_HINTS.search(self.name) or _EMBED_HINTS.search(self.family))


@dataclass
class ChatStats:
    """Filled in from the final chunk of a chat stream."""

    prompt_tokens: int | None = None
    answer_tokens: int | None = None
    done_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class StreamCut(Exception):
    """The model's stream broke after it had started; what arrived is still good."""


def client(settings: Settings):
    import httpx
    import ollama

    timeout = httpx.Timeout(settings.model_timeout, connect=settings.connect_timeout)
    return ollama.AsyncClient(host=settings.ollama_host, timeout=timeout, verify=ssl_context())


def sync_client(settings: Settings):
    """A blocking client with the same timeouts, for work outside an event loop (indexing)."""
    import httpx
    import ollama

    timeout = httpx.Timeout(settings.model_timeout, connect=settings.connect_timeout)
    return ollama.Client(host=settings.ollama_host, timeout=timeout, verify=ssl_context())


def _unavailable(settings: Settings) -> OllamaUnavailable:
    return OllamaUnavailable(
        f"Ollama is not reachable at {settings.ollama_host}",
        "start it with `ollama serve`, or set OLLAMA_HOST to where it runs",
    )


def _translate(err: BaseException, settings: Settings, model: str = "") -> Exception:
    """Map client and transport errors to our one-line errors."""
    import httpx
    import ollama

    if isinstance(err, ollama.ResponseError):
        if err.status_code == 404 and model:
            return ModelMissing(f"model {model!r} is not installed in Ollama",
                                f"run `ollama pull {model}` or choose another with --model")
        return ModelError(f"Ollama answered with an error: {err.error}"
                          + (f" (HTTP {err.status_code})" if err.status_code > 0 else ""))
    if isinstance(err, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
        return _unavailable(settings)
    if isinstance(err, httpx.TimeoutException):
        return ModelError(f"Ollama sent nothing for {settings.model_timeout:.0f} s",
                          "the model may be too large for this machine; try a smaller one")
    if isinstance(err, httpx.HTTPError):
        return ModelError(f"the connection to Ollama failed: {err.__class__.__name__}")
    return err  # not ours to translate


async def list_models(settings: Settings) -> list[ModelInfo]:
    try:
        async with client(settings) as c:
            resp = await c.list()
    except Exception as e:  # noqa: BLE001 - translated below
        raise _translate(e, settings) from None
    models = []
    for m in resp.models:
        d = m.details
        models.append(ModelInfo(
            name=m.model or "",
            family=(d.family or "") if d else "",
            parameter_size=(d.parameter_size or "") if d else "",
            size=m.size or 0,
            modified_at=str(m.modified_at or ""),
        ))
    return models


def choose_chat_model(models: list[ModelInfo]) -> tuple[str, str]:
    """Pick an installed chat model when none was configured. Returns (name, why)."""
    chat = [m for m in models if not m.is_embedding]
    if not chat:
        names = ", ".join(m.name for m in models) or "none"
        raise ModelMissing(f"Ollama has no chat model installed (installed: {names})",
                           "run `ollama pull qwen2.5-coder:1.5b` or set COPILOT_MODEL")
    # Coding models answer developer questions best; then the most recently used.
    chat.sort(key=lambda m: m.modified_at, reverse=True)
    chat.sort(key=lambda m: "coder" not in m.name and "code" not in m.family)
    best = chat[0]
    return best.name, f"COPILOT_MODEL is unset; using {best.name}, the first of {len(chat)} installed chat models"


async def resolve_model(settings: Settings, requested: str = "") -> tuple[str, str]:
    """The model to use and why. Checks that a requested model is installed."""
    models = await list_models(settings)
    if not requested:
        return choose_chat_model(models)
    names = {m.name for m in models}
    if requested in names or f"{requested}:latest" in names:
        return requested, ""
    installed = ", ".join(sorted(n for n in names)) or "none"
    raise ModelMissing(f"model {requested!r} is not installed in Ollama (installed: {installed})",
                       f"run `ollama pull {requested}` or choose another with --model")


async def context_length(settings: Settings, model: str) -> int | None:
    """The context `model` was trained for, from /api/show (`<arch>.context_length`); None when
    Ollama does not say. Ollama lowers a larger `num_ctx` to this and then cuts a longer prompt
    without telling anyone, so the prompt must fit here."""
    try:
        async with client(settings) as c:
            info = await c.show(model)
    except Exception:  # noqa: BLE001 - unknown is a fine answer; the chat call reports real errors
        return None
    meta = info.modelinfo or {}
    own = meta.get(f"{meta.get('general.architecture')}.context_length")
    if isinstance(own, int) and own > 0:
        return own
    lengths = [v for k, v in meta.items() if k.endswith(".context_length") and isinstance(v, int) and v > 0]
    return min(lengths) if lengths else None


async def stream_chat(
    settings: Settings,
    model: str,
    messages: list[dict],
    num_ctx: int,
    stats: ChatStats | None = None,
) -> AsyncIterator[str]:
    """Yield the answer's text as it arrives. Raises our errors; StreamCut if it breaks mid-way."""
    import httpx

    options = {"num_ctx": num_ctx, "temperature": settings.temperature,
               "num_predict": settings.max_answer_tokens}
    started = False
    try:
        async with client(settings) as c:
            stream = await c.chat(model=model, messages=messages, stream=True, options=options)
            async for chunk in stream:
                text = (chunk.message.content or "") if chunk.message else ""
                if chunk.done and stats is not None:
                    stats.prompt_tokens = chunk.prompt_eval_count
                    stats.answer_tokens = chunk.eval_count
                    stats.done_reason = chunk.done_reason or ""
                if text:
                    started = True
                    yield text
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        if started:
            raise StreamCut(f"the connection to Ollama broke mid-answer ({e.__class__.__name__})") from None
        raise ModelError("Ollama closed the connection before answering",
                         "check the Ollama server log") from None
    except Exception as e:  # noqa: BLE001 - translated below
        translated = _translate(e, settings, model)
        if translated is e:
            raise
        if started and isinstance(translated, ModelError):
            raise StreamCut(translated.message) from None
        raise translated from None


async def version(settings: Settings) -> str:
    """Ollama's version string; raises OllamaUnavailable when it does not answer."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=settings.connect_timeout, verify=ssl_context()) as c:
            r = await c.get(settings.ollama_host.rstrip("/") + "/api/version")
            r.raise_for_status()
            return r.json().get("version", "?")
    except (httpx.HTTPError, ValueError):
        raise _unavailable(settings) from None
