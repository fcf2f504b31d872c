"""Which addresses the page fetcher may connect to.

Web pages (and the redirects they send) are untrusted input: a search result or a redirect could
point at `http://127.0.0.1:11434/api/...`, a router on `192.168.1.1`, or the cloud metadata
service on `169.254.169.254`. `AddressPolicy` refuses every URL whose scheme is not http(s) or
whose host is not public, unless the user allowed that host or range in `fetch_allow`
(COPILOT_FETCH_ALLOW, e.g. `127.0.0.1,docs.internal,10.1.0.0/16`).

DNS rebinding: checking a name and then letting the HTTP client resolve it again leaves a window
in which the name can change to a private address. We close it by *pinning*: `guarded_transport`
gives httpx a network backend whose `connect_tcp` asks the policy for the host's checked
addresses and connects to those IP addresses only (TLS still verifies the certificate against the
host name, which httpcore takes from the URL, not from the socket). The policy keeps each checked
answer for a short time, so the pre-check of a URL and the connection share one DNS answer.
Every redirect hop is checked again before the request is sent. Environment proxies are not used
(`trust_env=False`): a proxy would resolve names itself, out of our sight.

Residual risk: a caller that passes its own `httpx.AsyncClient` to the fetcher gets the per-hop
check but no pinning; build clients with `copilot.web.fetch.make_client` to keep it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from copilot.errors import ConfigError, FetchBlocked
from copilot.tls import ssl_context

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]

ALLOWED_SCHEMES = ("http", "https")



def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
_CGNAT = _nets("100.64.0.0/10")
_THIS_NETWORK = _nets("0.0.0.0/8")
_NAT64 = _nets("64:ff9b::/96")
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))

# Names that point inside the machine or the cloud provider, whatever DNS says.
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".home.arpa")
_METADATA_NAMES = ("metadata", "metadata.google.internal", "instance-data",
                   "instance-data.ec2.internal")


class UnresolvedHost(FetchBlocked):
    """The host name did not resolve (or not in time), so it could not be checked."""


def _in(ip: IPAddress, networks: Iterable[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, 6to4, NAT64), if any."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if _in(ip, _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def show_address(ip: IPAddress) -> str:
    """`ip` as users write it (IPv4-mapped IPv6 in dotted form, as Python 3.13+ prints it)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("a private address"), or None when it is public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        problem = address_problem(inner)
        return f"{problem} ({inner})" if problem else None
    if ip.is_unspecified or _in(ip, _THIS_NETWORK):
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _METADATA:
        return "the cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if _in(ip, _PRIVATE):
        return "a private address"
    if _in(ip, _CGNAT):
        return "a shared (carrier-grade NAT) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "a special-purpose address"
    return None


def name_problem(host: str) -> str | None:
    """Why a host *name* is refused before any lookup ("a local name"), or None."""
    if host in _METADATA_NAMES:
        return "a cloud metadata name"
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return "a local name"
    return None


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _normalize_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


