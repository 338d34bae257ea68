"""Who really sent a message: SPF for the client address, DKIM signatures, and DMARC alignment with the From domain.

Checked once per inbound message, on its first processing, and recorded on it, so retries and reprocessing
decide on the same facts (DNS changes; the mail does not). The work is bounded: every DNS lookup has a short
timeout, the lookups of one message share one time budget, at most `max_dkim_signatures` signatures are checked,
and pyspf enforces RFC 7208's limits (10 lookups, 2 void lookups), so hostile mail cannot stall a worker.

Behind a trusted relay (an MTA of ours in front of the gateway) the relay's `Authentication-Results` is believed
instead; from any other client such a header is ignored, since anyone can write one (RFC 8601 §5).

Alignment is DMARC's relaxed mode (RFC 7489 §3.1): the authenticated domain and the From domain share their
organizational domain (the Public Suffix List decides what that is).
"""

from __future__ import annotations

import email
import email.parser
import email.utils
import ipaddress
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from functools import cache
from typing import Any

import authres
import authres.core
import authres.dmarc
import dkim
import dns.exception
import dns.resolver
import spf
import structlog
from publicsuffixlist import PublicSuffixList

from shared.models import AuthSummary
from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SenderAuthConfig:
    """What verification needs from the settings; the matcher gets one (or None: it then checks nothing)."""

    authserv_id: str
    require: bool = True
    resolver: str | None = None  # "host" or "host:port"; None: the system's resolver
    timeout_seconds: float = 2.0
    budget_seconds: float = 8.0
    max_dkim_signatures: int = 5
    trusted_relays: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trusted_authserv_ids: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderAuthConfig | None:
        if not settings.verify_senders:
            return None
        return cls(
            authserv_id=settings.smtp_hostname,
            require=settings.require_sender_auth,
            resolver=settings.dns_resolver,
            timeout_seconds=settings.dns_timeout_seconds,
            budget_seconds=settings.sender_auth_budget_seconds,
            max_dkim_signatures=settings.max_dkim_signatures,
            trusted_relays=tuple(ipaddress.ip_network(relay, strict=False) for relay in settings.trusted_relays),
            trusted_authserv_ids=frozenset(i.lower() for i in settings.trusted_authserv_ids),
        )

    def is_trusted_relay(self, client_ip: str | None) -> bool:
        if client_ip is None:
            return False
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_relays)


@dataclass(frozen=True)
class SpfCheck:
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror
    domain: str | None  # the envelope sender's domain, or the HELO name when the envelope sender is empty


@dataclass(frozen=True)
class DkimCheck:
    result: str  # pass, fail, neutral (not checked: over the limit), temperror, permerror
    domain: str | None  # d=
    selector: str | None  # s=


