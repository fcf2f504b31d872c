"""Answers that only say the question (or the instruction) back are asked again, unseen."""

from __future__ import annotations

import json

from copilot.echo import EchoGuard, normalize
from copilot.prompting import CITE_INSTRUCTION, ECHO_NUDGE
from tests.test_ask_cli import QUESTION, run_cli

ERROR = "TypeError: can't compare offset-naive and offset-aware datetimes"


def feed_all(guard: EchoGuard, pieces: list[str]) -> list[str]:
    out: list[str] = []
    for p in pieces:
        out += guard.feed(p)
    return out


def test_a_real_answer_goes_through_at_once() -> None:
    guard = EchoGuard(ERROR, f"Question: {ERROR}", CITE_INSTRUCTION)
    assert guard.feed("Make") == ["Make"]  # parts from the question at the first word
    assert guard.feed(" both datetimes aware") == [" both datetimes aware"]
    assert guard.release() == [] and not guard.is_echo()


def test_the_question_said_back_is_an_echo_and_nothing_is_shown() -> None:
    guard = EchoGuard(ERROR, f"Question: {ERROR}", CITE_INSTRUCTION)
    # the marker arrives in pieces, as tokens do: "[", "1", "]"
    assert feed_all(guard, ["Type", "Error: can't", " compare offset-naive and", " offset-aware datetimes",
                            " [", "1", "]"]) == []
    assert guard.is_echo()
    guard = EchoGuard(ERROR, CITE_INSTRUCTION)
    assert feed_all(guard, ["Start your answer with", ' "According to [n]," where n']) == []
    assert guard.is_echo()  # the instruction, said back


def test_quoting_the_error_then_explaining_is_shown_whole_and_in_order() -> None:
    guard = EchoGuard(ERROR, CITE_INSTRUCTION)
    pieces = ["TypeError: can't compare", " offset-naive and offset-aware datetimes", " means one of them has no tzinfo"]
    shown = feed_all(guard, pieces)
    assert "".join(shown) == "".join(pieces) and guard.open and not guard.is_echo()


def test_a_short_answer_that_happens_to_start_the_question_is_not_an_echo() -> None:
    guard = EchoGuard("no module named 'requests' when I run my script")
    assert feed_all(guard, ["No", "."]) == []  # held: it could still be the question
    assert not guard.is_echo()
    assert guard.release() == ["No", "."]
    assert normalize("[1] No, it's `None`.") == "no it s none"


def test_ask_asks_again_after_an_echo_and_shows_only_the_real_answer(env, ollama, web, site) -> None:
    bodies: list[dict] = []

    def reply(body: dict) -> str:
        bodies.append(body)
        if len(bodies) == 1:
            return f"{QUESTION} [1]"
        return "Inside Jupyter, await the coroutine directly: `result = await main()` [1]."

    ollama.reply_with(reply)
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"].startswith("Inside Jupyter") and QUESTION not in out["answer"]
    assert any("repeated the question back" in w for w in out["warnings"])
    assert len(bodies) == 2
    second = bodies[1]["messages"][-1]["content"]
    assert ECHO_NUDGE in second and second.rstrip().endswith(QUESTION)  # the question stays last
    plain = run_cli("ask", QUESTION)
    assert plain.returncode == 0 and plain.stdout.count(QUESTION) == 0


def test_an_echo_twice_is_shown_rather_than_nothing(env, ollama, web, site) -> None:
    ollama.reply_with(f"{QUESTION} [1]")
    proc = run_cli("ask", "--json", QUESTION)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"].startswith(QUESTION)  # the second try is not held back
    assert len([r for r in ollama.requests if r["path"] == "/api/chat"]) == 2  # asked again once, not more


def test_an_instruction_said_back_whole_before_the_answer_is_dropped() -> None:
    """The model opened an answer without sources with the whole instruction, then answered."""
    from copilot.prompting import NO_SOURCES_INSTRUCTION

    answer = "As far as I know, `asyncio.run()` starts a new event loop."
    text = f"{NO_SOURCES_INSTRUCTION} [1]\n\n{answer}"
    guard = EchoGuard(ERROR, f"Question: {ERROR}", instructions=(NO_SOURCES_INSTRUCTION,))
    shown = feed_all(guard, [text[i:i + 3] for i in range(0, len(text), 3)]) + guard.release()
    assert "".join(shown) == answer and not guard.is_echo()
    # the question quoted whole is not dropped (an error, then what it means)
    guard = EchoGuard(ERROR, instructions=(CITE_INSTRUCTION,))
    assert "".join(feed_all(guard, [ERROR, " means one has no tzinfo"])) == f"{ERROR} means one has no tzinfo"
    # the instruction and nothing else is an echo
    guard = EchoGuard(ERROR, instructions=(CITE_INSTRUCTION,))
    assert feed_all(guard, [CITE_INSTRUCTION]) == [] and guard.is_echo()


def test_ask_without_sources_drops_the_instruction_said_back(env, ollama) -> None:
    from copilot.prompting import NO_SOURCES_INSTRUCTION

    ollama.reply_with(f"{NO_SOURCES_INSTRUCTION}\n\nUse a new event loop.")
    out = run_cli("ask", "--no-web", "--json", QUESTION)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answer"] == "Use a new event loop."
