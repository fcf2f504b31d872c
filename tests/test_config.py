"""Settings: defaults < file < environment < flags, each value remembering its origin."""

from __future__ import annotations

import pytest

from copilot.config import load_settings, normalize_ollama_host, parse_engines
from copilot.errors import ConfigError


@pytest.mark.parametrize(("given", "expected"), [
    ("", "http://127.0.0.1:11434"),
    ("localhost", "http://localhost:11434"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    (":5000", "http://127.0.0.1:5000"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("http://gpu-box:11434", "http://gpu-box:11434"),
    ("https://ollama.example.org", "https://ollama.example.org:443"),
    ("http://example.org/ollama/", "http://example.org:11434/ollama"),
    ("[::1]:7000", "http://[::1]:7000"),
])
def test_ollama_host_is_accepted_as_ollama_accepts_it(given: str, expected: str) -> None:
    assert normalize_ollama_host(given) == expected


@pytest.mark.parametrize("bad", ["ftp://host", "host:notaport"])
def test_bad_ollama_host_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalize_ollama_host(bad)


def test_engines_parse_lists_and_none() -> None:
    assert parse_engines("duckduckgo, searxng") == ["duckduckgo", "searxng"]
    assert parse_engines("none") == []
    assert parse_engines(["SearXNG"]) == ["searxng"]
    with pytest.raises(ConfigError, match="unknown search engine 'bing'"):
        parse_engines("bing")


def test_precedence_default_file_env_flag(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "from-file"\nmax_pages = 3\nsearch_engine = ["searxng"]\n'
                   'searxng_url = "http://searx.local"\n')
    env = {"COPILOT_CONFIG": str(cfg), "COPILOT_MODEL": "from-env", "COPILOT_DATA_DIR": str(tmp_path)}
    s = load_settings({"model": "from-flag"}, env=env)
    assert s.model == "from-flag" and s.origins["model"] == "flag --model"
    assert s.max_pages == 3 and s.origins["max_pages"] == f"file {cfg}"
    assert s.data_dir == str(tmp_path) and s.origins["data_dir"] == "env COPILOT_DATA_DIR"
    assert "max_sources" not in s.origins  # still the default
    s2 = load_settings(env=env)
    assert s2.model == "from-env" and s2.origins["model"] == "env COPILOT_MODEL"
    assert s2.engines == ["searxng"]


def test_searxng_is_a_fallback_when_configured(tmp_path) -> None:
    env = {"COPILOT_SEARXNG_URL": "http://s", "COPILOT_DATA_DIR": str(tmp_path)}
    assert load_settings(env=env).engines == ["duckduckgo", "searxng"]
    env["COPILOT_SEARCH_ENGINE"] = "none"
    assert load_settings(env=env).engines == []
    # searxng named but no URL: it cannot be used, so it is not tried
    assert load_settings(env={"COPILOT_SEARCH_ENGINE": "searxng"}).engines == []


def test_fetch_allow_is_a_list(tmp_path) -> None:
    s = load_settings(env={"COPILOT_FETCH_ALLOW": "127.0.0.1, 10.0.0.0/8,intranet.local"})
    assert s.fetch_allow == ["127.0.0.1", "10.0.0.0/8", "intranet.local"]


@pytest.mark.parametrize(("content", "message"), [
    ("model = ", "not valid TOML"),
    ("colour = 'blue'", "unknown setting 'colour'"),
    ("max_pages = 'many'", "bad value 'many'"),
])
def test_bad_config_file_is_one_clear_error(tmp_path, content: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(env={"COPILOT_CONFIG": str(cfg)})


def test_missing_named_config_file_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"COPILOT_CONFIG": str(tmp_path / "nope.toml")})
