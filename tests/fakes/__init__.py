"""Real loopback HTTP servers standing in for Ollama and the web in tests."""

from .ollama_server import FakeOllama
from .web import LoopbackWeb

__all__ = ["FakeOllama", "LoopbackWeb"]
