from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from services.api.common import Schema
from services.api.mailbox.schemas import ThreadSummary
from shared.models import DealStatus, DisambiguationStatus


class CandidateDeal(BaseModel):
    id: str
    title: str
    status: DealStatus
    value: Decimal | None
    currency: str | None
    person_id: str | None
    organization_id: str | None


class Candidate(BaseModel):
    deal_id: str
    reasons: list[str] = Field(description="Why this deal is a candidate, in words a user can read.")
    deal: CandidateDeal | None = Field(description="Null if the deal was deleted since.")


class DisambiguationOut(BaseModel):
    id: str
    status: DisambiguationStatus
    user_id: str | None = Field(description="The user who should choose.")
    thread: ThreadSummary
    candidates: list[Candidate]
    resolved_deal_id: str | None
    resolved_at: datetime | None
    created_at: datetime


class Resolution(Schema):
    deal_id: str | None = Field(
        description="The deal the whole thread belongs to, or null for none. Any deal of the account is accepted, "
        "not only the candidates."
    )
