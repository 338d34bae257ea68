"""The deal chooser: threads that could belong to several deals, waiting for a user's choice."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from services.api.chooser import service
from services.api.chooser.schemas import Candidate, CandidateDeal, DisambiguationOut, Resolution
from services.api.common import Page, sid
from services.api.deps import Caller, CurrentCaller, DbSession, filter_id, parse_id
from services.api.mailbox.render import thread_summaries
from services.api.mailbox.service import get_thread
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.models import Disambiguation, DisambiguationStatus

router = APIRouter(prefix="/v1/disambiguations", tags=["deal chooser"])


@router.get("", response_model=Page[DisambiguationOut])
def list_disambiguations(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: DisambiguationStatus | None = DisambiguationStatus.pending,
    user_id: Annotated[
        str | None, Query(description="Only this user's questions; `me` for the token's own user.")
    ] = None,
) -> Page[DisambiguationOut]:
    """Questions for users, newest first (pending ones unless `status` says otherwise)."""
    wanted_user = caller.user_id if user_id == "me" else filter_id(user_id)
    if user_id == "me" and wanted_user is None:
        wanted_user = filter_id("")  # an account-wide token has no user of its own: nothing is "mine"
    rows, next_cursor = service.list_disambiguations(session, caller, status, wanted_user, cursor, limit)
    return Page[DisambiguationOut](data=_out(session, caller, rows), next_cursor=next_cursor)


@router.get("/{disambiguation_id}", response_model=DisambiguationOut)
def get_disambiguation(disambiguation_id: str, caller: CurrentCaller, session: DbSession) -> DisambiguationOut:
    found = service.get_disambiguation(session, caller, parse_id(disambiguation_id, "Disambiguation"))
    return _out(session, caller, [found])[0]


@router.post("/{disambiguation_id}/resolve", response_model=DisambiguationOut)
def resolve(disambiguation_id: str, body: Resolution, caller: CurrentCaller, session: DbSession) -> DisambiguationOut:
    """Answer with a deal (or null for none). The whole thread, and its later mail, follows the answer."""
    deal_id = None if body.deal_id is None else filter_id(body.deal_id)
    found = service.resolve(session, caller, parse_id(disambiguation_id, "Disambiguation"), deal_id)
    return _out(session, caller, [found])[0]


def _out(session: Session, caller: Caller, items: list[Disambiguation]) -> list[DisambiguationOut]:
    deals = service.candidate_deals(session, caller, items)
    result = []
    for item in items:
        [thread] = thread_summaries(session, caller, [get_thread(session, caller, item.thread_id)])
        candidates = []
        for candidate in item.candidates:
            deal = deals.get(str(candidate.get("deal_id")))
            if deal is None and caller.user_id is not None:
                continue  # a deal hidden from the user (another pipeline, someone's private deal) is no choice
            candidates.append(
                Candidate(
                    deal_id=str(candidate.get("deal_id")),
                    reasons=[str(r) for r in candidate.get("reasons", [])],
                    deal=None
                    if deal is None
                    else CandidateDeal(
                        id=str(deal.id),
                        title=deal.title,
                        status=deal.status,
                        value=deal.value,
                        currency=deal.currency,
                        person_id=sid(deal.person_id),
                        organization_id=sid(deal.organization_id),
                    ),
                )
            )
        result.append(
            DisambiguationOut(
                id=str(item.id),
                status=item.status,
                user_id=sid(item.user_id),
                thread=thread,
                candidates=candidates,
                resolved_deal_id=sid(item.resolved_deal_id),
                resolved_at=item.resolved_at,
                created_at=item.created_at,
            )
        )
    return result
