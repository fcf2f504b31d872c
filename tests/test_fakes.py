"""The fakes speak the real protocols: checked with the official ollama client, httpx and ddgs."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import httpx
import ollama
import pytest

from copilot.config import load_settings
from tests.fakes import FakeOllama, LoopbackWeb

CHAT = "qwen2.5-coder:1.5b"
REAL_HOME = Path.home()  # at import, before the isolating fixture runs


def client(o: FakeOllama) -> ollama.Client:
    return ollama.Client(host=o.host, timeout=5)


# -- FakeOllama -------------------------------------------------------------------------------


def test_root_version_and_tags(ollama: FakeOllama) -> None:
    assert httpx.get(ollama.host + "/").text == "Ollama is running"
    assert httpx.get(ollama.host + "/api/version").json()["version"]
    listed = client(ollama).list()
    names = [m.model for m in listed.models]
    assert names == ["qwen2.5-coder:1.5b", "all-minilm:latest"]  # untagged names mean :latest
    m = listed.models[0]
    assert m.details.family == "qwen2" and m.details.parameter_size == "1.5B"
    assert m.size and m.digest and m.modified_at


def test_show_has_model_info_and_capabilities(ollama: FakeOllama) -> None:
    shown = client(ollama).show(CHAT)
    assert shown.modelinfo["qwen2.context_length"] == 32768
    assert shown.capabilities == ["completion", "tools", "insert"]
    assert shown.details.family == "qwen2" and shown.template and shown.parameters
    emb = client(ollama).show("all-minilm")  # `:latest` implied
    assert emb.capabilities == ["embedding"] and emb.modelinfo["bert.context_length"] == 512


def test_chat_streams_tokens_then_done(ollama: FakeOllama) -> None:
    ollama.reply_with("Use pathlib.Path [1].")
    prompt = "x" * 400
    parts = list(client(ollama).chat(model=CHAT, stream=True,
                                     messages=[{"role": "user", "content": prompt}]))
    text = "".join(p.message.content for p in parts)
    assert text == "Use pathlib.Path [1]."
    assert [p.message.content for p in parts[:-1]] == ["Use", " pathlib.Path", " [1]."]
    assert all(p.message.role == "assistant" and not p.done for p in parts[:-1])
    last = parts[-1]
    assert last.done and last.done_reason == "stop" and last.message.content == ""
    assert last.prompt_eval_count == 100  # len(prompt) / 4
    assert last.eval_count == 3
    assert last.total_duration > 0 and last.eval_duration > 0
    assert ollama.requests[-1]["path"] == "/api/chat"
    assert ollama.requests[-1]["messages"][0]["content"] == prompt


def test_chat_non_streaming_and_reply_forms(ollama: FakeOllama) -> None:
    c = client(ollama)
    ollama.reply_with(["a", "b", "c"])
    assert c.chat(model=CHAT, messages=[{"role": "user", "content": "q"}]).message.content == "abc"
    ollama.reply_with(lambda body: f"echo {body['messages'][-1]['content']}")
    r = c.chat(model=CHAT, messages=[{"role": "user", "content": "hi"}], stream=False)
    assert r.message.content == "echo hi" and r.done


def test_num_ctx_truncates_and_num_predict_cuts(ollama: FakeOllama) -> None:
    c = client(ollama)
    long = "y" * 40_000  # ~10k tokens
    msgs = [{"role": "user", "content": long}]
    r = c.chat(model=CHAT, messages=msgs, stream=False)
    assert r.prompt_eval_count == ollama.default_num_ctx  # silently truncated
    r = c.chat(model=CHAT, messages=msgs, stream=False, options={"num_ctx": 16384})
    assert r.prompt_eval_count == 10_000
    assert ollama.truncated == [{"prompt_tokens": 10_000, "num_ctx": ollama.default_num_ctx}]
    # num_ctx above the model's trained context is lowered to it, as Ollama does
    huge = [{"role": "user", "content": "y" * 160_000}]  # ~40k tokens
    r = c.chat(model=CHAT, messages=huge, stream=False, options={"num_ctx": 65536})
    assert r.prompt_eval_count == 32768
    assert ollama.truncated[-1] == {"prompt_tokens": 40_000, "num_ctx": 32768}
    ollama.reply_with("one two three four")
    r = c.chat(model=CHAT, messages=msgs, stream=False, options={"num_predict": 2})
    assert r.message.content == "one two" and r.done_reason == "length"


def test_unknown_model_is_404_response_error(ollama: FakeOllama) -> None:
    c = client(ollama)
    with pytest.raises(ollama_mod().ResponseError) as err:
        c.chat(model="nope:7b", messages=[{"role": "user", "content": "q"}])
    assert err.value.status_code == 404
    assert err.value.error == 'model "nope:7b" not found, try pulling it first'
    with pytest.raises(ollama_mod().ResponseError) as err:
        list(c.chat(model="nope:7b", messages=[], stream=True))
    assert err.value.status_code == 404
    with pytest.raises(ollama_mod().ResponseError) as err:
        c.show("nope:7b")
    assert err.value.status_code == 404


def ollama_mod():  # the fixture named `ollama` shadows the module inside tests
    return ollama


def test_fail_next_and_mid_stream_death(ollama: FakeOllama) -> None:
    c = client(ollama)
    ollama.fail_next(500, "llama runner process has terminated", times=2)
    for _ in range(2):
        with pytest.raises(ollama_mod().ResponseError) as err:
            list(c.chat(model=CHAT, messages=[], stream=True))
        assert err.value.status_code == 500 and "terminated" in err.value.error
    assert list(c.chat(model=CHAT, messages=[], stream=True))[-1].done

    ollama.reply_with("a b c d e")
    ollama.die_after = 2
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        for part in c.chat(model=CHAT, messages=[], stream=True):
            got.append(part.message.content)
    assert got == ["a", " b"]


def test_delays(ollama: FakeOllama) -> None:
    ollama.reply_with(["a", "b", "c"])
    ollama.first_token_delay = 0.3
    ollama.token_delay = 0.1
    t0 = time.monotonic()
    stamps = []
    for _ in client(ollama).chat(model=CHAT, messages=[], stream=True):
        stamps.append(time.monotonic() - t0)
    assert stamps[0] >= 0.3
    assert stamps[2] - stamps[0] >= 0.18  # two token gaps, with timer slack


def test_embed_is_deterministic_and_normalised(ollama: FakeOllama) -> None:
    c = client(ollama)
    r = c.embed(model="all-minilm", input=["pathlib path join", "pathlib path join", "asyncio"])
    a, b, d = r.embeddings
    assert len(a) == 64 and a == b
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert sum(x * y for x, y in zip(a, d, strict=True)) < 0.99
    single = c.embed(model="all-minilm", input="asyncio").embeddings
    assert single == [d]
    with pytest.raises(ollama_mod().ResponseError) as err:
        c.embed(model=CHAT, input="x")
    assert err.value.status_code == 400


def test_ps_lists_used_models(ollama: FakeOllama) -> None:
    c = client(ollama)
    assert c.ps().models == []
    c.chat(model=CHAT, messages=[])
    ps = c.ps().models
    assert [m.model for m in ps] == [CHAT] and ps[0].context_length == 32768


async def test_async_client(ollama: FakeOllama) -> None:
    ollama.reply_with("async works")
    ac = ollama_mod().AsyncClient(host=ollama.host, timeout=5)
    out = [p.message.content async for p in await ac.chat(model=CHAT, messages=[], stream=True)]
    assert "".join(out) == "async works"
    assert (await ac.embed(model="all-minilm", input="x")).embeddings
    assert [m.model for m in (await ac.list()).models][0] == CHAT


def test_no_server_streaming_raises_connect_error() -> None:
    with FakeOllama() as o:
        host = o.host
    with pytest.raises(httpx.ConnectError):
        list(ollama.Client(host=host, timeout=2).chat(model=CHAT, messages=[], stream=True))


# -- LoopbackWeb --------------------------------------------------------------------------------


def test_pages_status_headers_redirects(web: LoopbackWeb) -> None:
    url = web.add_page("/a.html", "<h1>A</h1>", headers={"X-Test": "1"})
    web.add_page("/old", redirect_to="/a.html")
    web.add_page("/gone", "no", status=410, content_type="text/plain")
    with httpx.Client(timeout=5) as c:
        r = c.get(url)
        assert r.status_code == 200 and r.text == "<h1>A</h1>" and r.headers["x-test"] == "1"
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        r = c.get(web.url("/old"), follow_redirects=True)
        assert str(r.url) == url and r.history[0].status_code == 302
        assert c.get(web.url("/gone")).status_code == 410
        assert c.get(web.url("/missing")).status_code == 404
    assert ("GET", "/old") in web.requests


def test_delay_and_trickle(web: LoopbackWeb) -> None:
    slow = web.add_page("/slow", "x", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(slow, timeout=0.2)
    body = b"0123456789" * 20
    trickled = web.add_page("/trickle", body, content_type="application/octet-stream", trickle=0.05)
    t0 = time.monotonic()
    assert httpx.get(trickled, timeout=5).content == body  # 200 bytes in 64-byte pieces
    assert time.monotonic() - t0 >= 0.15


def test_searxng_json(web: LoopbackWeb) -> None:
    web.set_search([{"title": "Anything", "url": "https://a.example/", "content": "a"}])
    web.set_search([{"title": "Pathlib", "url": "https://docs.python.org/3/library/pathlib.html",
                     "content": "Object-oriented filesystem paths"}], query="pathlib")
    r = httpx.get(web.base_url + "/search", params={"q": "python pathlib join", "format": "json"})
    data = r.json()
    assert data["query"] == "python pathlib join"
    assert [x["title"] for x in data["results"]] == ["Pathlib"]
    assert set(data["results"][0]) >= {"title", "url", "content", "engine"}
    other = httpx.get(web.base_url + "/search", params={"q": "other", "format": "json"}).json()
    assert other["results"][0]["url"] == "https://a.example/"
    assert web.search_calls == 2 and web.search_queries == ["python pathlib join", "other"]
    web.searxng_json = False
    r = httpx.get(web.base_url + "/search", params={"q": "x", "format": "json"})
    assert r.status_code == 403


def test_fail_search_applies_to_both_engines(web: LoopbackWeb) -> None:
    web.set_search([{"title": "T", "url": "https://t.example/", "content": "c"}])
    web.fail_search(429, times=2, body="Too Many Requests")
    r = httpx.get(web.base_url + "/search", params={"q": "x", "format": "json"})
    assert r.status_code == 429 and r.text == "Too Many Requests"
    assert httpx.post(web.duckduckgo_url, data={"q": "x"}).status_code == 429
    assert httpx.post(web.duckduckgo_url, data={"q": "x"}).status_code == 200
    web.fail_search(200, body="{not json")
    with pytest.raises(ValueError):
        httpx.get(web.base_url + "/search", params={"q": "x", "format": "json"}).json()
    assert web.search_calls == 4


def test_duckduckgo_page_parses_with_ddgs_engine(web: LoopbackWeb) -> None:
    """ddgs's own DuckDuckGo parser reads our page: same xpaths as html.duckduckgo.com."""
    from ddgs.engines.duckduckgo import Duckduckgo

    web.set_search([
        {"title": "Pathlib & <b>docs</b>", "url": "https://docs.python.org/3/library/pathlib.html",
         "content": "Object-oriented paths & more"},
        {"title": "SO", "url": "https://stackoverflow.com/q/1", "content": "answer"},
    ])
    page = httpx.post(web.duckduckgo_url, data={"q": "pathlib", "b": "", "l": "us-en"}).text
    engine = Duckduckgo()
    results = engine.post_extract_results(engine.extract_results(page))
    assert [(r.title, r.href, r.body) for r in results] == [
        ("Pathlib & docs", "https://docs.python.org/3/library/pathlib.html",
         "Object-oriented paths & more"),
        ("SO", "https://stackoverflow.com/q/1", "answer"),
    ]  # the sponsored result is dropped by ddgs itself
    # Note: ddgs strips anything tag-like from titles after unescaping ("List<int>" -> "List").


# -- env fixture ------------------------------------------------------------------------------


def test_env_points_settings_at_fakes(env: dict, ollama: FakeOllama, web: LoopbackWeb,
                                      tmp_path: Path) -> None:
    s = load_settings()
    assert s.ollama_host == ollama.host
    assert s.engines == ["searxng"] and s.searxng_url == web.base_url
    assert s.duckduckgo_url == web.duckduckgo_url
    assert Path(s.data_dir) == tmp_path / "data"
    assert s.model == "" and s.fetch_allow == ["127.0.0.1"]
    assert "COPILOT_MODEL" not in os.environ
    from platformdirs import user_config_dir, user_data_dir

    assert Path.home() != REAL_HOME
    for d in (user_config_dir("copilot"), user_data_dir("copilot")):
        assert Path(d).is_relative_to(Path.home())
