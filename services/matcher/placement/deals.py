"""Which deal a thread belongs to: explicit routing, then the user's choice, then inference — or a question.

Only open deals are candidates: the open deals of every person (and organization) on the thread. One candidate
links the thread; several open a disambiguation item for the user (the thread stays on its persons until the user
chooses, and the choice holds for every later message). A link the user made — by choosing, or by mailing a
`+deal-<id>` address — is final. An inferred link is re-decided as the thread's people grow, so that the
outcome depends on which messages the thread has, never on the order they arrived in: a thread linked to
Jane's one deal that later gains Bob, who has a deal of his own, becomes a question.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db import DirectSql, execute_direct
from shared.models import (
    Deal,
    Disambiguation,
    DisambiguationStatus,
    Lead,
    Thread,
    ThreadDealRule,
)

RULE_SUB_ADDRESS = ThreadDealRule.sub_address
RULE_SINGLE_OPEN_DEAL = ThreadDealRule.single_open_deal
RULE_USER_CHOICE = ThreadDealRule.user_choice
RULE_USER_DECLINED = ThreadDealRule.user_declined

_DEAL_TAG = re.compile(r"\+deal-([0-9a-fA-F-]{32,36})@", re.IGNORECASE)
_LEAD_TAG = re.compile(r"\+lead-([0-9a-fA-F-]{32,36})@", re.IGNORECASE)


class DealOutcome(enum.StrEnum):
    linked = "linked"  # this message linked the thread
    kept = "kept"  # the thread already had its deal (or the user declined one)
    ask_user = "ask_user"
    none = "none"


@dataclass(frozen=True)
class DealDecision:
    outcome: DealOutcome
    deal_id: uuid.UUID | None
    disambiguation_id: uuid.UUID | None = None
    asked_anew: bool = False  # the question was created (or re-opened) by this message
    rule: ThreadDealRule | None = None  # for a link: why
    previous_deal_id: uuid.UUID | None = None  # for a link: the deal the thread had before


def deal_from_subaddress(envelope_to: str) -> uuid.UUID | None:
    """`token+deal-<id>@…`: the sender routed this mail to a deal explicitly."""
    return _tagged_id(_DEAL_TAG, envelope_to)


def lead_from_subaddress(envelope_to: str) -> uuid.UUID | None:
    """`token+lead-<id>@…`: the sender routed this mail to a lead."""
    return _tagged_id(_LEAD_TAG, envelope_to)


def _tagged_id(tag: re.Pattern[str], envelope_to: str) -> uuid.UUID | None:
    found = tag.search(envelope_to)
    if found is None:
        return None
    try:
        return uuid.UUID(found.group(1))
    except ValueError:
        return None


def link_lead(session: Session, account_id: uuid.UUID, thread_id: uuid.UUID, lead_id: uuid.UUID) -> uuid.UUID | None:
    """Put the thread on the lead's timeline (the first lead it was routed to keeps it). Returns the deal the lead
    was converted into, if it was: mail to a converted lead's address belongs to that deal."""
    lead = session.execute(
        select(Lead.id, Lead.converted_deal_id).where(
            Lead.account_id == account_id, Lead.id == lead_id, Lead.deleted_at.is_(None)
        )
    ).one_or_none()
    if lead is None:
        return None
    session.execute(
        update(Thread)
        .where(Thread.account_id == account_id, Thread.id == thread_id, Thread.lead_id.is_(None))
        .values(lead_id=lead.id)
    )
    converted_deal_id: uuid.UUID | None = lead.converted_deal_id
    return converted_deal_id


@dataclass(frozen=True)
class DealToDecide:
    """A message of the batch that was stored on a thread: its thread's deal is decided once the batch's messages
    are all stored (see `decide_deals`)."""

    message_id: uuid.UUID
    # The thread it joined, held so that the session keeps it (its identity map holds objects weakly).
    thread: Thread
    user_id: uuid.UUID
    routed_deal_id: uuid.UUID | None


@dataclass(frozen=True)
class DealDecided:
    message_id: uuid.UUID
    thread_id: uuid.UUID  # the message's thread now: a later message of the batch may have merged the one it joined
    decision: DealDecision
    deciding: bool  # this message's arrival made the decision (the others of its thread share its outcome)