@dataclass(frozen=True)
class SenderAuthentication:
    from_domain: str | None
    spf: SpfCheck
    dkim: tuple[DkimCheck, ...]
    # DMARC's verdict for the From domain: pass (aligned SPF or DKIM pass), fail, or none (no record published).
    dmarc: str
    dmarc_policy: str | None  # p= of the record that applies (none, quarantine, reject); None without a record
    source: str  # "verified", or "trusted relay <ip> (<authserv-id>)"
    header: str  # the Authentication-Results header for these results (RFC 8601)
    notes: tuple[str, ...] = field(default=())

    def authenticates(self, domain: str | None) -> bool:
        """Did SPF or DKIM pass for a domain aligned with `domain` (same organizational domain)?"""
        if not domain:
            return False
        if self.spf.result == "pass" and aligned(self.spf.domain, domain):
            return True
        return any(check.result == "pass" and aligned(check.domain, domain) for check in self.dkim)

    @property
    def had_temporary_error(self) -> bool:
        """Did DNS fail to answer somewhere? Then checking again later may come out differently."""
        return self.spf.result == "temperror" or any(c.result == "temperror" for c in self.dkim)

    @property
    def from_aligned(self) -> bool:
        return self.dmarc == "pass" or self.authenticates(self.from_domain)

    @property
    def summary(self) -> AuthSummary:
        if self.from_aligned:
            return AuthSummary.passed
        failed_dkim = any(check.result == "fail" for check in self.dkim)
        if self.dmarc == "fail" or failed_dkim or self.spf.result in {"fail", "softfail"}:
            return AuthSummary.failed
        return AuthSummary.none

    def describe(self) -> str:
        """One line for people: what was checked for which domain, and how it came out."""
        parts: list[str] = []
        if self.dkim:
            parts.extend(f"DKIM {c.result} ({c.domain or 'no domain'})" for c in self.dkim)
        else:
            parts.append("no DKIM signature")
        parts.append(f"SPF {self.spf.result} ({self.spf.domain or 'no domain'})")
        policy = f", p={self.dmarc_policy}" if self.dmarc_policy else ""
        parts.append(f"DMARC {self.dmarc} ({self.from_domain or 'no From domain'}{policy})")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary.value,
            "from_domain": self.from_domain,
            "spf": {"result": self.spf.result, "domain": self.spf.domain},
            "dkim": [{"result": c.result, "domain": c.domain, "selector": c.selector} for c in self.dkim],
            "dmarc": {"result": self.dmarc, "policy": self.dmarc_policy},
            "source": self.source,
            "header": self.header,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SenderAuthentication:
        return cls(
            from_domain=data.get("from_domain"),
            spf=SpfCheck(**data["spf"]),
            dkim=tuple(DkimCheck(**c) for c in data.get("dkim", [])),
            dmarc=data["dmarc"]["result"],
            dmarc_policy=data["dmarc"].get("policy"),
            source=data.get("source", "verified"),
            header=data.get("header", ""),
            notes=tuple(data.get("notes", [])),
        )


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships; nothing is downloaded


def organizational_domain(domain: str) -> str:
    domain = domain.lower().rstrip(".")
    return _public_suffixes().privatesuffix(domain) or domain


def aligned(authenticated: str | None, from_domain: str | None) -> bool:
    if not authenticated or not from_domain:
        return False
    return organizational_domain(authenticated) == organizational_domain(from_domain)


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    domain = address.rsplit("@", 1)[1].strip().strip(">").lower().rstrip(".")
    return domain or None


def from_domain_of(message: EmailMessage) -> str | None:
    """The domain of the single From address; None when there is none or several (DMARC rejects those)."""
    values = message.get_all("From") or []
    if len(values) != 1:
        return None
    addresses = [a for _, a in email.utils.getaddresses([str(values[0])]) if a]
    return domain_of(addresses[0]) if len(addresses) == 1 else None


def authenticate(
    raw: bytes,
    *,
    envelope_from: str,
    client_ip: str | None,
    helo: str | None,
    config: SenderAuthConfig,
) -> SenderAuthentication:
    """Verify the message as it arrived from `client_ip`, or believe the trusted relay it came through."""
    # Only header fields are read here (DKIM verifies the raw bytes): the body, all of a large message's MIME
    # parts, is the analysis' to parse.
    message = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    from_domain = from_domain_of(message)
    if config.is_trusted_relay(client_ip):
        relayed = _from_trusted_relay(message, from_domain, client_ip or "", config)
        if relayed is not None:
            return relayed
    lookups = _Lookups(config)
    spf_check = _check_spf(lookups, envelope_from, client_ip, helo)
    dkim_checks, notes = _check_dkim(lookups, raw, message, config.max_dkim_signatures)
    dmarc, policy = _check_dmarc(lookups, from_domain, spf_check, dkim_checks)
    header = _header(config.authserv_id, spf_check, dkim_checks, dmarc, from_domain, policy, envelope_from, helo)
    return SenderAuthentication(
        from_domain=from_domain,
        spf=spf_check,
        dkim=dkim_checks,
        dmarc=dmarc,
        dmarc_policy=policy,
        source="verified",
        header=header,
        notes=tuple(notes),
    )


