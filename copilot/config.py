"""Settings: built-in defaults < config file (TOML) < environment < command-line flags.

Every value remembers where it came from, so `copilot config` can say so.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from copilot.errors import ConfigError

ENGINES = ("duckduckgo", "searxng", "none")

# setting name -> environment variable
ENV_VARS = {
    "ollama_host": "OLLAMA_HOST",
    "model": "COPILOT_MODEL",
    "search_engine": "COPILOT_SEARCH_ENGINE",
    "searxng_url": "COPILOT_SEARXNG_URL",
    "duckduckgo_url": "COPILOT_DUCKDUCKGO_URL",
    "data_dir": "COPILOT_DATA_DIR",
    "fetch_allow": "COPILOT_FETCH_ALLOW",
    "embed_model": "COPILOT_EMBED_MODEL",
    "embed_model_dir": "COPILOT_EMBED_MODEL_DIR",
    "embed_model_url": "COPILOT_EMBED_MODEL_URL",
    "chroma_url": "COPILOT_CHROMA_URL",
}

# Chroma's own archive of all-MiniLM-L6-v2 (fp32 ONNX + tokenizer); its SHA-256 is checked on
# download (copilot.index.embeddings). A mirror of another archive names its checksum in the URL:
# https://mirror/onnx.tar.gz#sha256=<hex>.
DEFAULT_EMBED_MODEL_URL = "https://chroma-onnx-models.s3.amazonaws.com/all-MiniLM-L6-v2/onnx.tar.gz"


def _default_data_dir() -> str:
    from platformdirs import user_data_dir

    return user_data_dir("copilot", appauthor=False)


def default_config_path() -> Path:
    env = os.environ.get("COPILOT_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("copilot", appauthor=False)) / "config.toml"


def normalize_ollama_host(value: str) -> str:
    """Accept OLLAMA_HOST the way Ollama does: `host`, `host:port`, `:port`, with or without scheme."""
    value = value.strip().rstrip("/")
    if not value:
        return "http://127.0.0.1:11434"
    scheme = "http"
    if "://" in value:
        scheme, value = value.split("://", 1)
        if scheme not in ("http", "https"):
            raise ConfigError(f"OLLAMA_HOST has an unknown scheme {scheme!r}",
                              "use http://host:port or host:port")
    path = ""
    if "/" in value:
        value, path = value.split("/", 1)
        path = "/" + path
    host, port = value, ""
    if value.startswith("["):  # [ipv6]:port
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    host = host or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    if port and not port.isdigit():
        raise ConfigError(f"OLLAMA_HOST has a bad port {port!r}", "use host:port, e.g. 127.0.0.1:11434")
    port = port or ("443" if scheme == "https" else "11434")
    return f"{scheme}://{host}:{port}{path}"


def parse_engines(value: str | list[str]) -> list[str]:
    items = value if isinstance(value, list) else value.split(",")
    engines = [str(x).strip().lower() for x in items if str(x).strip()]
    for e in engines:
        if e not in ENGINES:
            raise ConfigError(f"unknown search engine {e!r}",
                              f"choose from {', '.join(ENGINES)} (comma-separated for fallbacks)")
    if "none" in engines:
        return []
    return engines or ["duckduckgo"]


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(x).strip() for x in value if str(x).strip()]
    return [x.strip() for x in str(value).split(",") if x.strip()]


@dataclass
class Settings:
    ollama_host: str = "http://127.0.0.1:11434"
    model: str = ""  # empty: pick an installed chat model and say which
    search_engine: list[str] = field(default_factory=lambda: ["duckduckgo"])
    searxng_url: str = ""
    duckduckgo_url: str = ""  # override DuckDuckGo's HTML endpoint (a proxy or mirror)
    data_dir: str = ""
    fetch_allow: list[str] = field(default_factory=list)
    max_results: int = 8  # plain results asked of the engine
    max_pages: int = 5  # pages read per question
    max_sources: int = 4  # numbered sources given to the model
    context_tokens: int = 600  # budget for the source block, estimated tokens (prefill costs ~11 ms each)
    search_timeout: float = 8.0  # the whole search, all engines and retries together
    search_backoff: float = 1.0  # pause before retrying an engine that rate-limited or failed
    page_timeout: float = 5.0
    fetch_deadline: float = 8.0  # all pages together
    page_max_bytes: int = 3_000_000
    max_redirects: int = 5
    model_timeout: float = 300.0  # longest wait for any chunk of the answer (first token included)
    connect_timeout: float = 5.0
    temperature: float = 0.2
    max_answer_tokens: int = 1024
    cache_ttl_hours: float = 24.0
    embed_model: str = ""  # empty: built-in all-MiniLM-L6-v2 (ONNX); or "ollama:<name>"
    embed_model_dir: str = ""  # folder holding model.onnx + tokenizer.json for the built-in embedder
    embed_model_url: str = DEFAULT_EMBED_MODEL_URL  # where the built-in embedder's files come from
    chroma_url: str = ""  # a Chroma server (`chroma run`), e.g. http://127.0.0.1:8000; empty: embedded
    index_max_file_bytes: int = 5 * 1024 * 1024  # files over this size are skipped by `copilot index`
    chunk_chars: int = 1200  # longest chunk of indexed text, in characters

    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def engines(self) -> list[str]:
        """Engines in the order they are tried. A configured SearXNG is always a fallback."""
        engines = list(self.search_engine)
        if engines and self.searxng_url and "searxng" not in engines:
            engines.append("searxng")
        return [e for e in engines if e != "searxng" or self.searxng_url]

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def cache_dir(self) -> Path:
        return self.data_path / "cache"

    def items(self) -> list[tuple[str, Any, str]]:
        return [(f.name, getattr(self, f.name), self.origins.get(f.name, "default"))
                for f in fields(self) if f.name != "origins"]


def _coerce(name: str, value: Any, origin: str) -> Any:
    kinds = {f.name: f for f in fields(Settings)}
    if name not in kinds or name == "origins":
        raise ConfigError(f"unknown setting {name!r} in {origin}",
                          "run `copilot config` to see the settings")
    default = getattr(Settings(), name)
    try:
        if name == "ollama_host":
            return normalize_ollama_host(str(value))
        if name == "search_engine":
            return parse_engines(value)
        if name == "fetch_allow":
            return _as_list(value)
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} from {origin} has a bad value {value!r}",
                          f"expected {type(default).__name__}") from None


def load_settings(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build the effective settings. `flags` holds only the flags the user gave."""
    env = os.environ if env is None else env
    s = Settings()
    s.data_dir = _default_data_dir()

    def put(name: str, value: Any, origin: str) -> None:
        setattr(s, name, _coerce(name, value, origin))
        s.origins[name] = origin

    path = Path(env["COPILOT_CONFIG"]).expanduser() if env.get("COPILOT_CONFIG") else default_config_path()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}", "fix or remove it") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        for key, value in data.items():
            put(key.replace("-", "_"), value, f"file {path}")
    elif env.get("COPILOT_CONFIG"):
        raise ConfigError(f"COPILOT_CONFIG names {path}, which does not exist", "create it or unset COPILOT_CONFIG")

    for name, var in ENV_VARS.items():
        if env.get(var, "").strip():
            put(name, env[var], f"env {var}")

    for name, value in (flags or {}).items():
        if value is not None:
            put(name, value, f"flag --{name.replace('_', '-')}")
    return s
