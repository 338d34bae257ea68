from __future__ import annotations

import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.pipeline import Matcher
from shared.blobstore import LocalBlobStore
from tests.conftest import Tenant, new_tenant
from tests.support.inbound import store_inbound
from tests.support.stack import wire_bytes


@pytest.fixture
def matcher(quiet_sessions: sessionmaker[Session], tmp_path: Path) -> Matcher:
    return Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(tmp_path / "blobs"))


@pytest.fixture
def quiet_tenant(quiet_sessions: sessionmaker[Session]) -> Tenant:
    return new_tenant(quiet_sessions)


def receive(sessions: sessionmaker[Session], tenant: Tenant, mail: EmailMessage | bytes) -> uuid.UUID:
    """Store a message the way the gateway does (raw bytes, status `received`)."""
    raw = mail if isinstance(mail, bytes) else wire_bytes(mail)
    return store_inbound(
        sessions, account_id=tenant.account_id, user_id=tenant.user_id, bcc_address=tenant.bcc_address, raw=raw
    )