async def system_resolver(host: str) -> list[str]:
    """Addresses for `host` from the system resolver, via the running loop's getaddrinfo."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressPolicy:
    """Refuses URLs that are not http(s) or whose host is not a public address.

    `allow` holds host names (`docs.corp`, `*.corp.example`), addresses (`127.0.0.1`) and CIDR
    ranges (`10.1.0.0/16`, `fd00::/8`) that are allowed anyway. A host name on the list is
    allowed whatever it resolves to; otherwise every address it resolves to must be public or
    inside an allowed range.
    """

    def __init__(self, allow: Iterable[str] = (), *, resolve_timeout: float = 5.0,
                 resolver: Resolver | None = None, cache_ttl: float = 30.0) -> None:
        self.resolve_timeout = resolve_timeout
        self.cache_ttl = cache_ttl
        self._resolver = resolver or system_resolver
        self._networks: list[Network] = []
        self._hosts: set[str] = set()
        self._suffixes: list[str] = []
        self._cache: dict[str, tuple[float, list[str]]] = {}
        for entry in allow:
            self._add_allowed(entry)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> AddressPolicy:
        kwargs.setdefault("resolve_timeout",
                          min(settings.connect_timeout, settings.page_timeout))
        return cls(settings.fetch_allow, **kwargs)

    def _add_allowed(self, entry: str) -> None:
        entry = entry.strip().lower()
        if "://" in entry:
            try:
                entry = httpx.URL(entry).host
            except httpx.InvalidURL:
                raise ConfigError(f"fetch_allow has a bad entry {entry!r}",
                                  "use host names, addresses or CIDR ranges") from None
        if entry.startswith("[") and "]" in entry:  # [v6] or [v6]:port
            entry = entry[1:entry.index("]")]
        if not entry:
            return
        try:
            self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            return
        except ValueError:
            pass
        if entry.count(":") == 1:  # host:port - the port does not matter here
            entry = entry.split(":", 1)[0]
        if entry.startswith("*."):
            self._suffixes.append(_normalize_host(entry[1:]))
        elif entry.startswith("."):
            self._suffixes.append(_normalize_host(entry))
        else:
            self._hosts.add(_normalize_host(entry))

    # -- checks --------------------------------------------------------------------------

    def host_allowed(self, host: str) -> bool:
        host = _normalize_host(host)
        return host in self._hosts or any(host.endswith(s) for s in self._suffixes)

    def address_allowed(self, ip: IPAddress) -> bool:
        if _in(ip, self._networks):
            return True
        inner = _embedded_ipv4(ip)
        return inner is not None and _in(inner, self._networks)

    def check_address(self, ip: IPAddress, host: str | None = None) -> None:
        """Raise FetchBlocked unless `ip` is public or allowed. `host`: the name it came from."""
        if self.address_allowed(ip):
            return
        problem = address_problem(ip)
        if problem:
            shown = show_address(ip)
            if host and _parse_ip(host) is None:
                raise FetchBlocked(f"{host} resolves to {shown}, {problem}")
            raise FetchBlocked(f"{shown} is {problem}")

    async def check_url(self, url: str | httpx.URL) -> None:
        """Raise FetchBlocked (one-line reason) unless `url` may be fetched."""
        await self.addresses_for_url(url)

    async def addresses_for_url(self, url: str | httpx.URL) -> list[str]:
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchBlocked(f"not a valid URL: {str(url)[:80]}") from None
        scheme = parsed.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            shown = f"{scheme} URLs are" if scheme else "URLs without a scheme are"
            raise FetchBlocked(f"{shown} not fetched (only http and https)")
        host = parsed.raw_host.decode("ascii", "replace")
        if not host:
            raise FetchBlocked("the URL has no host")
        return await self.resolve(host)

    async def resolve(self, host: str) -> list[str]:
        """The checked addresses to connect to for `host`; FetchBlocked when it is refused.

        The answer is cached for `cache_ttl` seconds so the check and the connection use the
        same DNS answer."""
        host = _normalize_host(host)
        literal = _parse_ip(host)
        if literal is not None:
            self.check_address(literal)
            return [str(literal)]
        allowed_name = self.host_allowed(host)
        if not allowed_name:
            problem = name_problem(host)
            if problem:
                raise FetchBlocked(f"{host} is {problem}")
        cached = self._cache.get(host)
        if cached and cached[0] > time.monotonic():
            return list(cached[1])
        addresses = await self._lookup(host)
        if not allowed_name:
            for address in addresses:
                ip = _parse_ip(address)
                if ip is None:
                    raise FetchBlocked(f"{host} resolves to {address!r}, not an address")
                self.check_address(ip, host)
        if self.cache_ttl > 0:
            self._cache[host] = (time.monotonic() + self.cache_ttl, list(addresses))
        return addresses

    async def _lookup(self, host: str) -> list[str]:
        try:
            async with asyncio.timeout(self.resolve_timeout):
                addresses = await self._resolver(host)
        except TimeoutError:
            raise UnresolvedHost(
                f"DNS lookup for {host} timed out after {self.resolve_timeout:g} s") from None
        except (OSError, UnicodeError):
            raise UnresolvedHost(f"cannot resolve {host}") from None
        if not addresses:
            raise UnresolvedHost(f"cannot resolve {host}")
        return addresses


# -- pinning: connect only to checked addresses ----------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves through the policy and connects by IP."""

    def __init__(self, policy: AddressPolicy,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        addresses = await self.policy.resolve(host)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise FetchBlocked("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy, *,
                      limits: httpx.Limits | None = None) -> httpx.AsyncHTTPTransport:
    """An httpx transport that connects only to addresses `policy` checked.

    httpx 0.28 has no public way to pass a network backend, so we build the httpcore pool
    ourselves (public httpcore API) and put it where `AsyncHTTPTransport` keeps its pool.
    tests/test_netguard.py proves the pinning works, so an httpx change that breaks it shows.
    """
    limits = limits or httpx.Limits(max_connections=20, max_keepalive_connections=10)
    transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits, verify=ssl_context())
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version keeps its connection pool elsewhere; "
                           "update copilot.web.netguard.guarded_transport")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(policy),
    )
    return transport
