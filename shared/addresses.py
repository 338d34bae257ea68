"""How e-mail addresses are compared everywhere (matcher, API, gateway)."""

from __future__ import annotations


def normalize_address(address: str) -> str:
    # Domains are case-insensitive; local parts are in theory, but no real provider treats them so.
    return address.strip().strip("<>").strip().lower()
