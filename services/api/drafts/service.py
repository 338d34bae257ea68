"""Drafts: write, submit, approve or reject, and the state machine that guards each step.

Only the thread's owner (a token tied to the draft's user) or an admin token decides; a decision and the queue
message that sends the draft commit together (the message leaves after the commit), and the worker's send sweep
finds any approved draft whose message was lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.drafts.schemas import DraftIn, DraftPatch
from services.api.mailbox.service import get_thread
from services.api.pagination import page_rows, paginate
from services.api.problems import Problem, conflict, invalid, not_found
from shared.account_settings import AccountSettings
from shared.broker import draft_send
from shared.events import emit_draft_status, enqueue_after_commit
from shared.models import Account, Draft, DraftStatus, Message, TokenScope, User

EDITABLE = frozenset({DraftStatus.draft, DraftStatus.rejected})
# How many ids of the chain a reply carries in References (RFC 5322 §3.6.4 asks for the parent's chain; long
# chains are trimmed from the middle by clients, keeping the first).
MAX_REFERENCES = 20


@dataclass(frozen=True)
class DraftFilters:
    thread_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    status: DraftStatus | None = None


def list_drafts(
    session: Session, caller: Caller, filters: DraftFilters, cursor: str | None, limit: int
) -> tuple[list[Draft], str | None]:
    query = select(Draft).where(Draft.account_id == caller.account_id)
    if caller.user_id is not None:
        # A token of one user sees the drafts it wrote and the ones that wait for that user.
        query = query.where((Draft.user_id == caller.user_id) | (Draft.author_user_id == caller.user_id))
    for column, value in ((Draft.thread_id, filters.thread_id), (Draft.user_id, filters.user_id)):
        if value is not None:
            query = query.where(column == value)
    if filters.status is not None:
        query = query.where(Draft.status == filters.status)
    rows = session.scalars(paginate(query, Draft.created_at, Draft.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda d: (d.created_at, d.id))


def get_draft(session: Session, caller: Caller, draft_id: uuid.UUID, *, for_update: bool = False) -> Draft:
    query = select(Draft).where(Draft.account_id == caller.account_id, Draft.id == draft_id)
    if caller.user_id is not None:
        query = query.where((Draft.user_id == caller.user_id) | (Draft.author_user_id == caller.user_id))
    draft = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if draft is None:
        raise not_found("Draft")
    return draft


def create_draft(session: Session, caller: Caller, body: DraftIn) -> Draft:
    try:
        thread_id = uuid.UUID(body.thread_id)
    except ValueError:
        raise invalid("thread_id", "no such thread in this account") from None
    try:
        thread = get_thread(session, caller, thread_id)
    except Problem:
        raise invalid("thread_id", "no such thread in this account") from None
    last = session.scalars(
        select(Message)
        .where(Message.account_id == caller.account_id, Message.thread_id == thread.id)
        .order_by(Message.sent_at.desc().nulls_last(), Message.created_at.desc())
        .limit(1)
    ).one_or_none()
    owner = _owner(session, caller, body.user_id, last)
    to = [str(a) for a in body.to] or _reply_recipients(last, owner)
    if not to:
        raise invalid("to", "say whom the reply goes to", "The thread has no one to reply to; give `to`.")
    references: list[str] = []
    if last is not None:
        references = [*last.references, last.message_id_header]
        if len(references) > MAX_REFERENCES:
            references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
    draft = Draft(
        account_id=caller.account_id,
        thread_id=thread.id,
        user_id=owner.id,
        author_user_id=caller.user_id,
        author_token_id=caller.token_id,
        to=to,
        cc=[str(a) for a in body.cc],
        bcc=[str(a) for a in body.bcc],
        subject=body.subject or _reply_subject(thread.subject),
        body=body.body,
        in_reply_to=None if last is None else last.message_id_header,
        references=references,
        message_id_header=f"{uuid.uuid4().hex}@{owner.email.rsplit('@', 1)[-1]}",
        status=DraftStatus.draft,
        attempts=0,
        attempt_log=[],
    )
    session.add(draft)
    session.flush()
    session.refresh(draft)
    return draft


def update_draft(session: Session, caller: Caller, draft_id: uuid.UUID, body: DraftPatch) -> Draft:
    draft = get_draft(session, caller, draft_id, for_update=True)
    if draft.status not in EDITABLE:
        raise conflict(f"A draft that is `{draft.status}` cannot be changed.")
    for field in ("to", "cc", "bcc"):
        value = getattr(body, field)
        if field in body.model_fields_set and value is not None:
            setattr(draft, field, [str(a) for a in value])
    for field in ("subject", "body"):
        value = getattr(body, field)
        if field in body.model_fields_set:
            if value is None:
                raise invalid(field, "must not be null")
            setattr(draft, field, value)
    # Changed after a rejection, it is a draft again: it has to be submitted (and approved) anew.
    draft.status = DraftStatus.draft
    draft.rejection_reason = None
    return _flushed(session, draft)


def delete_draft(session: Session, caller: Caller, draft_id: uuid.UUID) -> None:
    draft = get_draft(session, caller, draft_id, for_update=True)
    if draft.status not in EDITABLE | {DraftStatus.pending_approval}:
        raise conflict(f"A draft that is `{draft.status}` is kept as a record of what was sent.")
    session.delete(draft)


def submit_draft(session: Session, caller: Caller, draft_id: uuid.UUID) -> Draft:
    """Ask the owner; or, where the account does not ask before sending (or the owner submits), send."""
    draft = get_draft(session, caller, draft_id, for_update=True)
    if draft.status not in EDITABLE:
        raise conflict(f"A draft that is `{draft.status}` cannot be submitted.")
    now = datetime.now(UTC)
    draft.submitted_at = now
    account = session.get_one(Account, caller.account_id)
    if AccountSettings.of(account.settings).ask_before_sending and caller.user_id != draft.user_id:
        draft.status = DraftStatus.pending_approval
        return _status_changed(session, draft)
    _approve(session, caller, draft, now)
    return _status_changed(session, draft)


def approve_draft(session: Session, caller: Caller, draft_id: uuid.UUID) -> Draft:
    draft = get_draft(session, caller, draft_id, for_update=True)
    _require_owner(caller, draft)
    if draft.status != DraftStatus.pending_approval:
        raise conflict(f"Only a draft waiting for approval can be approved; this one is `{draft.status}`.")
    _approve(session, caller, draft, datetime.now(UTC))
    return _status_changed(session, draft)


def reject_draft(session: Session, caller: Caller, draft_id: uuid.UUID, reason: str | None) -> Draft:
    draft = get_draft(session, caller, draft_id, for_update=True)
    _require_owner(caller, draft)
    if draft.status != DraftStatus.pending_approval:
        raise conflict(f"Only a draft waiting for approval can be rejected; this one is `{draft.status}`.")
    draft.status = DraftStatus.rejected
    draft.decided_at = datetime.now(UTC)
    draft.decided_by_user_id = caller.user_id
    draft.rejection_reason = reason
    return _status_changed(session, draft)


def retry_draft(session: Session, caller: Caller, draft_id: uuid.UUID) -> Draft:
    """Send a failed draft again (after fixing the relay or a recipient): a fresh round of attempts."""
    draft = get_draft(session, caller, draft_id, for_update=True)
    _require_owner(caller, draft)
    if draft.status != DraftStatus.failed:
        raise conflict(f"Only a failed draft can be retried; this one is `{draft.status}`.")
    draft.attempts = 0
    _queue(session, draft)
    return _status_changed(session, draft)


def _approve(session: Session, caller: Caller, draft: Draft, now: datetime) -> None:
    draft.decided_at = now
    draft.decided_by_user_id = caller.user_id
    _queue(session, draft)


def _queue(session: Session, draft: Draft) -> None:
    draft.status = DraftStatus.approved
    draft.next_attempt_at = datetime.now(UTC)
    enqueue_after_commit(session, draft_send(draft.id))


def _require_owner(caller: Caller, draft: Draft) -> None:
    if caller.user_id == draft.user_id or (caller.user_id is None and caller.allows(TokenScope.admin)):
        return
    raise Problem(
        403,
        "not-the-owner",
        "Only the owner decides",
        "A draft is approved or rejected by its user (a token tied to that user) or an admin token.",
    )


def _owner(session: Session, caller: Caller, requested: str | None, last: Message | None) -> User:
    if requested is not None:
        try:
            user_id = uuid.UUID(requested)
        except ValueError:
            raise invalid("user_id", "no such user in this account") from None
    elif last is not None:
        user_id = last.user_id
    elif caller.user_id is not None:
        user_id = caller.user_id
    else:
        raise invalid("user_id", "say whom the reply is sent as", "The thread has no mail yet; give `user_id`.")
    user = session.scalars(select(User).where(User.account_id == caller.account_id, User.id == user_id)).one_or_none()
    if user is None:
        raise invalid("user_id", "no such user in this account")
    return user


def _reply_recipients(last: Message | None, owner: User) -> list[str]:
    """Answer the sender; when the last message is the owner's own, write to its recipients again."""
    if last is None:
        return []
    if last.from_address and last.from_address.lower() != owner.email.lower():
        return [last.from_address]
    return [entry["address"] for entry in last.to if entry.get("address")]


def _reply_subject(subject: str | None) -> str:
    subject = (subject or "").strip()
    return subject if subject.lower().startswith("re:") else f"Re: {subject}".strip()


def _status_changed(session: Session, draft: Draft) -> Draft:
    """Tell the webhooks (in this transaction) which status the draft reached."""
    emit_draft_status(session, draft)
    return _flushed(session, draft)


def _flushed(session: Session, draft: Draft) -> Draft:
    session.flush()
    session.refresh(draft)
    return draft
