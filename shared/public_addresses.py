"""Which IP addresses count as "on the public internet": the only places a webhook may be sent to.

`ipaddress.is_global` alone is not enough: IPv6 has several ways to carry an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4), and a public-looking IPv6 address can lead straight to 127.0.0.1 or 10.0.0.1 on a
host or network that translates it. Every such form is judged by the IPv4 address inside it, and the ones that
cannot be judged (Teredo's address is obfuscated, local-use NAT64 is local by definition) are refused.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

_CGNAT = IPv4Network("100.64.0.0/10")  # RFC 6598 shared address space: inside some operator's network
_SIX_TO_FOUR_RELAYS = IPv4Network("192.88.99.0/24")  # RFC 7526: deprecated anycast 6to4 relays
_IPV4_COMPATIBLE = IPv6Network("::/96")  # deprecated (RFC 4291 §2.5.5.1)
_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are the IPv4 destination
_NAT64_LOCAL_USE = IPv6Network("64:ff9b:1::/48")  # RFC 8215: for one operator's own translators
_SIX_TO_FOUR = IPv6Network("2002::/16")  # RFC 3056: bits 16–48 are the IPv4 relay
_TEREDO = IPv6Network("2001::/32")  # RFC 4380: the client's IPv4 address is obfuscated
_UNIQUE_LOCAL = IPv6Network("fc00::/7")
_SITE_LOCAL = IPv6Network("fec0::/10")  # deprecated, still routed by some stacks


def refusal_reason(address: IPAddress) -> str | None:
    """Why this address is not a public destination, or None when it is one."""
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            return "an IPv6 address with a zone is link-local"
        return _ipv6_refusal(address)
    return _ipv4_refusal(address)


def refusal_reason_of_text(text: str) -> str | None:
    """The same for an address written as text; None also when the text is not an IP address at all."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    return refusal_reason(address)


def _ipv4_refusal(address: IPv4Address) -> str | None:
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address (cloud metadata lives here)"
    if address.is_multicast:
        return "multicast address"
    if address in _CGNAT:
        return "shared address space (carrier-grade NAT)"
    if address in _SIX_TO_FOUR_RELAYS:
        return "6to4 relay address (deprecated)"
    if address.is_private:
        return "private address"
    if address.is_reserved:
        return "reserved address"
    if not address.is_global:
        return "address that is not globally routable"
    return None


def _ipv6_refusal(address: IPv6Address) -> str | None:
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = _ipv4_refusal(embedded)
        return None if inner is None else f"{inner} ({embedded}) inside an IPv6 address"
    if address in _IPV4_COMPATIBLE:
        return "IPv4-compatible IPv6 address (deprecated)"
    if address in _NAT64_LOCAL_USE:
        return "local-use NAT64 address"
    if address in _TEREDO:
        return "Teredo address"
    if address.is_link_local:
        return "link-local address"
    if address in _SITE_LOCAL:
        return "site-local address"
    if address in _UNIQUE_LOCAL:
        return "unique local address"
    if address.is_multicast:
        return "multicast address"
    if address.is_private:
        return "private address"
    if address.is_reserved:
        return "reserved address"
    if not address.is_global:
        return "address that is not globally routable"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 destination an IPv6 address stands for, for the forms where the embedding is well defined."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None
