"""Who sees which deals: per-pipeline access and private deals, for user-bound tokens.

A restricted pipeline's deals are seen (and changed) only by its members; a private deal only by its owner.
Account-wide tokens see everything. Everything that shows a deal, or something of a deal (its mail, activities,
notes, events, files), filters with these conditions, and a hidden record answers 404 like a missing one.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, or_, select, true

from services.api.deps import Caller
from shared.models import Deal, DealVisibility, Pipeline, PipelineMember


def pipeline_visible(caller: Caller) -> ColumnElement[bool]:
    """A condition on Pipeline."""
    if caller.user_id is None:
        return true()
    member = exists().where(PipelineMember.pipeline_id == Pipeline.id, PipelineMember.user_id == caller.user_id)
    return or_(Pipeline.restricted.is_(False), member)


def deal_visible(caller: Caller) -> ColumnElement[bool]:
    """A condition on Deal."""
    if caller.user_id is None:
        return true()
    restricted = select(Pipeline.id).where(Pipeline.account_id == caller.account_id, Pipeline.restricted.is_(True))
    allowed = select(PipelineMember.pipeline_id).where(
        PipelineMember.account_id == caller.account_id, PipelineMember.user_id == caller.user_id
    )
    return and_(
        or_(Deal.pipeline_id.is_(None), Deal.pipeline_id.not_in(restricted), Deal.pipeline_id.in_(allowed)),
        or_(Deal.visibility == DealVisibility.shared, Deal.owner_user_id == caller.user_id),
    )


def hidden_deals(caller: Caller) -> ColumnElement[bool] | None:
    """None when the caller sees every deal; else a subquery-able condition on Deal selecting the hidden ones."""
    if caller.user_id is None:
        return None
    return ~deal_visible(caller)


def deal_id_visible(caller: Caller, column: ColumnElement[object] | object) -> ColumnElement[bool]:
    """A condition on a nullable deal reference (`Activity.deal_id`, `Note.deal_id`, `Thread.deal_id`, …): no deal,
    or a deal the caller sees."""
    if caller.user_id is None:
        return true()
    hidden = select(Deal.id).where(Deal.account_id == caller.account_id, ~deal_visible(caller))
    return or_(column.is_(None), column.not_in(hidden))  # type: ignore[union-attr]
