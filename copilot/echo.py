"""An answer that is only the question (or the instruction) said back.

Small models sometimes answer with the question repeated, a source number after it, and nothing
else: 2 of the 50 held-out answers of qwen2.5-coder:1.5b were the pasted error message again, one
was the prompt's instruction. `EchoGuard` holds the streamed words back only while they still
read as the start of the question or of the instruction (usually not even one token: a real
answer parts from them at once) and lets everything through from the first word that does not.
An answer that never parts from them is an echo: the engine asks once more with a nudge
(`copilot.prompting.nudged`), and the user never sees the echo.

Words are compared lowercased, with citation markers, punctuation and markup dropped. A held
text counts as an echo only when it is at least `MIN_WORDS` words long or holds half of what it
repeats, so a short answer such as "No." to "no module named 'x'" is not taken for one.

An instruction said back whole and then followed by a real answer is dropped, and the answer
shown from its first word (qwen2.5-coder:1.5b opened answers without sources with the whole
instruction said back). The question is not: an answer that quotes the pasted
error and then explains it is shown whole.
"""

from __future__ import annotations

import re

MIN_WORDS = 4
_MARKER = re.compile(r"\[[^\]\n]{0,12}(?:\]|$)")  # a marker, or one still arriving at the end
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    return _NON_WORD.sub(" ", _MARKER.sub(" ", text.lower())).strip()


class EchoGuard:
    """Feed it the streamed pieces; it returns what may be shown now. `instructions` are
    references too, and one said back whole before the answer is dropped."""

    def __init__(self, *references: str, instructions: tuple[str, ...] = ()) -> None:
        self._instructions = [r for r in (normalize(x) for x in instructions) if r]
        self._refs = [r for r in (normalize(x) for x in references) if r] + self._instructions
        self._held: list[str] = []
        self._dropped = False  # an instruction said back whole was dropped
        self.open = not self._refs  # True once the answer has parted from every reference

    def feed(self, piece: str) -> list[str]:
        if self.open:
            return [piece]
        self._held.append(piece)
        while True:
            text = "".join(self._held)
            said = normalize(text)
            if not said or any(ref.startswith(said) for ref in self._refs):
                return []
            rest = self._after_instruction(text, said)
            if rest is None:
                break
            self._dropped = True
            self._held = [rest] if rest else []
        self.open = True
        held, self._held = self._held, []
        return held

    def _after_instruction(self, text: str, said: str) -> str | None:
        """What follows an instruction said back whole at the start of `text` (None: none was)."""
        for ref in self._instructions:
            if said.startswith(ref + " "):
                # the longest start of the text that reads as the instruction (so the cut also
                # takes what normalizing drops after it: punctuation, spaces, markers)
                end = max(i for i in range(len(text) + 1) if normalize(text[:i]) == ref)
                return text[end:]
        return None

    def release(self) -> list[str]:
        """What is still held (the stream ended or broke): to show when it is not an echo."""
        held, self._held = self._held, []
        return held

    def is_echo(self) -> bool:
        """Whether what is held, at the end of the stream, is only a repeat of a reference."""
        said = normalize("".join(self._held))
        if self.open:
            return False
        if not said:
            return self._dropped  # an instruction said back, and nothing after it
        words = len(said.split())
        return any(ref.startswith(said) and (words >= MIN_WORDS or 2 * len(said) >= len(ref)) for ref in self._refs)
