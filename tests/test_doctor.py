"""`copilot doctor`: one line per check, the fix on every failing line, exit 1 when any fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def doctor() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "copilot", "doctor"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env={**os.environ})


def line(out: str, name: str) -> str:
    found = [ln for ln in out.splitlines() if ln.split()[1:2] == [name]]
    assert found, f"no {name} line in:\n{out}"
    return found[0]


def test_all_good(env, ollama, web) -> None:
    web.set_search([{"title": "Python", "url": web.url("/p"), "content": "x"}])
    proc = doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert line(proc.stdout, "ollama").startswith("ok")
    assert "qwen2.5-coder:1.5b" in line(proc.stdout, "models")
    assert "all-minilm" not in line(proc.stdout, "models")  # embedders are not chat models
    assert line(proc.stdout, "search:searxng").startswith("ok")
    assert line(proc.stdout, "data").startswith("ok")


def test_ollama_down_says_how_to_fix(env, web, monkeypatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    proc = doctor()
    assert proc.returncode == 1
    ln = line(proc.stdout, "ollama")
    assert ln.startswith("FAIL") and "ollama serve" in ln
    assert "Traceback" not in proc.stderr


def test_configured_model_missing(env, ollama, web, monkeypatch) -> None:
    monkeypatch.setenv("COPILOT_MODEL", "mistral:7b")
    proc = doctor()
    assert proc.returncode == 1
    assert "ollama pull mistral:7b" in line(proc.stdout, "model")


def test_searxng_without_json_format(env, ollama, web) -> None:
    web.searxng_json = False
    proc = doctor()
    assert proc.returncode == 1
    ln = line(proc.stdout, "search:searxng")
    assert ln.startswith("FAIL") and "json" in ln.lower()


def test_data_dir_not_writable(env, ollama, web, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("COPILOT_DATA_DIR", str(blocker / "data"))
    proc = doctor()
    assert proc.returncode == 1
    ln = line(proc.stdout, "data")
    assert ln.startswith("FAIL") and "COPILOT_DATA_DIR" in ln