def decide_deals(session: Session, account_id: uuid.UUID, stored: list[DealToDecide]) -> list[DealDecided]:
    """The deal of every thread the batch stored messages on, decided once per thread, with every person the
    batch put on it, after its last message (in batch order); one statement for all of them.

    Deciding after each message, with the persons the thread had so far, would only add decisions that the next
    message of the batch overturns: the outcome depends on which messages a thread has (see the module), and the
    batch's last message on a thread is where that set is complete. A thread with mail routed to a deal by
    sub-address is decided message by message, as the routing is explicit and final.
    """
    if not stored:
        return []
    rows = execute_direct(
        session,
        _BATCH_PERSONS_AND_OPEN_DEALS,
        {"account_id": account_id, "message_ids": [item.message_id for item in stored]},
    ).fetchall()
    thread_of = {row.message_id: row.thread_id for row in rows if row.message_id is not None}
    by_thread: dict[uuid.UUID, list[DealToDecide]] = defaultdict(list)
    for item in stored:
        by_thread[thread_of[item.message_id]].append(item)
    candidates = _reasons_by_thread([row for row in rows if row.person_id is not None])
    decided: dict[uuid.UUID, DealDecided] = {}
    for thread_id, items in by_thread.items():
        held = [item.thread for item in items if item.thread.id == thread_id]
        thread = held[0] if held else session.get_one(Thread, thread_id)  # merged into one the batch did not load
        reasons = candidates.get(thread_id, {})
        if any(item.routed_deal_id is not None for item in items):
            for item in items:
                decision = decide_deal(
                    session,
                    thread,
                    message_id=item.message_id,
                    user_id=item.user_id,
                    routed_deal_id=item.routed_deal_id,
                    candidates=reasons,
                )
                decided[item.message_id] = DealDecided(item.message_id, thread_id, decision, deciding=True)
            continue
        last = items[-1]
        decision = decide_deal(
            session, thread, message_id=last.message_id, user_id=last.user_id, routed_deal_id=None, candidates=reasons
        )
        for item in items:
            decided[item.message_id] = DealDecided(item.message_id, thread_id, decision, deciding=item is last)
    return [decided[item.message_id] for item in stored]


def decide_deal(
    session: Session,
    thread: Thread,
    *,
    message_id: uuid.UUID,
    user_id: uuid.UUID,
    routed_deal_id: uuid.UUID | None,
    candidates: dict[uuid.UUID, set[str]],
) -> DealDecision:
    """`thread` is locked by the caller's transaction (threading locked it, or created it); `candidates` are its
    open deals, with why each is one (`decide_deals` reads them for all of a batch's threads at once)."""
    account_id, thread_id = thread.account_id, thread.id
    if routed_deal_id is not None:
        deal = session.scalars(
            select(Deal).where(Deal.account_id == account_id, Deal.id == routed_deal_id, Deal.deleted_at.is_(None))
        ).one_or_none()
        if deal is not None:
            previous_deal = thread.deal_id
            _link(thread, deal.id, RULE_SUB_ADDRESS, message_id)
            _settle_question(session, account_id, thread_id, DisambiguationStatus.superseded)
            return DealDecision(DealOutcome.linked, deal.id, rule=RULE_SUB_ADDRESS, previous_deal_id=previous_deal)
    if thread.deal_rule in (RULE_USER_CHOICE, RULE_USER_DECLINED, RULE_SUB_ADDRESS):
        return DealDecision(DealOutcome.kept, thread.deal_id)

    if len(candidates) == 1:
        [deal_id] = candidates
        if thread.deal_id == deal_id:
            return DealDecision(DealOutcome.kept, deal_id)
        previous_deal = thread.deal_id
        _link(thread, deal_id, RULE_SINGLE_OPEN_DEAL, message_id)
        _settle_question(session, account_id, thread_id, DisambiguationStatus.superseded)
        return DealDecision(DealOutcome.linked, deal_id, rule=RULE_SINGLE_OPEN_DEAL, previous_deal_id=previous_deal)
    if not candidates:
        # Its deal may have been won since: an earlier link stays, nothing new is inferred.
        return DealDecision(DealOutcome.kept if thread.deal_id else DealOutcome.none, thread.deal_id)
    # Several candidates: an inferred link no longer holds; the user decides.
    thread.deal_id = None
    thread.deal_rule = None
    thread.deal_linked_by_message_id = None
    payload = [
        {"deal_id": str(deal_id), "reasons": sorted(reasons)}
        for deal_id, reasons in sorted(candidates.items(), key=lambda item: str(item[0]))
    ]
    previous = session.scalar(
        select(Disambiguation.status).where(
            Disambiguation.account_id == account_id, Disambiguation.thread_id == thread_id
        )
    )
    disambiguation_id = session.scalar(
        insert(Disambiguation)
        .values(id=uuid.uuid4(), account_id=account_id, thread_id=thread_id, user_id=user_id, candidates=payload)
        .on_conflict_do_update(
            index_elements=[Disambiguation.account_id, Disambiguation.thread_id],
            # A user's answer ends the matcher's questions (see above); one it superseded itself is asked again.
            set_={
                "candidates": payload,
                "status": DisambiguationStatus.pending,
                "resolved_deal_id": None,
                "resolved_at": None,
            },
        )
        .returning(Disambiguation.id)
    )
    return DealDecision(
        DealOutcome.ask_user, None, disambiguation_id, asked_anew=previous != DisambiguationStatus.pending
    )


