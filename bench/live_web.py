"""A stand-in web for manual runs on a machine with no internet.

Serves the saved Stack Overflow pages in ../shared/data and the HTML tree of Debian's python3-doc
on 127.0.0.1, with a SearXNG-protocol search that ranks them by keyword overlap with the query.
Point copilot at it and ask real questions of a real model:

    .venv/bin/python bench/live_web.py &          # prints the env to export
    COPILOT_SEARCH_ENGINE=searxng COPILOT_SEARXNG_URL=http://127.0.0.1:8765 \
      COPILOT_FETCH_ALLOW=127.0.0.1 copilot ask "..."
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.web import LoopbackWeb  # noqa: E402

SO_DIR = ROOT.parent / "shared" / "data" / "stackoverflow-pages"
DOCS_DIR = Path("/usr/share/doc/python3.11-doc/html")
_TAG = re.compile(r"<script.*?</script>|<style.*?</style>|<[^>]+>", re.S | re.I)
_WORD = re.compile(r"[a-z_][a-z0-9_]+")
_TITLE = re.compile(r"<title>(.*?)</title>", re.S | re.I)


class KeywordWeb(LoopbackWeb):
    def __init__(self) -> None:
        super().__init__()
        self.docs: list[tuple[str, str, Counter, str]] = []  # url, title, term counts, snippet

    def add_file(self, path: Path, route: str) -> None:
        raw = path.read_bytes()
        url = self.add_page(route, raw)
        text = raw.decode("utf-8", "replace")
        m = _TITLE.search(text)
        title = html.unescape(re.sub(r"\s+", " ", m.group(1)).strip()) if m else path.name
        body = re.sub(r"\s+", " ", _TAG.sub(" ", text))
        terms = Counter(_WORD.findall((title + " ") * 5 + body.lower()))
        self.docs.append((url, title, terms, body[:300]))

    def results_for(self, query: str) -> list[dict]:
        q = set(_WORD.findall(query.lower()))
        n = len(self.docs)
        df = Counter(t for _, _, terms, _ in self.docs for t in q if t in terms)
        scored = []
        for url, title, terms, snippet in self.docs:
            length = sum(terms.values()) or 1
            s = sum(math.log(1 + n / df[t]) * terms[t] / (terms[t] + 1.2 * (0.25 + 0.75 * length / 3000))
                    for t in q if terms.get(t))
            if s > 0:
                scored.append((s, url, title, snippet))
        scored.sort(reverse=True)
        return [{"title": t, "url": u, "content": sn} for _, u, t, sn in scored[:8]]


def fill(web: KeywordWeb) -> None:
    for p in sorted(SO_DIR.glob("*.html")):
        web.add_file(p, f"/so/{p.name}")
    for p in sorted(DOCS_DIR.rglob("*.html")):
        web.add_file(p, f"/docs/{p.relative_to(DOCS_DIR)}")


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    with KeywordWeb() as web:
        fill(web)
        print(f"COPILOT_SEARCH_ENGINE=searxng COPILOT_SEARXNG_URL={web.base_url} "
              f"COPILOT_FETCH_ALLOW=127.0.0.1  # {len(web.docs)} pages", flush=True)
        try:
            import time

            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
