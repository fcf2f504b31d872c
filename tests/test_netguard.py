"""AddressPolicy: which hosts the fetcher may reach, and pinning connections to checked addresses.

No test here sends traffic anywhere but 127.0.0.1: names resolve through fake resolvers, and the
pinning tests record connection attempts instead of making them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import httpcore
import pytest

from copilot.config import Settings
from copilot.errors import ConfigError, FetchBlocked
from copilot.web.fetch import fetch_pages, make_client
from copilot.web.netguard import (
    AddressPolicy,
    GuardedBackend,
    UnresolvedHost,
    address_problem,
    name_problem,
)


def fake_resolver(table: dict[str, list[str]], calls: list[str] | None = None):
    async def resolve(host: str) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


async def no_lookup(host: str) -> list[str]:
    raise AssertionError(f"the policy should refuse {host} without a DNS lookup")


# -- address classes -------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.3.4", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "the cloud metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("100.64.0.1", "a shared (carrier-grade NAT) address"),
    ("100.100.100.200", "a shared (carrier-grade NAT) address"),  # Alibaba's metadata service
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"),
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "an unspecified address"),
    ("192.0.2.1", "a special-purpose address"),  # documentation range
    ("198.18.0.1", "a special-purpose address"),  # benchmarking range
    ("::1", "a loopback address"),
    ("::", "an unspecified address"),
    ("fe80::1", "a link-local address"),
    ("fc00::1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("fd00:ec2::254", "the cloud metadata address"),
    ("ff02::1", "a multicast address"),
    ("::ffff:127.0.0.1", "a loopback address (127.0.0.1)"),
    ("::ffff:10.0.0.1", "a private address (10.0.0.1)"),
    ("::ffff:169.254.169.254", "the cloud metadata address (169.254.169.254)"),
    ("2002:a00:1::1", "a private address (10.0.0.1)"),  # 6to4 wrapping 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "the cloud metadata address (169.254.169.254)"),  # NAT64
])
def test_non_public_addresses_are_named(address: str, problem: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", [
    "localhost", "api.localhost", "localhost.localdomain", "metadata.google.internal",
    "metadata", "db.internal", "printer.local", "nas.home.arpa",
])
def test_local_and_metadata_names_are_refused(host: str) -> None:
    assert name_problem(host) is not None


# -- check_url -------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.5/admin", "10.0.0.5 is a private address"),
    ("http://127.0.0.1:11434/api/tags", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"),
    ("http://[::1]:8080/", "::1 is a loopback address"),
    ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address (127.0.0.1)"),
    ("http://[::ffff:a00:1]/", "::ffff:10.0.0.1 is a private address (10.0.0.1)"),
    ("https://100.64.1.2/", "100.64.1.2 is a shared (carrier-grade NAT) address"),
    ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
    ("http://localhost:8000/", "localhost is a local name"),
    ("http://LOCALHOST./", "localhost is a local name"),
    ("http://metadata.google.internal/computeMetadata/v1/",
     "metadata.google.internal is a cloud metadata name"),
])
async def test_check_url_refuses_before_any_lookup(url: str, reason: str) -> None:
    policy = AddressPolicy(resolver=no_lookup)
    with pytest.raises(FetchBlocked) as info:
        await policy.check_url(url)
    assert info.value.message == reason
    assert "\n" not in info.value.message


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "javascript:alert(1)",
    "data:text/html,hi", "ws://example.com/",
])
async def test_only_http_and_https(url: str) -> None:
    policy = AddressPolicy(resolver=no_lookup)
    with pytest.raises(FetchBlocked, match="only http and https"):
        await policy.check_url(url)


async def test_names_are_checked_by_every_address_they_resolve_to() -> None:
    policy = AddressPolicy(resolver=fake_resolver({
        "docs.example": ["93.184.216.34", "2606:2800:220:1::1"],
        "evil.example": ["93.184.216.34", "10.0.0.5"],
        "mapped.example": ["::ffff:192.168.0.10"],
    }))
    await policy.check_url("https://docs.example/page")
    with pytest.raises(FetchBlocked) as info:
        await policy.check_url("https://evil.example/")
    assert info.value.message == "evil.example resolves to 10.0.0.5, a private address"
    with pytest.raises(FetchBlocked, match="mapped.example resolves to ::ffff:192.168.0.10"):
        await policy.check_url("http://mapped.example/")


async def test_numeric_host_spellings_resolve_to_loopback_and_are_refused() -> None:
    # 2130706433 and 127.1 are other spellings of 127.0.0.1; the system resolver (no DNS
    # traffic for numbers) turns them into the address we check.
    policy = AddressPolicy()
    for url in ("http://2130706433/", "http://127.1/"):
        with pytest.raises(FetchBlocked, match="resolves to 127.0.0.1, a loopback address"):
            await policy.check_url(url)


async def test_default_policy_refuses_loopback() -> None:
    policy = AddressPolicy.from_settings(Settings())
    with pytest.raises(FetchBlocked, match="127.0.0.1 is a loopback address"):
        await policy.check_url("http://127.0.0.1:8000/")


async def test_allow_by_address_and_cidr() -> None:
    policy = AddressPolicy.from_settings(Settings(fetch_allow=["127.0.0.1", "10.1.0.0/16",
                                                               "fd00:1::/32"]))
    await policy.check_url("http://127.0.0.1:8000/")
    await policy.check_url("http://[::ffff:127.0.0.1]:8000/")  # the same address, IPv6-mapped
    await policy.check_url("http://10.1.200.3/")
    await policy.check_url("http://[fd00:1::5]/")
    for url in ("http://127.0.0.2/", "http://10.2.0.1/", "http://[fd00:2::5]/"):
        with pytest.raises(FetchBlocked):
            await policy.check_url(url)


async def test_allow_by_resolved_address() -> None:
    policy = AddressPolicy(["10.1.0.0/16"], resolver=fake_resolver({
        "wiki.corp": ["10.1.2.3"], "db.corp": ["10.9.9.9"]}))
    await policy.check_url("http://wiki.corp/")
    with pytest.raises(FetchBlocked, match="db.corp resolves to 10.9.9.9"):
        await policy.check_url("http://db.corp/")


async def test_allow_by_host_name() -> None:
    policy = AddressPolicy(["intranet.corp", "*.docs.corp", "localhost:8080"],
                           resolver=fake_resolver({
                               "intranet.corp": ["10.0.0.7"],
                               "api.docs.corp": ["192.168.5.5"],
                               "other.corp": ["10.0.0.8"],
                               "localhost": ["127.0.0.1"],
                           }))
    await policy.check_url("http://intranet.corp/")
    await policy.check_url("http://INTRANET.corp./wiki")
    await policy.check_url("http://api.docs.corp/")
    await policy.check_url("http://localhost:9999/")  # allowed names ignore the port
    with pytest.raises(FetchBlocked, match="other.corp resolves to 10.0.0.8"):
        await policy.check_url("http://other.corp/")
    assert await policy.resolve("intranet.corp") == ["10.0.0.7"]


async def test_unresolvable_and_slow_names() -> None:
    async def slow(host: str) -> list[str]:
        await asyncio.sleep(10)
        return ["93.184.216.34"]

    policy = AddressPolicy(resolver=fake_resolver({}))
    with pytest.raises(UnresolvedHost, match="cannot resolve nowhere.test"):
        await policy.check_url("http://nowhere.test/")
    policy = AddressPolicy(resolver=slow, resolve_timeout=0.2)
    start = time.monotonic()
    with pytest.raises(UnresolvedHost, match="timed out after 0.2 s"):
        await policy.check_url("http://slow.test/")
    assert time.monotonic() - start < 1.0


async def test_one_lookup_serves_check_and_connection() -> None:
    calls: list[str] = []
    policy = AddressPolicy(resolver=fake_resolver({"docs.example": ["93.184.216.34"]}, calls))
    await policy.check_url("https://docs.example/a")
    assert await policy.resolve("docs.example") == ["93.184.216.34"]
    assert calls == ["docs.example"]


# -- pinning (DNS rebinding) -------------------------------------------------------------------


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records connection attempts and makes none."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None):
        self.calls.append((host, port))
        raise httpcore.ConnectError("recorded, not connected")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def rebinding_resolver(first: str, then: str):
    """Answers `first` once, then `then`: a DNS rebinding attack."""
    answers = [first]

    async def resolve(host: str) -> list[str]:
        return [answers.pop()] if answers else [then]

    return resolve


async def test_backend_connects_to_the_checked_address_not_the_name() -> None:
    inner = RecordingBackend()
    policy = AddressPolicy(resolver=fake_resolver({"docs.example": ["93.184.216.34"]}))
    backend = GuardedBackend(policy, inner)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("docs.example", 443)
    assert inner.calls == [("93.184.216.34", 443)]


async def test_backend_refuses_a_rebound_name_without_connecting() -> None:
    inner = RecordingBackend()
    policy = AddressPolicy(resolver=rebinding_resolver("93.184.216.34", "10.0.0.1"),
                           cache_ttl=0)
    await policy.check_url("http://rebind.example/")  # first answer: public
    with pytest.raises(FetchBlocked, match="rebind.example resolves to 10.0.0.1"):
        await GuardedBackend(policy, inner).connect_tcp("rebind.example", 80)
    assert inner.calls == []


async def test_fetch_is_pinned_to_the_resolved_loopback_address(web) -> None:
    # "pinned.test" exists only in the fake resolver: the page can be read only if the client
    # connects to the address the policy checked, not to a name it resolves again.
    url = web.add_page("/pinned", "<p>pinned</p>")
    port = url.split(":")[2].split("/")[0]
    settings = Settings(fetch_allow=["127.0.0.1"], page_timeout=2.0, fetch_deadline=3.0)
    policy = AddressPolicy.from_settings(
        settings, resolver=fake_resolver({"pinned.test": ["127.0.0.1"]}))
    [page] = await fetch_pages([f"http://pinned.test:{port}/pinned"], settings, policy=policy)
    assert getattr(page, "body", None) == b"<p>pinned</p>", page
    assert web.requests == [("GET", "/pinned")]


async def test_fetch_refuses_rebinding_between_check_and_connect(web) -> None:
    url = web.add_page("/secret", "secret")
    port = url.split(":")[2].split("/")[0]
    settings = Settings(fetch_allow=["127.0.0.1"], page_timeout=2.0, fetch_deadline=3.0)
    # Checked as 127.0.0.1 (allowed); at connection time the name answers 127.0.0.2.
    policy = AddressPolicy.from_settings(
        settings, resolver=rebinding_resolver("127.0.0.1", "127.0.0.2"), cache_ttl=0)
    [result] = await fetch_pages([f"http://rebind.test:{port}/secret"], settings,
                                 policy=policy)
    assert getattr(result, "reason", "") == \
        "blocked: rebind.test resolves to 127.0.0.2, a loopback address"
    assert web.requests == []


def test_client_built_by_make_client_uses_the_guarded_backend() -> None:
    client = make_client(Settings())
    pool = client._transport._pool  # noqa: SLF001 - the point of the test
    assert isinstance(pool._network_backend, GuardedBackend)  # noqa: SLF001


async def test_slow_dns_at_connection_time_is_bounded(web) -> None:
    url = web.add_page("/p", "hi")
    port = url.split(":")[2].split("/")[0]
    answers = ["127.0.0.1"]

    async def first_fast_then_slow(host: str) -> list[str]:
        if not answers:
            await asyncio.sleep(10)
        return [answers.pop()] if answers else ["127.0.0.1"]

    settings = Settings(fetch_allow=["127.0.0.1"], page_timeout=3.0, fetch_deadline=4.0,
                        connect_timeout=0.3)
    policy = AddressPolicy.from_settings(settings, resolver=first_fast_then_slow, cache_ttl=0)
    start = time.monotonic()
    [result] = await fetch_pages([f"http://slow.test:{port}/p"], settings, policy=policy)
    assert getattr(result, "reason", "") == "DNS lookup for slow.test timed out after 0.3 s"
    assert time.monotonic() - start < 1.0


async def test_allow_entries_in_other_spellings() -> None:
    policy = AddressPolicy(["[::1]:8080", "http://wiki.corp:8000/", " ", "Docs.Corp."])
    await policy.check_url("http://[::1]/")
    assert policy.host_allowed("wiki.corp") and policy.host_allowed("docs.corp")
    with pytest.raises(ConfigError, match="fetch_allow has a bad entry"):
        AddressPolicy(["http://[::1"])
