"""Run real mail through the real matcher on a scratch Postgres database, for the corpus evaluations.

The database is the local server when one answers on 127.0.0.1:5432, else an embedded one (as in the tests).
Every corpus gets accounts of its own, so evaluations never see each other's threads or people.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from services.matcher.pipeline import Matcher, Outcome
from shared import directory
from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from tests.support.inbound import store_inbound
from tests.support.servers import database_url, free_port, postgres_admin_url, recreate_database, redis_url
from tests.support.stack import Stack, base_env

DEFAULT_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def corpora_root() -> Path:
    return Path(os.environ.get("MAILROOM_CORPORA", str(DEFAULT_CORPORA)))


@dataclass(frozen=True)
class EvalAccount:
    account_id: uuid.UUID
    user_id: uuid.UUID
    user_email: str
    bcc_address: str


@dataclass(frozen=True)
class EvalDatabase:
    url: str
    sessions: sessionmaker[Session]
    matcher: Matcher

    def new_account(self, user_email: str = "user@mailroom-eval.example", user_name: str = "Eval User") -> EvalAccount:
        with transaction(self.sessions) as session:
            account = directory.create_account(session, f"eval {uuid.uuid4().hex[:6]}")
            user = directory.create_user(session, account.account_id, user_email, user_name)
            return EvalAccount(account.account_id, user.id, user.email, directory.bcc_address(user, "bcc.eval"))

    def deliver(self, account: EvalAccount, raw: bytes) -> tuple[uuid.UUID, Outcome]:
        """Store the raw message as the gateway would, then run the matcher on it."""
        inbound_id = store_inbound(
            self.sessions,
            account_id=account.account_id,
            user_id=account.user_id,
            bcc_address=account.bcc_address,
            raw=raw,
            envelope_from="",
        )
        return inbound_id, self.matcher.process(inbound_id)


@contextlib.contextmanager
def running_mailroom(db: EvalDatabase) -> Iterator[Stack]:
    """The gateway and a worker as real processes on the evaluation database, for mail sent over SMTP."""
    with tempfile.TemporaryDirectory(prefix="mailroom-eval-stack-") as work, redis_url(Path(work)) as redis:
        env = base_env(
            database_url=db.url,
            redis_url=redis,
            queue_namespace=f"mailroom-eval-{uuid.uuid4().hex[:8]}",
            data_dir=work,
            smtp_port=str(free_port()),
            api_port=str(free_port()),
            worker_processes="1",
            worker_threads="4",
            sweep_interval_seconds="2",
            sweep_grace_seconds="5",
            bcc_domain="bcc.eval",
        )
        stack = Stack(env=env, log_dir=Path(work))
        stack.start("gateway", "worker")
        try:
            yield stack
        finally:
            stack.stop()


@contextlib.contextmanager
def eval_database(name: str = "mailroom_eval") -> Iterator[EvalDatabase]:
    with postgres_admin_url() as admin_url, tempfile.TemporaryDirectory(prefix="mailroom-eval-") as blobs:
        recreate_database(admin_url, name)
        url = database_url(admin_url, name)
        upgrade(url)
        engine = make_engine(url, pool_size=8)
        sessions = make_session_factory(engine)
        try:
            yield EvalDatabase(
                url=url, sessions=sessions, matcher=Matcher(sessions=sessions, blobs=LocalBlobStore(Path(blobs)))
            )
        finally:
            engine.dispose()
