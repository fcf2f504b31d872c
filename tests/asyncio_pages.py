"""Three pages about asyncio.run() in a running event loop (a Stack Overflow thread, the Python
docs, a blog post) and the search that finds them: the `site` fixture (tests/conftest.py) serves
them on the loopback web server for the CLI and TUI tests."""

from __future__ import annotations

SO_PAGE = """<!DOCTYPE html><html><head><title>asyncio.run() cannot be called from a running event loop - Stack Overflow</title>
<link rel="canonical" href="https://stackoverflow.com/questions/55409641/asyncio-run-cannot-be-called-from-a-running-event-loop">
</head><body>
<div id="question-header"><h1 itemprop="name"><a class="question-hyperlink">asyncio.run() cannot be called from a running event loop</a></h1></div>
<div id="question" class="question" data-questionid="55409641">
 <div class="js-vote-count" data-value="120">120</div>
 <div class="s-prose js-post-body" itemprop="text"><p>In Jupyter, calling <code>asyncio.run(main())</code> raises
 <code>RuntimeError: asyncio.run() cannot be called from a running event loop</code>. Why?</p></div>
</div>
<div id="answers">
 <div id="answer-1" class="answer js-answer accepted-answer" data-answerid="1" data-score="150" itemprop="acceptedAnswer">
  <div class="js-vote-count" data-value="150">150</div>
  <div class="s-prose js-post-body" itemprop="text"><p>Jupyter already runs an event loop, and asyncio.run() refuses to
  start a second loop in the same thread. Inside a running loop, await the coroutine directly:</p>
  <pre><code>result = await main()
print(result)
</code></pre></div>
 </div>
 <div id="answer-2" class="answer js-answer" data-answerid="2" data-score="12">
  <div class="js-vote-count" data-value="12">12</div>
  <div class="s-prose js-post-body" itemprop="text"><p>Alternatively apply nest_asyncio, but that patches the loop globally.</p></div>
 </div>
</div></body></html>"""

DOCS_PAGE = """<!DOCTYPE html><html><head><title>Runners — Python 3.11 documentation</title></head><body>
<div class="sphinxsidebar">Navigation junk</div>
<div class="body" role="main"><section id="runners"><h1>Runners<a class="headerlink" href="#runners">¶</a></h1>
<dl class="py function"><dt class="sig sig-object py" id="asyncio.run"><span class="sig-name descname">asyncio.run</span>(<em>coro</em>, <em>*</em>, <em>debug=None</em>)</dt>
<dd><p>Execute the coroutine <em>coro</em> and return the result. This function cannot be called when
another asyncio event loop is running in the same thread.</p>
<div class="highlight-python3"><div class="highlight"><pre>async def main():
    await asyncio.sleep(1)
    print('hello')

asyncio.run(main())
</pre></div></div></dd></dl></section></div></body></html>"""

BLOG_PAGE = """<!DOCTYPE html><html><head><title>Understanding event loops</title></head><body>
<nav>Home | About</nav><article><h1>Understanding event loops</h1>
<p>An event loop runs tasks one at a time and switches between them when they wait for I/O.
Each thread can run at most one event loop at any moment, which is why nested loops fail.</p>
<p>Libraries that need a loop should accept one rather than start their own.</p></article>
<footer>Copyright</footer></body></html>"""


def add_asyncio_site(web) -> dict[str, str]:
    """Serve the three pages and a search that returns them (SO thread, docs, blog, in that order);
    their URLs by name."""
    so = web.add_page("/q/55409641", SO_PAGE)
    docs = web.add_page("/3/library/asyncio-runner.html", DOCS_PAGE)
    blog = web.add_page("/blog/event-loops", BLOG_PAGE)
    web.set_search([
        {"title": "asyncio.run() cannot be called from a running event loop", "url": so,
         "content": "In Jupyter, calling asyncio.run(main()) raises RuntimeError"},
        {"title": "Runners — Python documentation", "url": docs,
         "content": "Execute the coroutine coro and return the result."},
        {"title": "Understanding event loops", "url": blog, "content": "An event loop runs tasks"},
    ])
    return {"so": so, "docs": docs, "blog": blog}
