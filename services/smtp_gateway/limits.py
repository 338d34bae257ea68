"""How much one client, and all of them together, may ask of the gateway: Postfix's anvil, in process.

A client is an IPv4 address or an IPv6 /64: one IPv6 host usually holds a whole /64, so counting single IPv6
addresses would give it 2**64 allowances. Rates are counted per fixed minute, as anvil counts per time unit.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from shared.settings import Settings

SERVER_BUSY = "421 4.3.2 Too many connections, please try again later"
TOO_MANY_SESSIONS = "421 4.7.0 Too many connections from your address, please try again later"
CONNECTING_TOO_OFTEN = "421 4.7.0 Too many new connections from your address, please try again later"
TOO_MUCH_MAIL = "451 4.7.1 Too much mail from your address, please try again later"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"

_RATE_WINDOW_SECONDS = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_key(host: str) -> str:
    """The client a connection counts against: its IPv4 address, or the /64 of its IPv6 address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP address (a Unix socket): it is its own client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_of(peername: object) -> str:
    """The client behind a socket's peer name (`(host, port, …)`)."""
    return client_key(str(peername[0]) if isinstance(peername, tuple) and peername else str(peername))


@dataclass(frozen=True)
class Limits:
    max_sessions: int
    max_sessions_per_client: int
    connection_rate_per_minute: int
    message_rate_per_minute: int
    hard_error_limit: int
    max_recipients: int
    exempt_networks: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_sessions=settings.smtp_max_sessions,
            max_sessions_per_client=settings.smtp_max_sessions_per_peer,
            connection_rate_per_minute=settings.smtp_connection_rate_per_minute,
            message_rate_per_minute=settings.smtp_message_rate_per_minute,
            hard_error_limit=settings.smtp_hard_error_limit,
            max_recipients=settings.smtp_max_recipients,
            exempt_networks=tuple(
                ipaddress.ip_network(network.strip())
                for network in settings.smtp_client_limit_exempt_networks.split(",")
                if network.strip()
            ),
        )


class _RateCounter:
    """Events per client in the current minute; a client's count starts over once its minute has passed."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._next_prune = clock() + _RATE_WINDOW_SECONDS

    def allow(self, client: str) -> bool:
        """Count one event for `client`; False once it is over the rate (refused events count too)."""
        if not self._per_minute:
            return True
        now = self._clock()
        if now >= self._next_prune:
            # Memory stays proportional to the clients of the last minute, however many came before.
            self._windows = {key: w for key, w in self._windows.items() if now - w[0] < _RATE_WINDOW_SECONDS}
            self._next_prune = now + _RATE_WINDOW_SECONDS
        started, count = self._windows.get(client, (now, 0))
        if now - started >= _RATE_WINDOW_SECONDS:
            started, count = now, 0
        self._windows[client] = (started, count + 1)
        return count < self._per_minute


class Anvil:
    """Admits sessions and messages, and remembers which clients hold how many sessions."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._sessions = 0
        self._sessions_by_client: Counter[str] = Counter()
        self._connections = _RateCounter(limits.connection_rate_per_minute, clock)
        self._messages = _RateCounter(limits.message_rate_per_minute, clock)

    @property
    def open_sessions(self) -> int:
        return self._sessions

    def admit_session(self, client: str) -> str | None:
        """None and the session counted, or the `421` that refuses it. Every admitted session is released once."""
        if self.limits.max_sessions and self._sessions >= self.limits.max_sessions:
            return SERVER_BUSY
        if not self._exempt(client):
            if not self._connections.allow(client):
                return CONNECTING_TOO_OFTEN
            cap = self.limits.max_sessions_per_client
            if cap and self._sessions_by_client[client] >= cap:
                return TOO_MANY_SESSIONS
        self._sessions += 1
        self._sessions_by_client[client] += 1
        return None

    def release_session(self, client: str) -> None:
        self._sessions -= 1
        self._sessions_by_client[client] -= 1
        if self._sessions_by_client[client] <= 0:
            del self._sessions_by_client[client]

    def admit_message(self, client: str) -> str | None:
        """None, or the `451` for a client sending more messages per minute than allowed."""
        if self._exempt(client) or self._messages.allow(client):
            return None
        return TOO_MUCH_MAIL

    def _exempt(self, client: str) -> bool:
        try:
            address = ipaddress.ip_network(client, strict=False)
        except ValueError:
            return False
        return any(
            address.version == network.version and address.subnet_of(network)  # type: ignore[arg-type]
            for network in self.limits.exempt_networks
        )
