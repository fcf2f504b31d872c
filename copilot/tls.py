"""One TLS context for the whole process.

Building one loads the CA bundle (~35 ms here); httpx builds a new one for every client and
transport unless it is handed one. Every client we make takes this one instead.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def ssl_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context(trust_env=False)
