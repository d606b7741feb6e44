"""The address rules, row by row: what a check may connect to, with and without loopback."""

from __future__ import annotations

import ipaddress

import pytest

from url_check.addresses import AddressPolicy

ALWAYS_REFUSED = [
    ("169.254.169.254", "link-local"),  # EC2/ECS instance metadata
    ("169.254.170.2", "link-local"),  # ECS task metadata and credentials
    ("fd00:ec2::254", "not a public address"),  # EC2 metadata over IPv6
    ("fe80::1", "link-local"),
    ("10.0.0.1", "not a public address"),
    ("172.16.0.1", "not a public address"),
    ("192.168.1.1", "not a public address"),
    ("100.64.0.1", "not a public address"),  # shared (carrier-grade NAT)
    ("0.0.0.0", "not a public address"),
    ("255.255.255.255", "not a public address"),
    ("192.0.2.1", "not a public address"),  # documentation
    ("2001:db8::1", "not a public address"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("::ffff:169.254.169.254", "carries 169.254.169.254"),  # IPv4-mapped
    ("64:ff9b::a9fe:a9fe", "carries 169.254.169.254"),  # NAT64
    ("2002:a9fe:a9fe::1", "carries 169.254.169.254"),  # 6to4
    ("::ffff:10.0.0.1", "carries 10.0.0.1"),
]
LOOPBACK = ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"]
PUBLIC = ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "2002:808:808::1"]


@pytest.mark.parametrize("allow_loopback", [False, True])
@pytest.mark.parametrize(("address", "reason"), ALWAYS_REFUSED)
def test_metadata_private_and_special_addresses_are_refused_even_with_loopback_allowed(
    address: str, reason: str, allow_loopback: bool
) -> None:
    refusal = AddressPolicy(allow_loopback).refusal(ipaddress.ip_address(address))
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_is_refused_unless_the_local_test_setting_allows_it(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    refusal = AddressPolicy().refusal(parsed)
    assert refusal is not None and "loopback" in refusal
    assert AddressPolicy(allow_loopback=True).refusal(parsed) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None
