"""Extraction fidelity benchmark: do code blocks and answers survive extraction?

1. Python docs (Debian's python3-doc HTML tree): share of multi-line <pre> blocks whose non-empty
   lines all appear, whitespace-normalised and consecutive, as lines of the extracted Markdown.
   Ours (copilot.web.extract) against trafilatura alone (its own Markdown output).
2. Saved Stack Overflow / Stack Exchange pages: answers found against the answers in the page
   (count of answer elements) and the manifest.
3. Time per page (mean, p95) for each extractor.

Usage:
    PYTHONPATH=. .venv/bin/python bench/extraction.py [--docs DIR] [--so DIR] [--limit N]
        [--trafilatura markdown,txt|none] [--write bench/results/extraction.md]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import lxml.html

from copilot.web.extract import decode_body, extract_html

DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
DEFAULT_SO = Path("/work/shared/data/stackoverflow-pages")
_WS = re.compile(r"\s+")
_QUOTE = re.compile(r"^(?:> )+")
_POST_BODIES = ("//*[contains(concat(' ', normalize-space(@class), ' '), ' js-post-body ')"
                " or contains(concat(' ', normalize-space(@class), ' '), ' post-text ')]")


def _norm_line(line: str) -> str:
    return _WS.sub(" ", _QUOTE.sub("", line.strip())).strip()


def _norm_lines(text: str) -> list[str]:
    return [n for n in (_norm_line(x) for x in text.split("\n")) if n]


def pre_blocks(html: str) -> list[tuple[list[str], bool]]:
    """Every <pre> of the page with at least two non-empty lines, as normalised lines, and
    whether it sits inside a <dd> (an API entry, where trafilatura loses line breaks)."""
    root = lxml.html.document_fromstring(html)
    blocks = []
    for pre in root.iter("pre"):
        for br in pre.iter("br"):
            br.tail = "\n" + (br.tail or "")
        lines = _norm_lines(pre.text_content())
        if len(lines) >= 2:
            blocks.append((lines, any(a.tag == "dd" for a in pre.iterancestors())))
    return blocks


def block_survives(block: list[str], out_lines: list[str], index: dict[str, list[int]]) -> bool:
    size = len(block)
    return any(out_lines[start:start + size] == block for start in index.get(block[0], ()))


def _line_index(lines: list[str]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        index.setdefault(line, []).append(i)
    return index


def _ours_markdown(html: str) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    doc = extract_html(html)
    elapsed = time.perf_counter() - t0
    return doc.markdown, doc.kind, elapsed


# trafilatura alone, as a caller would use it; no url= (it resolves relative links wrongly).
TRAFILATURA_VARIANTS = {
    "markdown": {"output_format": "markdown"},
    "markdown+formatting": {"output_format": "markdown", "include_formatting": True,
                            "include_tables": True},
    "txt": {"output_format": "txt"},
}
OURS_GENERIC = "ours-generic"


def _ours_generic_markdown(html: str) -> tuple[str, float]:
    """Our generic path (trafilatura + code restored from the DOM) forced on a docs page, to
    see what it keeps when docs detection misses. Uses private helpers on purpose."""
    from lxml import etree

    from copilot.web import extract as x

    t0 = time.perf_counter()
    root = x._parse(html)
    meta = x._read_meta(root, None)
    etree.strip_elements(root, "script", "style", "noscript", "template", with_tail=False)
    x._strip_noise(root.find("body"))
    doc = x._sanitize(x._extract_generic(root, None, meta))
    return doc.markdown, time.perf_counter() - t0


def _trafilatura_text(html: str, options: dict) -> tuple[str, float]:
    import trafilatura

    t0 = time.perf_counter()
    out = trafilatura.extract(html, **options) or ""
    return out, time.perf_counter() - t0


def _p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bench_docs(docs_dir: Path, limit: int | None, variants: list[str]) -> dict:
    pages = sorted(docs_dir.rglob("*.html"))[:limit] if limit else sorted(docs_dir.rglob("*.html"))
    result = {"pages": len(pages), "blocks": 0, "in_dd": 0, "ours_ok": 0, "ours_dd_ok": 0,
              "ours_ms": [], "kinds": {}, "worst": [],
              "traf": {v: {"ok": 0, "dd_ok": 0, "ms": []} for v in variants}}
    for page in pages:
        html = page.read_text(encoding="utf-8", errors="replace")
        blocks = pre_blocks(html)
        md, kind, elapsed = _ours_markdown(html)
        result["ours_ms"].append(elapsed * 1000)
        result["kinds"][kind] = result["kinds"].get(kind, 0) + 1
        lines = _norm_lines(md)
        index = _line_index(lines)
        kept = [block_survives(b, lines, index) for b, _ in blocks]
        ok = sum(kept)
        result["blocks"] += len(blocks)
        result["in_dd"] += sum(dd for _, dd in blocks)
        result["ours_ok"] += ok
        result["ours_dd_ok"] += sum(k for k, (_, dd) in zip(kept, blocks, strict=True) if dd)
        if ok < len(blocks):
            result["worst"].append((len(blocks) - ok, str(page.relative_to(docs_dir))))
        for variant, acc in result["traf"].items():
            if variant == OURS_GENERIC:
                tmd, telapsed = _ours_generic_markdown(html)
            else:
                tmd, telapsed = _trafilatura_text(html, TRAFILATURA_VARIANTS[variant])
            acc["ms"].append(telapsed * 1000)
            tlines = _norm_lines(tmd)
            tindex = _line_index(tlines)
            tkept = [block_survives(b, tlines, tindex) for b, _ in blocks]
            acc["ok"] += sum(tkept)
            acc["dd_ok"] += sum(k for k, (_, dd) in zip(tkept, blocks, strict=True) if dd)
    result["worst"].sort(reverse=True)
    return result


def bench_so(so_dir: Path) -> dict:
    manifest_path = so_dir / "manifest.json"
    manifest = {}
    if manifest_path.exists():
        manifest = {e["file"]: e for e in json.loads(manifest_path.read_text())}
    rows = []
    for page in sorted(so_dir.glob("*.html")):
        raw = page.read_bytes()
        root = lxml.html.document_fromstring(decode_body(raw, None))
        in_page = len(root.xpath(
            "//*[@data-answerid and contains(concat(' ', normalize-space(@class), ' '),"
            " ' answer ')]"))
        accepted_in_page = len(root.xpath(
            "//*[@data-answerid and contains(concat(' ', normalize-space(@class), ' '),"
            " ' accepted-answer ')]"))
        post_pres = []
        for body in root.xpath(_POST_BODIES):
            for pre in body.iter("pre"):
                lines = _norm_lines(pre.text_content())
                if len(lines) >= 2:
                    post_pres.append(lines)
        t0 = time.perf_counter()
        doc = extract_html(raw)
        elapsed = (time.perf_counter() - t0) * 1000
        answers = [s for s in doc.sections if s.role == "answer"]
        lines = _norm_lines(doc.markdown)
        index = _line_index(lines)
        code_ok = sum(block_survives(b, lines, index) for b in post_pres)
        rows.append({
            "file": page.name, "kind": doc.kind, "found": len(answers), "in_page": in_page,
            "manifest": manifest.get(page.name, {}).get("answers"),
            "accepted_found": sum(1 for s in answers if s.accepted),
            "accepted_in_page": accepted_in_page,
            "scores": sum(1 for s in answers if s.score is not None), "ms": elapsed,
            "code": len(post_pres), "code_ok": code_ok,
        })
    return {"rows": rows}


def _fmt_pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def report(docs: dict | None, so: dict | None, command: str) -> str:
    out = [
        "# Extraction fidelity benchmark", "",
        f"Command: `{command}`", "",
        "A `<pre>` block counts as kept when every non-empty line of it (whitespace collapsed)",
        "appears as a line of the extracted Markdown, in order and consecutive. Blocks with fewer",
        "than two non-empty lines are not counted. Times are wall-clock per page in one process",
        "(2 cores), extraction only (no file reading).", "",
    ]
    if docs:
        n = docs["blocks"]
        out += [
            f"## Python docs: multi-line `<pre>` blocks kept ({docs['pages']} pages, {n} blocks)",
            "",
            f"| extractor | blocks kept | share | inside `<dd>` ({docs['in_dd']}) "
            f"| elsewhere ({n - docs['in_dd']}) | mean ms/page | p95 ms/page |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| copilot.web.extract | {docs['ours_ok']} | {_fmt_pct(docs['ours_ok'], n)} "
            f"| {_fmt_pct(docs['ours_dd_ok'], docs['in_dd'])} "
            f"| {_fmt_pct(docs['ours_ok'] - docs['ours_dd_ok'], n - docs['in_dd'])} "
            f"| {statistics.fmean(docs['ours_ms']):.1f} | {_p95(docs['ours_ms']):.1f} |",
        ]
        for variant, acc in docs["traf"].items():
            if variant == OURS_GENERIC:
                label = "copilot generic path forced (trafilatura + code restored from DOM)"
            else:
                options = ", ".join(f"{k}={v!r}" for k, v in TRAFILATURA_VARIANTS[variant].items())
                label = f"trafilatura.extract({options})"
            out.append(
                f"| {label} | {acc['ok']} | {_fmt_pct(acc['ok'], n)} "
                f"| {_fmt_pct(acc['dd_ok'], docs['in_dd'])} "
                f"| {_fmt_pct(acc['ok'] - acc['dd_ok'], n - docs['in_dd'])} "
                f"| {statistics.fmean(acc['ms']):.1f} | {_p95(acc['ms']):.1f} |")
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(docs["kinds"].items()))
        out += ["", f"Page kinds detected: {kinds}."]
        if docs["worst"]:
            worst = ", ".join(f"{name} ({missed})" for missed, name in docs["worst"][:8])
            out += [f"Pages with lost blocks (blocks lost): {worst}."]
        out.append("")
    if so:
        rows = so["rows"]
        found = sum(r["found"] for r in rows)
        in_page = sum(r["in_page"] for r in rows)
        complete = sum(1 for r in rows if r["found"] == r["in_page"]
                       and r["manifest"] in (None, r["found"]))
        ms = [r["ms"] for r in rows]
        code = sum(r["code"] for r in rows)
        code_ok = sum(r["code_ok"] for r in rows)
        out += [
            f"## Stack Overflow / Stack Exchange pages ({len(rows)} pages)",
            "",
            f"Answers found: {found} of {in_page} in the pages; pages complete: {complete} of "
            f"{len(rows)}; multi-line code blocks in posts kept: {code_ok} of {code} "
            f"({_fmt_pct(code_ok, code)}); time mean {statistics.fmean(ms):.1f} ms, "
            f"p95 {_p95(ms):.1f} ms.",
            "",
            "| page | kind | answers found | in page | manifest | accepted found/in page "
            "| with score | ms |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            out.append(
                f"| {r['file']} | {r['kind']} | {r['found']} | {r['in_page']} "
                f"| {r['manifest'] if r['manifest'] is not None else '-'} "
                f"| {r['accepted_found']}/{r['accepted_in_page']} | {r['scores']} "
                f"| {r['ms']:.1f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--so", type=Path, default=DEFAULT_SO)
    parser.add_argument("--limit", type=int, default=None, help="first N docs pages only")
    known = [*TRAFILATURA_VARIANTS, OURS_GENERIC]
    parser.add_argument("--trafilatura", default=",".join(known),
                        help=f"comma-separated variants to compare, or 'none' (known: "
                             f"{', '.join(known)})")
    parser.add_argument("--write", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)

    variants = [v for v in args.trafilatura.split(",") if v in known]
    docs = bench_docs(args.docs, args.limit, variants) if args.docs.is_dir() else None
    so = bench_so(args.so) if args.so.is_dir() else None
    command = "PYTHONPATH=. .venv/bin/python bench/extraction.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    text = report(docs, so, command.strip())
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
