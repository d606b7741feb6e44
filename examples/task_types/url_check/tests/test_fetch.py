"""One URL's check against a local server: answers, limits, redirects, and every way an
address is refused before a connection is made."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from url_check.addresses import AddressPolicy
from url_check.fetch import InvalidUrl, Limits, fetch, parse_target

from .support import Web

LOCAL = AddressPolicy(allow_loopback=True)
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


def limits(**changes: Any) -> Limits:
    return Limits(**{"timeout_seconds": 5, "max_bytes": 1024 * 1024, **changes})


def resolver(*addresses: str) -> Any:
    """A DNS stand-in: every name resolves to these addresses."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


# ---------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("http://user:secret@example.com/", "credentials"),
        ("http:///path-only", "no host"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("http://example.com:99999/", "Port out of range"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_urls_that_are_not_checked_say_why(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrl, match=reason):
        parse_target(url)


def test_a_url_becomes_the_request_it_stands_for() -> None:
    assert parse_target("https://example.com").path == "/"
    assert parse_target("https://example.com").port == 443
    target = parse_target("http://[::1]:8080/a/b?c=d&e=f#fragment")
    assert (target.host, target.port, target.path, target.https) == (
        "::1",
        8080,
        "/a/b?c=d&e=f",
        False,
    )
    assert parse_target("http://bücher.example/").host == "xn--bcher-kva.example"


# ---------------------------------------------------------------- answers


def test_an_answer_reports_status_bytes_timing_and_the_address(web: Web) -> None:
    fetched = fetch(web.url("/ok"), limits(), LOCAL)
    assert (fetched.status, fetched.ok, fetched.bytes, fetched.truncated) == (200, True, 5, False)
    assert (fetched.content_length, fetched.redirects, fetched.address) == (5, 0, "127.0.0.1")
    assert fetched.final_url == web.url("/ok") and fetched.error_code is None
    assert 0 <= fetched.elapsed_ms < 2000


def test_an_error_status_is_an_answer_that_is_not_ok(web: Web) -> None:
    fetched = fetch(web.url("/status/503"), limits(), LOCAL)
    assert (fetched.status, fetched.ok, fetched.bytes) == (503, False, len(b"status page"))


def test_a_body_is_read_up_to_max_bytes_and_reported_truncated(web: Web) -> None:
    fetched = fetch(web.url("/bytes/100000"), limits(max_bytes=1000), LOCAL)
    assert (fetched.bytes, fetched.truncated, fetched.content_length) == (1000, True, 100000)
    whole = fetch(web.url("/bytes/1000"), limits(max_bytes=1000), LOCAL)
    assert (whole.bytes, whole.truncated) == (1000, False)


def test_a_chunked_body_is_counted_whole(web: Web) -> None:
    fetched = fetch(web.url("/chunked"), limits(), LOCAL)
    assert (fetched.status, fetched.bytes, fetched.content_length) == (200, 3003, None)


def test_head_reads_no_body(web: Web) -> None:
    fetched = fetch(web.url("/bytes/5000"), limits(method="HEAD"), LOCAL)
    assert (fetched.status, fetched.bytes, fetched.content_length) == (200, 0, 5000)


# ---------------------------------------------------------------- redirects


def test_redirects_are_followed_and_counted(web: Web) -> None:
    fetched = fetch(web.url("/redirect?to=/ok"), limits(), LOCAL)
    assert (fetched.status, fetched.redirects, fetched.bytes) == (200, 1, 5)
    assert fetched.final_url == web.url("/ok")


def test_a_redirect_not_followed_is_the_answer(web: Web) -> None:
    fetched = fetch(web.url("/redirect?to=/ok"), limits(follow_redirects=False), LOCAL)
    assert (fetched.status, fetched.ok, fetched.redirects) == (302, True, 0)


def test_redirects_beyond_the_limit_fail(web: Web) -> None:
    fetched = fetch(web.url("/loop"), limits(max_redirects=2), LOCAL)
    assert (fetched.status, fetched.error_code, fetched.redirects) == (
        None,
        "too_many_redirects",
        3,
    )


def test_a_redirect_to_the_metadata_service_is_refused_before_connecting(web: Web) -> None:
    fetched = fetch(web.url(f"/redirect?to={METADATA}"), limits(), LOCAL)
    assert (fetched.status, fetched.error_code, fetched.redirects) == (None, "blocked_address", 1)
    assert fetched.final_url == METADATA
    assert "169.254.169.254 is a link-local address" in (fetched.error or "")


def test_a_redirect_to_another_scheme_is_not_followed(web: Web) -> None:
    fetched = fetch(web.url("/redirect?to=file:///etc/passwd"), limits(), LOCAL)
    assert (fetched.status, fetched.error_code) == (None, "invalid_url")


# ---------------------------------------------------------------- addresses


def test_loopback_is_refused_without_the_local_setting_and_nothing_is_sent(web: Web) -> None:
    fetched = fetch(web.url("/ok"), limits(), AddressPolicy())
    assert (fetched.status, fetched.error_code, fetched.address) == (None, "blocked_address", None)
    assert web.hosts == []


@pytest.mark.parametrize(
    "url",
    [
        METADATA,
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/",  # 169.254.169.254 as one decimal number
        "http://0xa9.0xfe.0xa9.0xfe/",  # and in hexadecimal parts
        "http://localhost/",
        "http://0.0.0.0/",
    ],
)
def test_the_metadata_service_and_local_addresses_are_unreachable_however_written(
    url: str,
) -> None:
    fetched = fetch(url, limits(timeout_seconds=2), AddressPolicy())
    assert (fetched.status, fetched.error_code) == (None, "blocked_address")


def test_a_name_resolving_to_the_metadata_service_is_refused() -> None:
    fetched = fetch(
        "http://innocent.example/", limits(), LOCAL, resolve=resolver("169.254.169.254")
    )
    assert fetched.error_code == "blocked_address"
    assert fetched.error == (
        "innocent.example resolves to 169.254.169.254 is a link-local address (where the "
        "instance metadata service answers)"
    )


def test_a_name_resolving_to_a_public_and_a_private_address_is_refused() -> None:
    fetched = fetch(
        "http://mixed.example/", limits(), LOCAL, resolve=resolver("8.8.8.8", "10.0.0.5")
    )
    assert fetched.error_code == "blocked_address"


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(web: Web) -> None:
    # Given a name that resolves, once, to the local server's address
    port = web.base.rsplit(":", 1)[1]
    fetched = fetch(
        f"http://site.example:{port}/ok", limits(), LOCAL, resolve=resolver("127.0.0.1")
    )
    # Then the request reached that address, naming the host it asked for
    assert (fetched.status, fetched.address) == (200, "127.0.0.1")
    assert web.hosts == [f"site.example:{port}"]


# ---------------------------------------------------------------- time and failures


def test_an_answer_slower_than_the_timeout_is_a_timeout(web: Web) -> None:
    fetched = fetch(web.url("/slow?seconds=3"), limits(timeout_seconds=1), LOCAL)
    assert (fetched.status, fetched.error_code) == (None, "timeout")
    assert 1000 <= fetched.elapsed_ms < 2000


def test_a_server_dripping_bytes_cannot_outlast_the_timeout(web: Web) -> None:
    # Every read gets a byte within any socket timeout; only the deadline ends it.
    fetched = fetch(web.url("/drip"), limits(timeout_seconds=1), LOCAL)
    assert (fetched.status, fetched.error_code) == (None, "timeout")
    assert 1000 <= fetched.elapsed_ms < 2000


def test_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetched = fetch(f"http://127.0.0.1:{port}/", limits(), LOCAL)
    assert (fetched.status, fetched.error_code) == (None, "connection_error")


def test_a_name_that_does_not_resolve_is_a_dns_error() -> None:
    def no_such_name(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetched = fetch("https://no-such-name.example/", limits(), LOCAL, resolve=no_such_name)
    assert (fetched.status, fetched.error_code) == (None, "dns_error")