# The threads of these messages, and for each thread its external persons, each with the open deals that are
# theirs or their organization's, in one query. (A deleted deal keeps its history but gets no new mail.)
_BATCH_PERSONS_AND_OPEN_DEALS = DirectSql(
    "WITH stored AS (SELECT id, thread_id FROM messages"
    " WHERE account_id = :account_id AND id = ANY(CAST(:message_ids AS uuid[]))),"
    " persons_on_thread AS ("
    " SELECT DISTINCT messages.thread_id, persons.id, persons.name, persons.organization_id FROM persons"
    " JOIN message_persons ON message_persons.person_id = persons.id"
    " JOIN messages ON messages.id = message_persons.message_id"
    " WHERE messages.account_id = :account_id AND messages.thread_id IN (SELECT thread_id FROM stored)"
    " AND persons.deleted_at IS NULL)"
    " SELECT thread_id, id AS message_id, CAST(NULL AS uuid) AS person_id, CAST(NULL AS text) AS name,"
    " CAST(NULL AS uuid) AS organization_id, CAST(NULL AS uuid) AS deal_id, CAST(NULL AS uuid) AS deal_person_id,"
    " CAST(NULL AS uuid) AS deal_organization_id FROM stored"
    " UNION ALL"
    " SELECT p.thread_id, NULL, p.id, CAST(p.name AS text), p.organization_id,"
    " deals.id, deals.person_id, deals.organization_id"
    " FROM persons_on_thread AS p LEFT JOIN deals ON deals.account_id = :account_id AND deals.status = 'open'"
    " AND deals.deleted_at IS NULL AND (deals.person_id = p.id OR deals.organization_id = p.organization_id)"
)


def _reasons_by_thread(rows: list[Any]) -> dict[uuid.UUID, dict[uuid.UUID, set[str]]]:
    by_thread: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in rows:
        by_thread[row.thread_id].append(row)
    return {thread_id: _reasons(thread_rows) for thread_id, thread_rows in by_thread.items()}


def _reasons(rows: list[Any]) -> dict[uuid.UUID, set[str]]:
    """Rows of a thread's persons, each with one of the open deals of it or its organization (or none), to the
    deals and why each is a candidate."""
    by_person = {row.person_id: row.name for row in rows}
    by_organization = {row.organization_id: row.name for row in rows if row.organization_id is not None}
    deals = {(row.deal_id, row.deal_person_id, row.deal_organization_id) for row in rows if row.deal_id is not None}
    reasons: dict[uuid.UUID, set[str]] = defaultdict(set)
    for deal_id, deal_person_id, deal_organization_id in deals:
        if deal_person_id in by_person:
            reasons[deal_id].add(f"open deal of {by_person[deal_person_id]}, who is on this thread")
        if deal_organization_id in by_organization:
            reasons[deal_id].add(
                f"open deal of the organization of {by_organization[deal_organization_id]}, who is on this thread"
            )
    return dict(reasons)


def _link(thread: Thread, deal_id: uuid.UUID, rule: ThreadDealRule, message_id: uuid.UUID) -> None:
    thread.deal_id = deal_id
    thread.deal_rule = rule
    thread.deal_linked_by_message_id = message_id


def _settle_question(
    session: Session, account_id: uuid.UUID, thread_id: uuid.UUID, status: DisambiguationStatus
) -> None:
    question = session.scalars(
        select(Disambiguation).where(
            Disambiguation.account_id == account_id,
            Disambiguation.thread_id == thread_id,
            Disambiguation.status == DisambiguationStatus.pending,
        )
    ).one_or_none()
    if question is not None:
        question.status = status
