"""copilot: answers developer questions from real sources, with checked citations."""

__version__ = "0.1.0"
