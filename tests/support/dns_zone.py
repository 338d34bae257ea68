"""A DNS server for tests: answers from a zone the test controls, over UDP and TCP on 127.0.0.1, in a thread.

Mailroom's services are pointed at it with `MAILROOM_DNS_RESOLVER=127.0.0.1:<port>`, so sender authentication
runs its real lookups without any network. Names not in the zone are NXDOMAIN. It also makes signing keys and
signs mail the way a sending provider does.
"""

from __future__ import annotations

import base64
import errno
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dkim
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class Zone:
    """name → type → values; TXT values are plain strings (split into 255-byte strings when served)."""

    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    queries: list[tuple[str, str]] = field(default_factory=list)
    # A far-away server: each answer waits this long (each query is served in its own thread).
    delay_seconds: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0  # the most queries that were waiting for their answer at the same time

    def add(self, name: str, rdtype: str, value: str) -> None:
        with self.lock:
            self.records.setdefault(name.lower().rstrip("."), {}).setdefault(rdtype.upper(), []).append(value)

    def clear(self, name: str) -> None:
        with self.lock:
            self.records.pop(name.lower().rstrip("."), None)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self.lock:
            self.queries.append((name, rdtype))
            at_name = self.records.get(name)
            values = list(at_name.get(rdtype, [])) if at_name else []
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_seconds)
        finally:
            with self.lock:
                self.in_flight -= 1
        if at_name is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif values:
            texts = [_txt(v) for v in values] if rdtype == "TXT" else values
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, question.rdtype, texts)
            )
        return response.to_wire()  # type: ignore[no-any-return]


def _txt(value: str) -> str:
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


class _Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(self.server.zone.answer(data), self.client_address)  # type: ignore[attr-defined]


class _Tcp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        header = sock.recv(2)
        if len(header) < 2:
            return
        (length,) = struct.unpack("!H", header)
        data = b""
        while len(data) < length:
            chunk = sock.recv(length - len(data))
            if not chunk:
                return
            data += chunk
        answer = self.server.zone.answer(data)  # type: ignore[attr-defined]
        sock.sendall(struct.pack("!H", len(answer)) + answer)


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class DnsServer:
    zone: Zone
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _bound_pair() -> tuple[_UdpServer, _TcpServer]:
    """A UDP and a TCP server on one port. The port the system picked for UDP may be taken for TCP (by another
    test's server, started in parallel): then try another."""
    for _ in range(20):
        udp = _UdpServer(("127.0.0.1", 0), _Udp)
        try:
            return udp, _TcpServer(("127.0.0.1", udp.server_address[1]), _Tcp)
        except OSError as exc:
            udp.server_close()
            if exc.errno != errno.EADDRINUSE:
                raise
    raise RuntimeError("no port free for both UDP and TCP")


@contextmanager
def dns_server(zone: Zone | None = None) -> Iterator[DnsServer]:
    zone = zone if zone is not None else Zone()
    udp, tcp = _bound_pair()
    port = udp.server_address[1]
    for server in (udp, tcp):
        server.zone = zone  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in (udp, tcp)]
    for thread in threads:
        thread.start()
    try:
        yield DnsServer(zone, port)
    finally:
        for server in (udp, tcp):
            server.shutdown()
            server.server_close()


SIGNED_HEADERS = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to", b"references")


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    private_pem: bytes
    public_record: str  # the TXT record at <selector>._domainkey.<domain>

    def publish(self, zone: Zone) -> None:
        zone.add(f"{self.selector}._domainkey.{self.domain}", "TXT", self.public_record)

    def sign(
        self, raw: bytes, headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id")
    ) -> bytes:
        """The message with a DKIM-Signature header on top, as the sender's provider adds it."""
        signature = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_pem,
            include_headers=list(headers),
        )
        return signature + raw


def new_signing_key(domain: str, selector: str = "mail") -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(public_der).decode()
    return SigningKey(domain, selector, private_pem, record)