def client_ip_of(peer: str | None) -> str | None:
    """The address part of the gateway's `host:port` peer ("::1:4711" → "::1")."""
    if not peer:
        return None
    host, _, port = peer.rpartition(":")
    return (host if port.isdigit() else peer).strip("[]") or None


def nameserver(value: str) -> tuple[str, int]:
    """ "10.0.0.2", "10.0.0.2:5353", "::1" or "[::1]:5353" → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, 53


# --- DNS ---------------------------------------------------------------------------------------------------------


@cache
def _answers_from(resolver: str | None) -> dns.resolver.LRUCache:
    """The answers of one DNS server, kept as long as their TTL allows, as a caching resolver keeps them: the same
    sender domains come back all day (a user's own domain is on every message they send), and a lookup costs more
    CPU here (dnspython builds and reads every DNS message in Python) than the rest of a message's sender checks.
    One cache per server, because answers from one server say nothing about what another would answer."""
    return dns.resolver.LRUCache(max_size=10_000)


class _Lookups:
    """A resolver for one message: the configured server, short timeouts, and one shared time budget."""

    def __init__(self, config: SenderAuthConfig) -> None:
        if config.resolver:
            host, port = nameserver(config.resolver)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            resolver = dns.resolver.Resolver()
        resolver.timeout = config.timeout_seconds
        resolver.lifetime = config.timeout_seconds
        resolver.use_edns(0, 0, 1232)  # DKIM keys rarely fit the 512 bytes of plain DNS
        resolver.cache = _answers_from(config.resolver)
        self.resolver = resolver
        self.timeout = config.timeout_seconds
        self.deadline = time.monotonic() + config.budget_seconds
        # dkimpy turns a DNS timeout into a plain "signature invalid"; remembering it here tells the two apart.
        self.dkim_key_timeouts = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def lifetime(self) -> float:
        left = self.remaining()
        if left <= 0:
            raise dns.exception.Timeout("the sender-authentication time budget is spent")  # type: ignore[no-untyped-call]
        return min(self.timeout, left)

    def txt(self, name: str) -> list[bytes]:
        """The TXT records at `name`, each joined from its strings; [] when there are none."""
        try:
            answer = self.resolver.resolve(name, "TXT", lifetime=self.lifetime(), search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [b"".join(rdata.strings) for rdata in answer]

    def dkim_txt(self, name: str | bytes, timeout: float = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        try:
            records = self.txt(name)
        except dns.exception.Timeout as exc:
            self.dkim_key_timeouts += 1
            raise dkim.DnsTimeoutError(str(exc)) from exc
        except dns.exception.DNSException:
            return None
        return records[0] if records else None

    def spf_lookup(self, name: str, qtype: str, strict: bool = True, timeout: float = 30) -> list[Any]:
        """pyspf's DNSLookup contract: [((name, qtype), value), …]; TempError when DNS does not answer."""
        try:
            answer = self.resolver.resolve(name, qtype, lifetime=self.lifetime(), search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise spf.TempError(f"DNS {exc}") from exc
        records: list[Any] = []
        for rdata in answer:
            if qtype in {"A", "AAAA"}:
                records.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                records.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                records.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in {"TXT", "SPF"}:
                records.append(((name, qtype), rdata.strings))
        return records


# pyspf looks DNS up through its module-level `DNSLookup`; route that through the lookups of the message being
# checked in this thread (a context variable), so every worker thread uses its own resolver and budget.
_current_lookups: ContextVar[_Lookups | None] = ContextVar("spf_lookups", default=None)
_pyspf_default_lookup = spf.DNSLookup


def _spf_dns_lookup(name: str, qtype: str, strict: bool = True, timeout: float = 30) -> list[Any]:
    lookups = _current_lookups.get()
    if lookups is None:
        return _pyspf_default_lookup(name, qtype, strict, timeout)  # type: ignore[no-any-return]
    return lookups.spf_lookup(name, qtype, strict, timeout)


spf.DNSLookup = _spf_dns_lookup


# --- the checks -------------------------------------------------------------------------------------------------


def _check_spf(lookups: _Lookups, envelope_from: str, client_ip: str | None, helo: str | None) -> SpfCheck:
    mail_from = envelope_from.strip().strip("<>")
    # RFC 7208 §2.4: with an empty envelope sender (bounces) the HELO identity is checked, as postmaster@helo.
    domain = domain_of(mail_from) or (helo.lower().rstrip(".") if helo else None)
    if client_ip is None or domain is None:
        return SpfCheck("none", domain)
    sender = mail_from if domain_of(mail_from) else f"postmaster@{domain}"
    token = _current_lookups.set(lookups)
    try:
        budget = lookups.remaining()
        result, _code, _explanation = spf.query(
            i=client_ip, s=sender, h=helo or domain, timeout=lookups.timeout, querytime=budget
        ).check()
    except Exception as exc:  # pyspf raises its own errors for malformed input; never let mail crash a worker
        log.info("auth.spf_error", error=f"{type(exc).__name__}: {exc}")
        result = "temperror"
    finally:
        _current_lookups.reset(token)
    return SpfCheck(str(result), domain)


def _check_dkim(
    lookups: _Lookups, raw: bytes, message: EmailMessage, limit: int
) -> tuple[tuple[DkimCheck, ...], list[str]]:
    signatures = message.get_all("DKIM-Signature") or []
    checks: list[DkimCheck] = []
    notes: list[str] = []
    if not signatures:
        return (), notes
    verifier = dkim.DKIM(raw, timeout=max(1, int(lookups.timeout)))
    for index, signature in enumerate(signatures):
        tags = _tags(str(signature))
        domain = tags.get("d", "").lower() or None
        selector = tags.get("s") or None
        if index >= limit:
            notes.append(f"{len(signatures) - limit} more DKIM signature(s) not checked (limit {limit})")
            break
        timeouts_before = lookups.dkim_key_timeouts
        try:
            passed = verifier.verify(idx=index, dnsfunc=lookups.dkim_txt)
            result = "pass" if passed else "fail"
            if not passed and lookups.dkim_key_timeouts > timeouts_before:
                result = "temperror"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except dkim.DKIMException as exc:
            # A key that is missing, revoked or malformed fails the signature (RFC 6376 §6.1.2: PERMFAIL).
            notes.append(f"DKIM d={domain}: {str(exc)[:200]}")
            result = "fail" if domain else "permerror"
        except Exception as exc:  # malformed mail can trip dkimpy in many ways; it must not crash a worker
            notes.append(f"DKIM d={domain}: {type(exc).__name__}")
            result = "permerror"
        checks.append(DkimCheck(result, domain, selector))
    return tuple(checks), notes


def _check_dmarc(
    lookups: _Lookups, from_domain: str | None, spf_check: SpfCheck, dkim_checks: tuple[DkimCheck, ...]
) -> tuple[str, str | None]:
    if from_domain is None:
        return "none", None
    record = _dmarc_record(lookups, from_domain)
    if record is None:
        return "none", None
    tags = _tags(record)
    organizational = organizational_domain(from_domain)
    policy = tags.get("p", "none").lower()
    if from_domain != organizational and "sp" in tags:
        policy = tags["sp"].lower()
    strict_spf = tags.get("aspf", "r").lower() == "s"
    strict_dkim = tags.get("adkim", "r").lower() == "s"

    def matches(domain: str | None, strict: bool) -> bool:
        return domain == from_domain if strict else aligned(domain, from_domain)

    spf_aligned = spf_check.result == "pass" and matches(spf_check.domain, strict_spf)
    dkim_aligned = any(c.result == "pass" and matches(c.domain, strict_dkim) for c in dkim_checks)
    return ("pass" if spf_aligned or dkim_aligned else "fail"), policy


def _dmarc_record(lookups: _Lookups, from_domain: str) -> str | None:
    """The DMARC record of the From domain, else of its organizational domain (RFC 7489 §6.6.3)."""
    candidates = [from_domain]
    organizational = organizational_domain(from_domain)
    if organizational != from_domain:
        candidates.append(organizational)
    for domain in candidates:
        try:
            records = [r for r in lookups.txt(f"_dmarc.{domain}") if r.lower().startswith(b"v=dmarc1")]
        except dns.exception.DNSException as exc:
            log.info("auth.dmarc_lookup_failed", domain=domain, error=type(exc).__name__)
            return None
        if len(records) == 1:
            return records[0].decode("ascii", "replace")
    return None


def _tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, tag_value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(tag_value.split())
    return tags


def _header(
    authserv_id: str,
    spf_check: SpfCheck,
    dkim_checks: tuple[DkimCheck, ...],
    dmarc: str,
    from_domain: str | None,
    policy: str | None,
    envelope_from: str,
    helo: str | None,
) -> str:
    results: list[Any] = [
        authres.SPFAuthenticationResult(
            result=spf_check.result,
            smtp_mailfrom=envelope_from.strip("<>") or None,
            smtp_helo=helo or None,
        )
    ]
    results.extend(
        authres.DKIMAuthenticationResult(result=c.result, header_d=c.domain, header_s=c.selector) for c in dkim_checks
    )
    if from_domain is not None:
        results.append(authres.dmarc.DMARCAuthenticationResult(result=dmarc, header_from=from_domain, policy=policy))
    return str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))


