"""Check the Python-docs question sets in this folder against the docs tree they are about.

    .venv/bin/python bench/data/check_questions.py [--root /usr/share/doc/python3.11-doc/html] [--candidates]

For every line of python-docs-dev.jsonl, python-docs-dev2.jsonl and python-docs-heldout.jsonl:
valid JSON with `id`, `question`, `answer_pages` (1-5 paths relative to the root, each an existing
file) and `must_contain` (1-3 lowercase phrases, each found in the text of at least one answer
page: the page's main content through lxml `text_content()`, lowercased, whitespace collapsed);
ids unique over all sets; no question repeated between the sets; the held-out set has exactly 50
questions, the development set at least 35 and the second development set at least 40. Prints
the counts per `kind`, per answer page and the questions that share a word with their page's title.

--candidates also lists, per question, other pages whose text holds all its must_contain phrases
(a prompt to look whether they answer the question too; most only mention the words).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import lxml.html

HERE = Path(__file__).resolve().parent
SETS = {
    "dev": HERE / "python-docs-dev.jsonl",
    "dev2": HERE / "python-docs-dev2.jsonl",
    "heldout": HERE / "python-docs-heldout.jsonl",
}
MIN_QUESTIONS = {"dev": 35, "dev2": 40}
KINDS = ("error", "vague", "compare", "howto", "api")
DEFAULT_ROOT = Path("/usr/share/doc/python3.11-doc/html")


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def page_text(path: Path) -> tuple[str, str]:
    """(title, main text) of a Sphinx page, both normalised."""
    doc = lxml.html.fromstring(path.read_bytes())
    for node in doc.xpath("//script|//style"):
        node.drop_tree()
    main = doc.xpath("//div[@role='main']") or doc.xpath("//div[contains(@class, 'body')]") or [doc]
    h1 = main[0].xpath(".//h1")
    return normalise(h1[0].text_content() if h1 else ""), normalise(main[0].text_content())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--candidates", action="store_true")
    args = ap.parse_args()
    root = args.root.resolve()
    if not root.is_dir():
        print(f"{args.root} missing: apt-get install python3-doc", file=sys.stderr)
        return 2

    cache: dict[str, tuple[str, str]] = {}

    def text(rel: str) -> tuple[str, str]:
        if rel not in cache:
            cache[rel] = page_text(root / rel)
        return cache[rel]

    errors: list[str] = []
    ids: set[str] = set()
    questions: dict[str, str] = {}
    everything: dict[str, tuple[str, str]] | None = None
    for name, path in SETS.items():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kinds: Counter[str] = Counter()
        pages: Counter[str] = Counter()
        overlap = []
        for n, line in enumerate(rows, 1):
            where = f"{path.name}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: not JSON ({exc})")
                continue
            qid, question = row.get("id"), row.get("question")
            answer_pages, must = row.get("answer_pages"), row.get("must_contain")
            if not isinstance(qid, str) or qid in ids:
                errors.append(f"{where}: missing or repeated id {qid!r}")
            ids.add(str(qid))
            if not isinstance(question, str) or len(question) < 10:
                errors.append(f"{where}: question missing or too short")
                continue
            key = normalise(question)
            if key in questions:
                errors.append(f"{where}: same question as {questions[key]}")
            questions[key] = f"{name}/{qid}"
            kinds[row.get("kind", "-")] += 1
            if row.get("kind") not in KINDS:
                errors.append(f"{where}: kind {row.get('kind')!r} not one of {', '.join(KINDS)}")
            if not isinstance(answer_pages, list) or not 1 <= len(answer_pages) <= 5:
                errors.append(f"{where}: answer_pages must be a list of 1-5 paths")
                continue
            if not isinstance(must, list) or not 1 <= len(must) <= 3:
                errors.append(f"{where}: must_contain must be a list of 1-3 phrases")
                continue
            missing = [p for p in answer_pages if not (root / p).is_file()]
            if missing:
                errors.append(f"{where}: no such page {', '.join(missing)}")
                continue
            pages.update(answer_pages)
            texts = [text(p)[1] for p in answer_pages]
            for phrase in must:
                if phrase != phrase.lower() or phrase != normalise(phrase):
                    errors.append(f"{where}: must_contain {phrase!r} is not lowercase and normalised")
                elif not any(phrase in t for t in texts):
                    errors.append(f"{where}: {phrase!r} is in none of {', '.join(answer_pages)}")
            qwords = set(re.findall(r"[a-z_][a-z0-9_.]+", key))
            for p in answer_pages:
                title = text(p)[0].split("—")[0].strip(" ¶")
                if title and title in qwords:
                    overlap.append(f"{qid} ({title})")
            if args.candidates:
                if everything is None:
                    everything = {p.relative_to(root).as_posix(): page_text(p) for p in sorted(root.rglob("*.html"))}
                others = [p for p, (_, t) in everything.items()
                          if p not in answer_pages and all(ph in t for ph in must)]
                print(f"  {qid}: {len(others)} other pages hold {must}: {' '.join(others[:8])}")
        print(f"{name}: {len(rows)} questions; kinds: "
              + ", ".join(f"{k} {kinds[k]}" for k in (*KINDS, "-") if kinds[k]))
        print(f"  {len(pages)} distinct answer pages; most used: "
              + ", ".join(f"{p} {c}" for p, c in pages.most_common(6)))
        print(f"  {len(overlap)} questions name an answer page's module: {', '.join(overlap)}")
        if name == "heldout" and len(rows) != 50:
            errors.append(f"{path.name}: {len(rows)} questions, expected exactly 50")
        elif name != "heldout" and len(rows) < MIN_QUESTIONS[name]:
            errors.append(f"{path.name}: {len(rows)} questions, expected at least {MIN_QUESTIONS[name]}")
    for e in errors:
        print("ERROR", e)
    print("ok" if not errors else f"{len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
