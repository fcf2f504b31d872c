"""The Ollama edge, against a loopback server that speaks Ollama's protocol."""

from __future__ import annotations

import socket

import pytest

from copilot import llm
from copilot.config import load_settings
from copilot.errors import ModelError, ModelMissing, OllamaUnavailable


def _settings(**flags):
    return load_settings(flags)


async def _collect(settings, model="qwen2.5-coder:1.5b", stats=None):
    msgs = [{"role": "user", "content": "hi"}]
    return [t async for t in llm.stream_chat(settings, model, msgs, 2048, stats)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_streams_tokens_and_sets_num_ctx(env, ollama) -> None:
    ollama.reply_with(["Use ", "asyncio.run ", "[1]."])
    stats = llm.ChatStats()
    tokens = await _collect(_settings(), stats=stats)
    assert "".join(tokens) == "Use asyncio.run [1]."
    assert ollama.requests[-1]["options"]["num_ctx"] == 2048
    assert stats.done_reason == "stop" and stats.prompt_tokens


async def test_picks_an_installed_chat_model_not_an_embedder(env, ollama) -> None:
    model, why = await llm.resolve_model(_settings())
    assert model.startswith("qwen2.5-coder")
    assert "COPILOT_MODEL is unset" in why


async def test_prefers_coding_models(env, ollama) -> None:
    ollama.models["llama3.2:3b"] = {"family": "llama", "parameter_size": "3B"}
    model, _ = await llm.resolve_model(_settings())
    assert model.startswith("qwen2.5-coder")


async def test_missing_model_lists_installed_and_suggests_pull(env, ollama) -> None:
    with pytest.raises(ModelMissing) as e:
        await llm.resolve_model(_settings(), "mistral:7b")
    assert "ollama pull mistral:7b" in e.value.one_line()
    assert "qwen2.5-coder:1.5b" in e.value.one_line()


async def test_only_embedding_models_is_a_clear_error(env, ollama) -> None:
    del ollama.models["qwen2.5-coder:1.5b"]
    with pytest.raises(ModelMissing, match="no chat model"):
        await llm.resolve_model(_settings())


async def test_unknown_model_at_chat_time_is_model_missing(env, ollama) -> None:
    with pytest.raises(ModelMissing) as e:
        await _collect(_settings(), model="nope:1b")
    assert "ollama pull nope:1b" in e.value.one_line()


async def test_ollama_not_running(monkeypatch, env) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_free_port()}")
    s = _settings()
    with pytest.raises(OllamaUnavailable) as e:
        await llm.resolve_model(s)
    assert "ollama serve" in e.value.one_line()
    with pytest.raises(OllamaUnavailable):
        await _collect(s)
    with pytest.raises(OllamaUnavailable):
        await llm.version(s)


async def test_server_error_is_one_line(env, ollama) -> None:
    ollama.fail_next(500, "llama runner process has terminated")
    with pytest.raises(ModelError, match="llama runner process has terminated"):
        await _collect(_settings())


async def test_stream_dying_mid_answer_keeps_what_arrived(env, ollama) -> None:
    ollama.reply_with(["one ", "two ", "three ", "four"])
    ollama.die_after = 2
    got = []
    with pytest.raises(llm.StreamCut):
        async for t in llm.stream_chat(_settings(), "qwen2.5-coder:1.5b",
                                       [{"role": "user", "content": "x"}], 2048):
            got.append(t)
    assert "".join(got) == "one two "


async def test_slow_first_token_does_not_time_out(env, ollama) -> None:
    ollama.first_token_delay = 0.6
    ollama.reply_with("loaded now")
    s = _settings()
    s.model_timeout = 3.0
    assert "".join(await _collect(s)) == "loaded now"


async def test_silence_past_the_model_timeout_is_an_error(env, ollama) -> None:
    ollama.first_token_delay = 2.0
    s = _settings()
    s.model_timeout = 0.3
    with pytest.raises(ModelError, match="sent nothing"):
        await _collect(s)


async def test_context_length_from_show(env, ollama) -> None:
    ollama.models["tiny:1b"] = {"family": "llama", "context_length": 2048}
    s = _settings()
    assert await llm.context_length(s, "qwen2.5-coder:1.5b") == 32768
    assert await llm.context_length(s, "tiny:1b") == 2048
    assert await llm.context_length(s, "not-installed:7b") is None  # unknown: nothing is cut