# --- a trusted relay's results ----------------------------------------------------------------------------------

_FEATURES = authres.FeatureContext(authres.dmarc)


def _from_trusted_relay(
    message: EmailMessage, from_domain: str | None, client_ip: str, config: SenderAuthConfig
) -> SenderAuthentication | None:
    """The results the relay wrote: its topmost Authentication-Results (with a trusted authserv-id, if any are
    configured). None when it wrote none we can read; then we verify ourselves."""
    for value in message.get_all("Authentication-Results") or []:
        unfolded = " ".join(str(value).split())
        try:
            parsed = authres.core.AuthenticationResultsHeader.parse_value(_FEATURES, unfolded)
        except Exception:  # authres raises several syntax error types; an unreadable header is not the relay's
            log.info("auth.relay_header_unreadable")
            continue
        authserv_id = str(parsed.authserv_id).lower()
        if config.trusted_authserv_ids and authserv_id not in config.trusted_authserv_ids:
            continue
        return _relayed(parsed, from_domain, f"trusted relay {client_ip} ({authserv_id})", unfolded)
    return None


def _relayed(parsed: Any, from_domain: str | None, source: str, header: str) -> SenderAuthentication:
    spf_check = SpfCheck("none", None)
    dkim_checks: list[DkimCheck] = []
    dmarc, policy = "none", None
    for result in parsed.results:
        props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        method, outcome = str(result.method).lower(), str(result.result).lower()
        if method == "spf":
            spf_check = SpfCheck(
                outcome, domain_of(props.get("smtp.mailfrom")) or props.get("smtp.mailfrom") or props.get("smtp.helo")
            )
        elif method == "dkim":
            domain = props.get("header.d") or domain_of(props.get("header.i"))
            dkim_checks.append(DkimCheck(outcome, domain.lower() if domain else None, props.get("header.s")))
        elif method == "dmarc":
            header_from = props.get("header.from", "").lower()
            # A verdict about another domain than our From says nothing about this message.
            if not from_domain or header_from in {"", from_domain}:
                dmarc = outcome
                policy = props.get("policy.dmarc") or None
    return SenderAuthentication(
        from_domain=from_domain,
        spf=spf_check,
        dkim=tuple(dkim_checks),
        dmarc=dmarc,
        dmarc_policy=policy,
        source=source,
        header=f"Authentication-Results: {header}",
    )
