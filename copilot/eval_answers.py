"""`copilot eval answers QA.jsonl`: are the answers better than the plain search beside them?

Each question of a QA.jsonl file (the format of `copilot eval retrieval`, read by
`evaluation.load_questions`) goes through the real pipeline, `engine.ask`, local index only unless
`use_web`. The result:

- `must_contain_rate`: share of answers holding every `must_contain` phrase (lowercased,
  whitespace collapsed). Questions without `must_contain` are left out of this rate and of
  `plain_top3_rate` (their row says None); the rate is None when no question has phrases.
- `plain_top3_rate`: the same test on the text of the top 3 plain results a user sees beside the
  answer. Local-only: the text of the top 3 local hits (`engine.local_hits(question, settings, 3)`).
  With the web: the snippets of the top 3 plain web results plus the passages the model was given
  from those same URLs (the fetched page itself is not kept, so the passage stands for what a
  click shows; a result whose page could not be read counts by its snippet alone).
- `cited_answer_rate`: share of answers with at least one valid citation (`Answer.citations`
  are parsed outside code blocks). A row's `matched` lists the sentences copilot matched to a
  source when the answer cites nothing (`Answer.matched`); they never count as citations here,
  and the text report shows how many uncited answers got a match.
- `valid_citation_rate`: valid / all citations; `supported_citation_rate`: supported / valid
  (None when there is nothing to divide).
- `prompt_tokens_mean`: the mean of the prompt tokens the model reported (`prompt_eval_count`,
  carried as `Answer.prompt_tokens`); None when it reported none.
- `first_token_p50_s`, `total_p50_s`: medians of the answers' timings.

Each row also keeps the answer's sources (number, title, where, passage) and, per citation, the
claim it was judged on, so anyone can check a support mark against its passage.

A question whose ask raises a CopilotError keeps its row with `error` set and counts as a failure
in every rate (its plain results are still judged: they do not depend on the model).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from copilot.errors import CopilotError
from copilot.evaluation import Question, percentile

if TYPE_CHECKING:
    from copilot.config import Settings

PLAIN_TOP = 3
RESULT_KEYS = ("n", "model", "must_contain_rate", "plain_top3_rate", "cited_answer_rate", "valid_citation_rate",
               "supported_citation_rate", "prompt_tokens_mean", "first_token_p50_s", "total_p50_s", "rows")
ROW_KEYS = ("id", "question", "answer", "must_contain_ok", "plain_top3_ok", "cited", "citations", "matched",
            "prompt_tokens", "first_token_s", "total_s", "error")


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def contains_all(text: str, phrases: Sequence[str]) -> bool | None:
    """Every phrase in text (lowercased, whitespace collapsed); None when there are no phrases."""
    if not phrases:
        return None
    t = normalize(text)
    return all(normalize(p) in t for p in phrases)


def _local_plain_text(question: str, settings: Settings) -> str:
    from copilot.engine import local_hits

    try:
        hits = local_hits(question, settings, PLAIN_TOP)
    except CopilotError:
        return ""
    return "\n".join(h.text for h in hits[:PLAIN_TOP])


def _web_plain_text(results, sources) -> str:
    top = results[:PLAIN_TOP]
    urls = {r.url for r in top}
    parts = [f"{r.title}\n{r.snippet}" for r in top]
    parts += [s.text for s in sources if s.url in urls and s.kind.startswith("web")]
    return "\n".join(parts)


async def _ask_one(question: str, settings: Settings, use_web: bool
                   ) -> tuple[object, list, list, CopilotError | None]:
    """(answer or None, plain web results, sources, the error that stopped it or None)."""
    from copilot import events as ev
    from copilot.engine import AskOptions, ask

    results: list = []
    sources: list = []
    try:
        async for event in ask(question, settings, AskOptions(use_web=use_web, use_local=True)):
            if isinstance(event, ev.PlainResults):
                results = event.results
            elif isinstance(event, ev.SourcesReady):
                sources = event.sources
            elif isinstance(event, ev.Done):
                return event.answer, event.answer.plain_results, event.answer.sources, None
    except CopilotError as e:
        return None, results, sources, e
    return None, results, sources, CopilotError("the answer never finished")


def _citations_json(text: str, cites: Sequence) -> list[dict]:
    """Each citation with the claim it was judged on, so a reader can check the support marks."""
    from copilot.support import claims_for

    return [{**c.to_json(), "claim": claim} for c, claim in zip(cites, claims_for(text, cites), strict=True)]


def _rate(flags: Sequence[bool | None]) -> float | None:
    judged = [f for f in flags if f is not None]
    return round(sum(judged) / len(judged), 4) if judged else None


def run_answers_eval(questions: Sequence[Question], settings: Settings, *, use_web: bool = False,
                     on_progress: Callable[[int, int, dict], None] | None = None,
                     errors: list[CopilotError] | None = None) -> dict:
    """Ask every question; returns the metrics and one row per question (see the module doc).
    `errors` collects the CopilotErrors raised, for the caller to decide the exit status."""
    rows: list[dict] = []
    model = ""
    n_cites = n_valid = n_supported = 0
    prompt_tokens: list[int] = []
    first_tokens: list[float] = []
    totals: list[float] = []
    for i, q in enumerate(questions, start=1):
        try:
            answer, results, sources, error = asyncio.run(_ask_one(q.question, settings, use_web))
        except CopilotError as e:  # raised outside the event loop's iteration (should not happen)
            answer, results, sources, error = None, [], [], e
        if error is not None and errors is not None:
            errors.append(error)
        plain = _web_plain_text(results, sources) if use_web else _local_plain_text(q.question, settings)
        text = answer.text if answer is not None else ""
        must_ok = contains_all(text, q.must_contain)
        if must_ok is not None and answer is None:
            must_ok = False
        cites = answer.citations if answer is not None else []
        valid = [c for c in cites if c.valid]
        n_cites += len(cites)
        n_valid += len(valid)
        n_supported += sum(1 for c in valid if c.supported)
        row = {
            "id": q.id, "question": q.question, "answer": text,
            "must_contain_ok": must_ok, "plain_top3_ok": contains_all(plain, q.must_contain),
            "cited": bool(valid), "citations": _citations_json(text, cites),
            "matched": [m.to_json() for m in answer.matched] if answer is not None else [],
            "sources": [{"n": s.n, "title": s.title, "where": s.where, "text": s.text} for s in sources],
            "prompt_tokens": None, "first_token_s": None, "total_s": None,
            "error": error.one_line() if error else None,
        }
        if answer is not None:
            model = model or answer.model
            row["prompt_tokens"] = answer.prompt_tokens
            if answer.prompt_tokens is not None:
                prompt_tokens.append(answer.prompt_tokens)
            if answer.timings.first_token is not None:
                row["first_token_s"] = round(answer.timings.first_token, 3)
                first_tokens.append(answer.timings.first_token)
            row["total_s"] = round(answer.timings.total, 3)
            totals.append(answer.timings.total)
        rows.append(row)
        if on_progress:
            on_progress(i, len(questions), row)
    n = len(rows)
    return {
        "n": n,
        "model": model or settings.model,
        "must_contain_rate": _rate([r["must_contain_ok"] for r in rows]),
        "plain_top3_rate": _rate([r["plain_top3_ok"] for r in rows]),
        "cited_answer_rate": round(sum(r["cited"] for r in rows) / n, 4) if n else None,
        "valid_citation_rate": round(n_valid / n_cites, 4) if n_cites else None,
        "supported_citation_rate": round(n_supported / n_valid, 4) if n_valid else None,
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else None,
        "first_token_p50_s": round(percentile(first_tokens, 50), 3) if first_tokens else None,
        "total_p50_s": round(percentile(totals, 50), 3) if totals else None,
        "rows": rows,
    }


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def format_answers(result: dict) -> str:
    lines = [f"{result['n']} questions, model {result['model'] or '?'}"]
    for key in ("must_contain_rate", "plain_top3_rate", "cited_answer_rate", "valid_citation_rate",
                "supported_citation_rate"):
        lines.append(f"  {key:<26}{_fmt(result[key]):>9}")
    uncited = [r for r in result["rows"] if not r["cited"] and not r["error"]]
    if uncited:
        lines.append(f"  uncited answers matched to a source by copilot: {sum(bool(r['matched']) for r in uncited)} "
                     f"of {len(uncited)}")
    lines.append(f"  {'prompt_tokens_mean':<26}{_fmt(result['prompt_tokens_mean'], '.1f'):>9}")
    lines.append(f"  {'first_token_p50_s':<26}{_fmt(result['first_token_p50_s'], '.2f'):>9}")
    lines.append(f"  {'total_p50_s':<26}{_fmt(result['total_p50_s'], '.2f'):>9}")
    failed = [r for r in result["rows"] if r["error"]]
    if failed:
        lines.append(f"{len(failed)} of {result['n']} questions failed; first: {failed[0]['error']}")
    return "\n".join(lines)


def progress_line(i: int, n: int, row: dict) -> str:
    if row["error"]:
        state = f"error: {row['error']}"
    else:
        marks = {True: "yes", False: "no", None: "—"}
        state = (f"facts {marks[row['must_contain_ok']]}, plain {marks[row['plain_top3_ok']]}, "
                 f"cited {marks[row['cited']]}, {_fmt(row['total_s'], '.1f')} s")
    return f"[{i}/{n}] {row['id']}: {state}"
