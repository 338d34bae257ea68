"""STARTTLS: senders that encrypt can, with the certificate ops configure; mail arrives the same way."""

from __future__ import annotations

import datetime
import smtplib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Infra, Tenant, stack_env
from tests.support.stack import Stack, make_mail, wait_for, wire_bytes


def self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_a_sender_can_encrypt_with_starttls(infra: Infra, tenant: Tenant, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path, "mx.mailroom.test")
    env = stack_env(infra, tmp_path, smtp_tls_cert_file=str(cert_file), smtp_tls_key_file=str(key_file))
    gateway = Stack(env=env, log_dir=tmp_path)
    gateway.start("gateway")
    try:
        trusted = ssl.create_default_context(cafile=str(cert_file))
        trusted.check_hostname = False  # the test connects to 127.0.0.1, the certificate names mx.mailroom.test
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
            smtp.ehlo("tests.example")
            assert smtp.has_extn("starttls")
            assert smtp.starttls(context=trusted)[0] == 220
            smtp.ehlo("tests.example")
            smtp.mail(tenant.user_email)
            smtp.rcpt(tenant.bcc_address)
            code, reply = smtp.data(wire_bytes(make_mail(sender=tenant.user_email, to=["x@y.example"], subject="TLS")))
        assert code == 250, reply
        assert reply.startswith(b"2.0.0 queued as ")
    finally:
        gateway.stop()


def test_starttls_sessions_count_once_and_are_released(infra: Infra, tenant: Tenant, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path, "mx.mailroom.test")
    env = stack_env(
        infra,
        tmp_path,
        smtp_tls_cert_file=str(cert_file),
        smtp_tls_key_file=str(key_file),
        smtp_max_sessions_per_peer="2",
        smtp_client_limit_exempt_networks="",
    )
    gateway = Stack(env=env, log_dir=tmp_path)
    gateway.start("gateway")
    trusted = ssl.create_default_context(cafile=str(cert_file))
    trusted.check_hostname = False
    try:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as other:
            # With another session open, each encrypted one is this address's last allowed: counting it twice
            # refused it, and never giving its slots back refused the address for good.
            for n in range(10):
                # The previous session's slot is given back when the server sees it close, a moment after QUIT.
                with wait_for(lambda: _connect(gateway.smtp_port), what="a free session slot") as smtp:
                    smtp.starttls(context=trusted)
                    smtp.ehlo("tests.example")
                    smtp.mail(tenant.user_email)
                    smtp.rcpt(tenant.bcc_address)
                    mail = make_mail(sender=tenant.user_email, to=["x@y.example"], subject=f"TLS {n}")
                    code, reply = smtp.data(wire_bytes(mail))
                assert code == 250, reply
            other.noop()
        with (
            smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as first,
            smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as second,
        ):
            assert first.noop()[0] == second.noop()[0] == 250
    finally:
        gateway.stop()


def _connect(port: int) -> smtplib.SMTP | None:
    try:
        return smtplib.SMTP("127.0.0.1", port, timeout=30)
    except smtplib.SMTPConnectError:
        return None
