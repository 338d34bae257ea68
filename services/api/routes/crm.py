"""CRM records the matcher reads and writes: persons and deals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.deps import CurrentCaller, DbSession, parse_id
from services.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, encode_cursor, paginate
from services.api.problems import Problem
from services.api.schemas import DealIn, DealOut, Page, PersonIn, PersonOut
from shared.addresses import normalize_address
from shared.models import Deal, Person, PersonEmail

router = APIRouter(prefix="/v1", tags=["crm"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/persons", response_model=Page[PersonOut])
def list_persons(
    caller: CurrentCaller,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    email: str | None = None,
) -> Page[PersonOut]:
    query = select(Person).where(Person.account_id == caller.account_id)
    if email is not None:
        query = query.where(
            Person.id.in_(
                select(PersonEmail.person_id).where(
                    PersonEmail.account_id == caller.account_id, PersonEmail.address == normalize_address(email)
                )
            )
        )
    rows = list(session.scalars(paginate(query, Person.created_at, Person.id, cursor, limit)).all())
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return Page[PersonOut](data=_persons(session, rows[:limit]), next_cursor=next_cursor)


@router.post("/persons", response_model=PersonOut, status_code=status.HTTP_201_CREATED)
def create_person(body: PersonIn, caller: CurrentCaller, session: DbSession) -> PersonOut:
    person = Person(account_id=caller.account_id, name=body.name.strip(), created_from="api")
    session.add(person)
    session.flush()
    for address in dict.fromkeys(normalize_address(str(e)) for e in body.emails):
        inserted = session.execute(
            insert(PersonEmail)
            .values(account_id=caller.account_id, person_id=person.id, address=address)
            .on_conflict_do_nothing()
            .returning(PersonEmail.id)
        ).scalar()
        if inserted is None:
            raise Problem(
                409, "conflict", "E-mail address already in use", f"{address} already belongs to another person."
            )
    return _persons(session, [person])[0]


@router.get("/deals", response_model=Page[DealOut])
def list_deals(
    caller: CurrentCaller,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
) -> Page[DealOut]:
    query = select(Deal).where(Deal.account_id == caller.account_id)
    if person_id is not None:
        query = query.where(Deal.person_id == parse_id(person_id, "Person"))
    rows = list(session.scalars(paginate(query, Deal.created_at, Deal.id, cursor, limit)).all())
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return Page[DealOut](data=[_deal(d) for d in rows[:limit]], next_cursor=next_cursor)


@router.post("/deals", response_model=DealOut, status_code=status.HTTP_201_CREATED)
def create_deal(body: DealIn, caller: CurrentCaller, session: DbSession) -> DealOut:
    person = None
    try:
        person_uuid = parse_id(body.person_id, "Person")
    except Problem:
        person_uuid = None
    if person_uuid is not None:
        person = session.scalars(
            select(Person).where(Person.account_id == caller.account_id, Person.id == person_uuid)
        ).one_or_none()
    if person is None:
        raise Problem(
            422,
            "validation",
            "The request is not valid",
            "A deal must reference a person of your account.",
            errors=[{"field": "person_id", "message": "no such person in this account"}],
        )
    deal = Deal(
        account_id=caller.account_id,
        title=body.title.strip(),
        person_id=person.id,
        status=body.status,
        value=body.value,
        currency=body.currency,
    )
    session.add(deal)
    session.flush()
    session.refresh(deal)
    return _deal(deal)


def _persons(session: Session, persons: Sequence[Person]) -> list[PersonOut]:
    emails: dict[object, list[str]] = defaultdict(list)
    for row in session.execute(
        select(PersonEmail.person_id, PersonEmail.address)
        .where(PersonEmail.person_id.in_([p.id for p in persons]))
        .order_by(PersonEmail.address)
    ):
        emails[row.person_id].append(row.address)
    return [
        PersonOut(
            id=str(p.id),
            name=p.name,
            emails=emails[p.id],
            created_from=p.created_from,
            created_by_rule=p.created_by_rule,
            created_by_message_id=str(p.created_by_message_id) if p.created_by_message_id else None,
            created_at=p.created_at,
        )
        for p in persons
    ]


def _deal(deal: Deal) -> DealOut:
    return DealOut(
        id=str(deal.id),
        title=deal.title,
        person_id=str(deal.person_id) if deal.person_id else None,
        status=deal.status,  # type: ignore[arg-type]  # stored from the DealStatus enum
        value=deal.value,
        currency=deal.currency,
        created_at=deal.created_at,
    )
