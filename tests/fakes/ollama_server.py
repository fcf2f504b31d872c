"""A fake Ollama server that speaks the real HTTP protocol on 127.0.0.1.

Use it with the official `ollama` client (or httpx) exactly as the product does:

    with FakeOllama() as o:
        o.reply_with("Use pathlib [1].")
        ollama.Client(host=o.host).chat(model="qwen2.5-coder:1.5b", messages=[...], stream=True)

Behaviour copied from Ollama's observable protocol (not its code): NDJSON streaming on
/api/chat and /api/generate, `{"error": ...}` bodies with real status codes, names without a tag
meaning `:latest`, `num_ctx` lowered to the model's `context_length`, prompts longer than
`num_ctx` silently truncated (reported through `prompt_eval_count`, and listed in `.truncated`
for tests), and `num_predict` cutting the answer with `done_reason: "length"`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ._http import Handler, LoopbackServer

Reply = str | list[str] | Callable[[dict], "str | list[str]"]

DEFAULT_MODELS: dict[str, dict] = {
    "qwen2.5-coder:1.5b": {
        "family": "qwen2",
        "parameter_size": "1.5B",
        "quantization_level": "Q4_K_M",
        "context_length": 32768,
        "capabilities": ["completion", "tools", "insert"],
        "size": 986_061_892,
    },
    "all-minilm": {
        "family": "bert",
        "parameter_size": "23M",
        "quantization_level": "F16",
        "context_length": 512,
        "capabilities": ["embedding"],
        "size": 45_960_996,
    },
}

EMBED_DIM = 64
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_WORD_RE = re.compile(r"\w+")


def split_tokens(text: str) -> list[str]:
    """Split text into word-ish tokens that join back to the same text (" word" style)."""
    return _TOKEN_RE.findall(text)


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def embed_text(text: str, dim: int = EMBED_DIM) -> list[float]:
    """Deterministic hashed bag-of-words vector, L2-normalised. Same words -> same direction."""
    vec = [0.0] * dim
    words = _WORD_RE.findall(text.lower()) or [""]
    for w in words:
        h = hashlib.blake2b(w.encode(), digest_size=8).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        sign = 1.0 if h[4] & 1 else -1.0
        vec[idx] += sign
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _full_name(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class FakeOllama(LoopbackServer):
    """Fake Ollama. Knobs are plain attributes; change them between (or during) calls."""

    version = "0.12.6"

    def __init__(self, models: dict[str, dict] | None = None) -> None:
        super().__init__()
        self.models: dict[str, dict] = {k: dict(v) for k, v in (models or DEFAULT_MODELS).items()}
        self.requests: list[dict] = []  # JSON bodies of /api/chat and /api/generate, with "path"
        self.log: list[tuple[str, str]] = []  # (method, path) of every request
        self.token_delay = 0.0
        self.first_token_delay = 0.0
        self.die_after: int | None = None
        self.default_num_ctx = 4096  # Ollama's default when options.num_ctx is not set
        self.truncated: list[dict] = []  # prompts cut silently: {"prompt_tokens", "num_ctx"}
        self._reply: Reply = "This is a reply from the fake model."
        self._failures: list[tuple[int, str]] = []
        self._fail_paths: tuple[str, ...] = ()
        self._loaded: dict[str, float] = {}  # full model name -> time last used
        self._flock = threading.Lock()

    # -- knobs ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.base_url

    def reply_with(self, reply: Reply) -> None:
        """str (split into " word" tokens), list of tokens, or callable(request_body) -> either."""
        self._reply = reply

    def fail_next(self, status: int, error: str, times: int = 1, *,
                  paths: tuple[str, ...] = ("/api/chat", "/api/generate", "/api/embed",
                                            "/api/embeddings")) -> None:
        """The next `times` requests to a model-running endpoint (`paths`) answer
        `status` with `{"error": error}`."""
        with self._flock:
            self._failures.extend([(status, error)] * times)
            self._fail_paths = paths

    # -- helpers -------------------------------------------------------------------------

    def resolve(self, name: str) -> str | None:
        """The models-dict key for a requested name (`x` and `x:latest` are the same model)."""
        if not name:
            return None
        for key in self.models:
            if _full_name(key) == _full_name(name):
                return key
        return None

    def _take_failure(self, route: str) -> tuple[int, str] | None:
        with self._flock:
            if self._failures and route in self._fail_paths:
                return self._failures.pop(0)
        return None

    def _tokens_for(self, body: dict) -> list[str]:
        reply = self._reply
        if callable(reply):
            reply = reply(body)
        if isinstance(reply, str):
            return split_tokens(reply)
        return [str(t) for t in reply]

    def _details(self, info: dict) -> dict:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": info.get("family", "llama"),
            "families": [info.get("family", "llama")],
            "parameter_size": info.get("parameter_size", "1B"),
            "quantization_level": info.get("quantization_level", "Q4_K_M"),
        }

    def _digest(self, name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    def _model_error(self, req: Handler, name: str) -> str | None:
        key = self.resolve(name)
        if key is None:
            req.send_json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return None
        return key

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, req: Handler) -> None:
        route, method = req.route, req.command
        self.log.append((method, route))
        if route == "/" and method in ("GET", "HEAD"):
            return req.send_text(200, "Ollama is running")
        if route == "/api/version":
            return req.send_json(200, {"version": self.version})
        if route == "/api/tags":
            return self._tags(req)
        if route == "/api/ps":
            return self._ps(req)
        if method != "POST":
            return req.send_text(404, "404 page not found")
        body = req.json_body()
        if not isinstance(body, dict):
            return req.send_json(400, {"error": "invalid character in request body"})
        if route in ("/api/chat", "/api/generate"):
            self.requests.append({**body, "path": route})
        if (failure := self._take_failure(route)) is not None:
            return req.send_json(failure[0], {"error": failure[1]})
        if route == "/api/show":
            return self._show(req, body)
        if route in ("/api/chat", "/api/generate"):
            return self._generate(req, body, chat=route == "/api/chat")
        if route == "/api/embed":
            return self._embed(req, body)
        if route == "/api/embeddings":
            return self._embeddings(req, body)
        return req.send_text(404, "404 page not found")

    # -- endpoints -----------------------------------------------------------------------

    def _tags(self, req: Handler) -> None:
        models = []
        for name, info in self.models.items():
            full = _full_name(name)
            models.append({
                "name": full,
                "model": full,
                "modified_at": "2025-01-15T10:00:00.000000000Z",
                "size": int(info.get("size", 1_000_000_000)),
                "digest": self._digest(full),
                "details": self._details(info),
            })
        req.send_json(200, {"models": models})

    def _ps(self, req: Handler) -> None:
        models = []
        for full, used in list(self._loaded.items()):
            key = self.resolve(full)
            if key is None:
                continue
            info = self.models[key]
            expires = datetime.fromtimestamp(used, UTC) + timedelta(minutes=5)
            models.append({
                "name": full,
                "model": full,
                "size": int(info.get("size", 1_000_000_000)),
                "digest": self._digest(full),
                "details": self._details(info),
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "size_vram": 0,
                "context_length": int(info.get("context_length", 4096)),
            })
        req.send_json(200, {"models": models})

    def _show(self, req: Handler, body: dict) -> None:
        name = body.get("model") or body.get("name") or ""
        key = self._model_error(req, name)
        if key is None:
            return
        info = self.models[key]
        family = info.get("family", "llama")
        ctx = int(info.get("context_length", 4096))
        caps = list(info.get("capabilities", ["completion"]))
        embedding = "embedding" in caps
        template = "" if embedding else (
            "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
            "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n")
        req.send_json(200, {
            "license": "Apache License 2.0",
            "modelfile": f"# Modelfile generated by fake ollama\nFROM {_full_name(key)}\n",
            "parameters": "" if embedding else 'stop                           "<|im_end|>"',
            "template": template,
            "details": self._details(info),
            "model_info": {
                "general.architecture": family,
                "general.parameter_count": 1_000_000,
                "general.file_type": 15,
                f"{family}.context_length": ctx,
                f"{family}.embedding_length": 896 if not embedding else 384,
                f"{family}.block_count": 28,
            },
            "capabilities": caps,
            "modified_at": "2025-01-15T10:00:00.000000000Z",
        })

    def _generate(self, req: Handler, body: dict, *, chat: bool) -> None:
        name = body.get("model") or ""
        key = self._model_error(req, name)
        if key is None:
            return
        info = self.models[key]
        if "completion" not in info.get("capabilities", ["completion"]):
            what = "chat" if chat else "generate"
            return req.send_json(400, {"error": f'"{name}" does not support {what}'})
        self._loaded[_full_name(key)] = time.time()
        started = time.monotonic_ns()

        if chat:
            prompt = "".join(str(m.get("content") or "") for m in body.get("messages") or [])
        else:
            prompt = str(body.get("system") or "") + str(body.get("prompt") or "")
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or self.default_num_ctx)
        # Ollama lowers num_ctx to the context the model was trained for ("requested context size
        # too large for model"), then truncates a longer prompt silently.
        num_ctx = min(num_ctx, int(info.get("context_length") or num_ctx))
        prompt_tokens = min(estimate_tokens(prompt), num_ctx)
        if estimate_tokens(prompt) > num_ctx:
            self.truncated.append({"prompt_tokens": estimate_tokens(prompt), "num_ctx": num_ctx})

        tokens = self._tokens_for(body)
        done_reason = "stop"
        num_predict = options.get("num_predict")
        if num_predict is not None and int(num_predict) >= 0 and len(tokens) > int(num_predict):
            tokens, done_reason = tokens[: int(num_predict)], "length"

        def chunk(text: str, done: bool = False) -> dict:
            obj: dict[str, Any] = {"model": name, "created_at": _now()}
            if chat:
                obj["message"] = {"role": "assistant", "content": text}
            else:
                obj["response"] = text
            obj["done"] = done
            return obj

        def final(text: str) -> dict:
            obj = chunk(text, done=True)
            total = time.monotonic_ns() - started
            load = int(self.first_token_delay * 1e9)
            obj.update({
                "done_reason": done_reason,
                "total_duration": max(total, 1),
                "load_duration": load,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": max(prompt_tokens, 1) * 1_000_000,
                "eval_count": len(tokens),
                "eval_duration": max(total - load, 1),
            })
            if not chat:
                obj["context"] = [1, 2, 3]
            return obj

        if self.first_token_delay:
            time.sleep(self.first_token_delay)

        if body.get("stream", True) is False:
            return req.send_json(200, final("".join(tokens)))

        req.start_chunked(200, "application/x-ndjson")
        for i, tok in enumerate(tokens):
            if self.die_after is not None and i >= self.die_after:
                return req.die()
            if i and self.token_delay:
                time.sleep(self.token_delay)
            req.write_chunk((json.dumps(chunk(tok)) + "\n").encode())
        if self.die_after is not None and len(tokens) >= self.die_after:
            return req.die()
        req.write_chunk((json.dumps(final("")) + "\n").encode())
        req.end_chunked()

    def _embed_model(self, req: Handler, body: dict) -> str | None:
        name = body.get("model") or ""
        key = self._model_error(req, name)
        if key is None:
            return None
        if "embedding" not in self.models[key].get("capabilities", []):
            req.send_json(400, {"error": f'"{name}" does not support embeddings'})
            return None
        self._loaded[_full_name(key)] = time.time()
        return key

    def _embed(self, req: Handler, body: dict) -> None:
        started = time.monotonic_ns()
        if self._embed_model(req, body) is None:
            return
        raw = body.get("input", "")
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw or []]
        if self.first_token_delay:
            time.sleep(self.first_token_delay)
        req.send_json(200, {
            "model": body.get("model"),
            "embeddings": [embed_text(t) for t in texts],
            "total_duration": max(time.monotonic_ns() - started, 1),
            "load_duration": int(self.first_token_delay * 1e9),
            "prompt_eval_count": sum(estimate_tokens(t) for t in texts),
        })

    def _embeddings(self, req: Handler, body: dict) -> None:  # legacy endpoint
        if self._embed_model(req, body) is None:
            return
        req.send_json(200, {"embedding": embed_text(str(body.get("prompt", "")))})
